"""Option values the command line checks against a registry filled by plugins (exit 2 as for a
fixed choice), without loading the plugins before an option needs them."""

from __future__ import annotations

import typer


def known_modality(value: str | None) -> str | None:
    """``value`` when it names a registered modality (builtin or a plugin's), or None.

    Raises:
        typer.BadParameter: an unknown modality (lists the registered ones).
    """
    if value is None:
        return None
    from autotransfer.contract.collect import get_modalities

    known = get_modalities()
    if value not in known:
        raise typer.BadParameter(f"{value!r} is not one of {', '.join(map(repr, known))}.")
    return value
