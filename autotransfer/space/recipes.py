"""Training recipes by name or factory: the search space's ``recipe``.

``recipe: supervised`` (the default: cross-entropy with ``label_smoothing``) or the name a
plugin gives one through the ``register_recipes`` hook (a
:class:`~autotransfer.contract.recipes.Recipe`; the builtin name is not replaced), with
settings as a mapping, ``recipe: {type: head_l2, weight: 0.5}``; a factory by import path
needs no registration: ``recipe: {factory: "my_package.recipes:HeadL2", weight: 0.5}``. This
layer checks the name and imports the factory; :func:`autotransfer.finetune.recipe.recipe_for`
builds the recipe of each trial, and a trial's ``params`` carry the space's recipe under
``recipe`` (:func:`as_param`), so that its record and ``best.yaml`` say which one it was.
"""

from __future__ import annotations

import difflib
from typing import Any

from autotransfer.contract.collect import get_recipes
from autotransfer.space.factories import import_factory, parse

__all__ = ["BUILTIN_RECIPES", "DEFAULT", "as_param", "resolve"]

#: name -> one line (the builtin recipes; :mod:`autotransfer.finetune.recipe` builds them)
BUILTIN_RECIPES: dict[str, str] = {
    "supervised": "cross-entropy with label_smoothing on the labelled training split (Szegedy "
                  "et al., 2016, for the smoothing); the default",
}
DEFAULT = "supervised"


def resolve(value: Any) -> tuple[str, Any, dict[str, Any]]:
    """The name, the factory (None for a builtin, which the finetune layer builds) and the
    settings of a space's ``recipe``: a builtin, a plugin's (the plugins load when the name is
    not a builtin) or an import path.

    Raises:
        ValueError: an unknown name (close and known ones listed) or a factory that cannot be
            imported.
    """
    name, settings, is_factory = parse(value)
    if is_factory:
        return name, import_factory(name), settings
    if name in BUILTIN_RECIPES:
        return name, None, settings
    offered = get_recipes()
    if name in offered:
        factory = offered[name].factory
        return name, import_factory(factory) if isinstance(factory, str) else factory, settings
    known = [*BUILTIN_RECIPES, *(n for n in offered if n not in BUILTIN_RECIPES)]
    close = difflib.get_close_matches(str(name), known, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise ValueError(f"unknown training recipe {name!r}{hint}; expected one of "
                     f"{', '.join(known)}, or {{factory: 'module:attribute'}}")


def as_param(value: Any) -> str | dict[str, Any] | None:
    """What a trial's ``params`` record of the space's ``recipe`` (JSON-ready: a name or a
    mapping); None for the default, which ``params`` leave out as before recipes were named."""
    if value == DEFAULT:
        return None
    if isinstance(value, str):
        return value
    return dict(value if isinstance(value, dict) else value.model_dump())
