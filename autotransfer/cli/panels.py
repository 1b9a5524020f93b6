"""How ``--help`` lays out a command's options: grouped into panels, flags without a value.

typer reads each option's ``rich_help_panel`` and ``metavar`` when the command line is built, so
:func:`arrange` sets them on the declared options once, in one table here, instead of on each of
the thirty declarations in ``app``, and orders the options so that the panels come in the order
of :data:`PANELS` (typer shows a panel where its first option is). :class:`Command` and
:class:`Group` (the classes of every command and of the root) show a flag's two spellings in
one column (``--[no-]cache``), no value for a flag (``--help`` included) and a short one for a
long list of choices, so that the help reads at 80 columns.
"""

from __future__ import annotations

import contextlib
import inspect
import typing
from collections.abc import Callable, Iterator
from typing import Any

import typer.core
import typer.models

#: Panel -> the Python names of the options it shows, in the order of the panels on the page.
PANELS: dict[str, tuple[str, ...]] = {
    "Data": ("data", "modality", "text_column", "label_column", "image_column",
             "audio_column", "data_store", "trust_remote_code"),
    "Search": ("space", "seed", "prescreen", "prescreen_by", "warm_start", "history",
               "references", "transfer_effect", "study"),
    "Budget": ("trials", "timeout", "time_budget"),
    "Storage": ("storage", "workers", "heartbeat"),
    "Output": ("out", "keep_best", "track", "tracking_uri"),
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


def arrange(command: Callable[..., Any], *, panels: tuple[str, ...] = tuple(PANELS)
            ) -> Callable[..., Any]:
    """Put ``command``'s options into those of :data:`PANELS` named in ``panels`` (in that
    order; the others stay under Options) and show its flags without a ``<bool>`` value;
    return ``command``."""
    hints = typing.get_type_hints(command, include_extras=True)
    signature = inspect.signature(command, eval_str=True)
    for name, parameter in signature.parameters.items():
        info = _option_info(parameter.default, hints.get(name))
        if info is None:
            continue
        if _PANEL_OF.get(name) in panels:
            info.rich_help_panel = _PANEL_OF[name]
        if _is_flag(hints.get(name)):
            info.metavar = ""  # typer shows the metavar in the type column
    if panels:  # arguments first, then the panels in order, then the rest as declared
        order = {name: i for i, name in enumerate(
            n for panel, names in PANELS.items() if panel in panels for n in names)}
        ranked = sorted(signature.parameters.values(), key=lambda p: (
            _option_info(p.default, hints.get(p.name)) is not None,
            order.get(p.name, len(order))))
        command.__signature__ = signature.replace(parameters=ranked)  # type: ignore[attr-defined]
    return command


#: the widest list of choices shown as the value (``<train+val|train>``); wider: ``<name>``, the
#: help text lists them
CHOICES_SHOWN = 18


def _value(param: Any) -> str | None:
    """What the type column shows for ``param``, when typer's own is too wide (None: its own)."""
    if getattr(param, "is_flag", False):
        return ""
    described = getattr(param, "type_descriptor", None)
    if described is None:
        return None
    if described.is_choice and len("|".join(map(str, described.choices))) + 2 > CHOICES_SHOWN:
        return "<name>"
    if described.is_ranged:  # the range itself follows, e.g. [x>=0]
        return f"<{described.ranged_type_name.split()[0]}>"
    return None


@contextlib.contextmanager
def _compact(command: Any, ctx: Any) -> Iterator[None]:
    """While help is drawn: ``--[no-]x`` for a flag and its negation in one column, no value
    shown for a flag (``--help`` included), a short one for a long list of choices."""
    changed = []
    for param in command.get_params(ctx):
        saved = (param, param.opts, param.secondary_opts, param.metavar, param.help,
                 getattr(param, "show_default", None))
        if param.metavar is None:
            param.metavar = _value(param)
        if param.secondary_opts and len(param.opts) == 1:
            yes, no = param.opts[0], param.secondary_opts[0]
            param.opts = [f"--[no-]{yes[2:]}" if no == f"--no-{yes[2:]}" else f"{yes}/{no}"]
            param.secondary_opts = []
            param.show_default = False  # said in words: typer would print True
            told = "(default" in (param.help or "") or "by default" in (param.help or "")
            if param.default is not None and not told:
                param.help = f"{param.help} (default: {'on' if param.default else 'off'})"
        changed.append(saved)
    try:
        yield
    finally:
        for param, opts, secondary, metavar, text, shown in changed:
            param.opts, param.secondary_opts, param.metavar, param.help = (opts, secondary,
                                                                          metavar, text)
            if shown is not None:
                param.show_default = shown


class Command(typer.core.TyperCommand):
    """A command whose help shows flags as ``--[no-]x`` and no ``<bool>``."""

    def format_help(self, ctx: Any, formatter: Any) -> None:
        with _compact(self, ctx):
            super().format_help(ctx, formatter)


class Group(typer.core.TyperGroup):
    """The root command, its help laid out as :class:`Command`'s."""

    def format_help(self, ctx: Any, formatter: Any) -> None:
        with _compact(self, ctx):
            super().format_help(ctx, formatter)
