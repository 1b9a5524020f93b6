"""Zoos whose ids name a hub repository or a local ``save_pretrained`` directory.

Shared by the builtin ``hf-text`` and ``hf-audio`` plugins: their entries, how an id that no
plugin listed is resolved, and the one-line error when loading fails. Imports no model library.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import partial
from pathlib import Path

from autotransfer.contract.backbone import BackboneEntry, split_id
from autotransfer.errors import BackboneError, first_line

HUB_ID = re.compile(r"^[\w.-]+(/[\w.-]+)?$")
DESCRIPTION = "transformers; hub id or local save_pretrained directory"


def hub_entry(
    zoo: str, modality: str, loader: Callable, name: str, params: int | None = None,
    description: str = "",
) -> BackboneEntry:
    """The entry ``zoo/name`` whose loader is ``loader(name, pretrained=..., ...)``."""
    return BackboneEntry(
        id=f"{zoo}/{name}",
        modality=modality,
        loader=partial(loader, name),
        params=params,
        description=description or DESCRIPTION,
        options=("trust_remote_code",),  # only --trust-remote-code turns it on
    )


def served_name(backbone_id: str, zoo: str) -> str | None:
    """``name`` when ``backbone_id`` is ``zoo/name`` and names a local directory or a hub id."""
    prefix, name = split_id(backbone_id)
    if prefix != zoo or not name:
        return None
    return name if Path(name).expanduser().is_dir() or HUB_ID.match(name) else None


def source(name: str) -> str:
    """What ``from_pretrained`` gets: the expanded path of a local directory, else the hub id."""
    path = Path(name).expanduser()
    return str(path) if path.is_dir() else name


def load_error(label: str, zoo: str, exc: BaseException) -> BackboneError:
    """The one-line error for a checkpoint that could not be loaded."""
    return BackboneError(
        f"{label}: could not load ({type(exc).__name__}: {first_line(exc, 100)}); offline, give a "
        f"local directory saved with save_pretrained: {zoo}/PATH"
    )
