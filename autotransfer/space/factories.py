"""What a space names by a short name or an import path, and the keywords its factory takes.

The space's ``pruner``, ``sampler`` and ``recipe`` are each a name (``median``), a name with
settings (``{type: median, n_startup_trials: 4}``) or a factory by import path with settings
(``{factory: "my_package.schedulers:make_pruner", eta: 3}``); :func:`parse` reads the three
forms, :func:`import_factory` imports a path and :func:`accepted` keeps the arguments the search
decides (a sampler's ``seed``, a recipe's ``label_smoothing``) that a factory takes.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any

__all__ = ["accepted", "import_factory", "parse"]


def parse(value: Any) -> tuple[str, dict[str, Any], bool]:
    """``value`` (a string, a mapping or a pydantic model of one) -> the name, the settings, and
    whether the name is a factory's import path."""
    if isinstance(value, str):
        return value, {}, False
    data = dict(value if isinstance(value, dict) else value.model_dump(exclude_none=True))
    if data.get("factory") is not None:
        data.pop("type", None)
        return str(data.pop("factory")), data, True
    return data.pop("type"), data, False


def import_factory(path: str) -> Any:
    """The attribute named by ``"package.module:attribute"``.

    Raises:
        ValueError: no ``:`` in ``path``, or the module or attribute cannot be imported (the
            reason after the path).
    """
    module, colon, attribute = path.partition(":")
    if not colon or not module or not attribute:
        raise ValueError(f"an import path is 'module:attribute', got {path!r}")
    try:
        return getattr(importlib.import_module(module), attribute)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"cannot import the factory {path!r}: {exc}") from None


def accepted(factory: Any, context: dict[str, Any]) -> dict[str, Any]:
    """The ``context`` arguments ``factory`` takes: all of them when its signature cannot be
    read or takes ``**kwargs``."""
    try:
        parameters = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return context
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return context
    return {k: v for k, v in context.items() if k in parameters}
