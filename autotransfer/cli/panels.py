"""How ``--help`` lays out a command's options: grouped into panels, flags without a value.

typer reads each option's ``rich_help_panel`` and ``metavar`` when the command line is built, so
:func:`arrange` sets them on the declared options once, in one table here, instead of on each of
the thirty declarations in ``app``.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable
from typing import Any

import typer.models

#: Panel -> the Python names of the options it shows, in the order of the panels on the page.
PANELS: dict[str, tuple[str, ...]] = {
    "Data": ("modality", "text_column", "label_column", "image_column", "audio_column",
             "data_store", "trust_remote_code"),
    "Search": ("space", "seed", "prescreen", "prescreen_by", "warm_start", "history",
               "references", "transfer_effect", "study"),
    "Budget": ("trials", "timeout", "time_budget"),
    "Storage": ("storage", "workers", "heartbeat"),
    "Output": ("out", "keep_best"),
    "Speed": ("device", "cache", "cache_memory", "cache_dir", "cache_views", "compile"),
}
_PANEL_OF = {name: panel for panel, names in PANELS.items() for name in names}


def _option_info(default: Any, hint: Any) -> typer.models.OptionInfo | None:
    if isinstance(default, typer.models.OptionInfo):
        return default
    extras = getattr(hint, "__metadata__", ())
    return next((m for m in extras if isinstance(m, typer.models.OptionInfo)), None)


def _is_flag(hint: Any) -> bool:
    hint = typing.get_args(hint)[0] if getattr(hint, "__metadata__", None) else hint
    return hint is bool or set(typing.get_args(hint)) == {bool, type(None)}


def arrange(command: Callable[..., Any]) -> Callable[..., Any]:
    """Put ``command``'s options into :data:`PANELS` and show its flags without a ``<bool>``
    value; return ``command``."""
    hints = typing.get_type_hints(command, include_extras=True)
    for name, parameter in inspect.signature(command).parameters.items():
        info = _option_info(parameter.default, hints.get(name))
        if info is None:
            continue
        if name in _PANEL_OF:
            info.rich_help_panel = _PANEL_OF[name]
        if _is_flag(hints.get(name)):
            info.metavar = ""  # typer shows the metavar in the type column
    return command
