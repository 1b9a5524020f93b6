"""What a plugin registers to offer a training recipe (hook ``register_recipes``).

A search space names a recipe (``recipe: head_l2`` or ``recipe: {type: head_l2, weight: 0.5}``)
and every trial, spawned worker and refit builds it from the entry's ``factory``
(:func:`autotransfer.finetune.recipe.recipe_for`). The entry knows no torch: its factory may be
an import path, so that loading the plugin stays light.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from autotransfer.errors import PluginError


@dataclass(frozen=True)
class Recipe:
    """A training recipe that a search space names (``recipe: <name>``).

    Args:
        name: what a space writes after ``recipe:`` (or as its ``type``).
        factory: what builds it: a callable, or an import path ``"package.module:attribute"``
            (imported when a space names it). It is called with keyword arguments: the
            space's settings, plus the trial's ``label_smoothing`` when it takes it, and must
            return an :class:`autotransfer.finetune.recipe.TrainingRecipe` (a subclass of
            ``Supervised`` is the usual factory).
        help: one line for the docs and the error that lists the known names: what it adds,
            and its source (paper or library).

    Raises:
        PluginError: an empty name, or a factory that is neither a string nor a callable.
    """

    name: str
    factory: str | Callable[..., Any]
    help: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise PluginError(f"a training recipe needs a name, got {self.name!r}")
        if not (isinstance(self.factory, str) or callable(self.factory)):
            raise PluginError(f"recipe {self.name!r}: factory must be 'module:attribute' or a "
                              f"callable, got {self.factory!r}")
