"""Pruners and samplers by name: the search space's ``pruner`` and ``sampler``.

``pruner: median`` names an Optuna pruner with this project's defaults; a mapping adds or
overrides its constructor's arguments, ``pruner: {type: hyperband, reduction_factor: 2}``. The
arguments are checked by Optuna's own constructor when the space is loaded, so a bad one is a
one-line error naming the key. A new pruner or sampler is one entry in :data:`PRUNERS` or
:data:`SAMPLERS`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Strategy:
    """An Optuna class by name, with this project's default arguments.

    ``defaults(epochs)`` gives the arguments (a pruner's resource is the epoch, so Hyperband's
    ``max_resource`` is the space's ``epochs``); the space's settings override them.
    """

    optuna_class: str  # attribute of optuna.pruners or optuna.samplers
    defaults: Callable[[int], dict[str, Any]]
    help: str


PRUNERS: dict[str, Strategy] = {
    "hyperband": Strategy(
        "HyperbandPruner",
        lambda epochs: {"min_resource": 1, "max_resource": epochs, "reduction_factor": 3},
        "brackets of successive halving; about the best third of a rung goes on",
    ),
    "median": Strategy(
        "MedianPruner", lambda epochs: {"n_startup_trials": 2, "n_warmup_steps": 0},
        "stops a trial below the median of earlier trials at the same epoch",
    ),
    "percentile": Strategy(
        "PercentilePruner",
        lambda epochs: {"percentile": 25.0, "n_startup_trials": 2, "n_warmup_steps": 0},
        "stops a trial below the given percentile of earlier trials at the same epoch",
    ),
    "successive_halving": Strategy(
        "SuccessiveHalvingPruner", lambda epochs: {"min_resource": 1, "reduction_factor": 3},
        "asynchronous successive halving (one bracket of hyperband)",
    ),
    "none": Strategy("NopPruner", lambda epochs: {}, "every trial runs all its epochs"),
}

SAMPLERS: dict[str, Strategy] = {
    "tpe": Strategy(
        "TPESampler", lambda epochs: {"multivariate": True, "n_startup_trials": 5},
        "multivariate tree-structured Parzen estimator after 5 random trials",
    ),
    "random": Strategy("RandomSampler", lambda epochs: {}, "independent random sampling"),
    "nsga2": Strategy(
        "NSGAIISampler", lambda epochs: {"population_size": 10},
        "NSGA-II, the genetic algorithm for several objectives (Deb et al. 2002)",
    ),
}


def split(value: Any) -> tuple[str, dict[str, Any]]:
    """``"median"`` or ``{"type": "median", ...}`` -> ``("median", settings)``."""
    if isinstance(value, str):
        return value, {}
    data = value if isinstance(value, dict) else value.model_dump()
    data = dict(data)
    return data.pop("type"), data


def build(kind: str, value: Any, *, epochs: int, **context: Any) -> Any:
    """The Optuna pruner (``kind="pruner"``) or sampler named by ``value``.

    ``context`` adds arguments the search decides (a sampler's ``seed``).

    Raises:
        ValueError: an unknown name, or arguments the Optuna constructor rejects (its message,
            after the key).
    """
    import optuna

    table, module = (PRUNERS, optuna.pruners) if kind == "pruner" else (SAMPLERS,
                                                                         optuna.samplers)
    name, settings = split(value)
    if name not in table:
        raise ValueError(f"unknown {kind} {name!r}; expected one of {', '.join(table)}")
    strategy = table[name]
    arguments = {**strategy.defaults(epochs), **settings, **context}
    try:
        return getattr(module, strategy.optuna_class)(**arguments)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name}: {exc}") from None
