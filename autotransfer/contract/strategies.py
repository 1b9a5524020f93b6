"""What a plugin registers to offer a pruner or sampler (hook ``register_strategies``).

The search space names a strategy (``pruner: my_halving``), and
:func:`autotransfer.space.strategies.build` calls its ``factory`` with its default arguments
and the space's settings. The builtins (Optuna's pruners and samplers with this project's
defaults) are :class:`Strategy` entries of :mod:`autotransfer.space.strategies` too.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from autotransfer.errors import PluginError

KINDS = ("pruner", "sampler")


def no_defaults(epochs: int) -> dict[str, Any]:
    """No default arguments, whatever the space's ``epochs``."""
    return {}


@dataclass(frozen=True)
class Strategy:
    """A pruner or sampler that a search space names like Optuna's own.

    Args:
        kind: ``"pruner"`` (an ``optuna.pruners.BasePruner``; its resource is the epoch) or
            ``"sampler"`` (an ``optuna.samplers.BaseSampler``).
        name: what a space writes: ``pruner: <name>`` or ``pruner: {type: <name>, ...}``.
        factory: what builds it: an Optuna class name (``"MedianPruner"``, an attribute of
            ``optuna.pruners`` or ``optuna.samplers``), an import path
            (``"package.module:attribute"``) or a callable. It is called with keyword arguments:
            ``defaults(epochs)``, overridden by the space's settings, plus a sampler's ``seed``
            when it accepts one.
        defaults: the space's ``epochs`` -> default arguments (Hyperband's ``max_resource`` is
            the epochs).
        help: one line for the docs and the error that lists the known names.

    Raises:
        PluginError: a kind other than the two, an empty name, or a factory that is neither a
            string nor a callable.
    """

    kind: str
    name: str
    factory: str | Callable[..., Any]
    defaults: Callable[[int], dict[str, Any]] = field(default=no_defaults)
    help: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise PluginError(f"strategy {self.name!r}: kind must be one of {', '.join(KINDS)}, "
                              f"got {self.kind!r}")
        if not isinstance(self.name, str) or not self.name:
            raise PluginError(f"a {self.kind} needs a name, got {self.name!r}")
        if not (isinstance(self.factory, str) or callable(self.factory)):
            raise PluginError(f"{self.kind} {self.name!r}: factory must be an Optuna class name, "
                              f"'module:attribute' or a callable, got {self.factory!r}")
