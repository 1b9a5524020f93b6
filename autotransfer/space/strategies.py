"""Pruners and samplers by name or factory: the search space's ``pruner`` and ``sampler``.

``pruner: median`` names a pruner with this project's defaults; a mapping adds or overrides
its factory's arguments, ``pruner: {type: hyperband, reduction_factor: 2}``. The names are
Optuna's pruners and samplers (:data:`PRUNERS`, :data:`SAMPLERS`) and those a plugin offers
through the ``register_strategies`` hook (a :class:`~autotransfer.contract.strategies.Strategy`;
a name the builtins use is not replaced). A factory by import path needs no registration:
``pruner: {factory: "my_package.schedulers:make_pruner", eta: 3}`` calls
``make_pruner(eta=3)``; it must return an Optuna pruner (sampler). The arguments are checked
by the factory itself when the space is loaded, so a bad one is a one-line error naming the key.
"""

from __future__ import annotations

from typing import Any

from autotransfer.contract.strategies import Strategy
from autotransfer.space.factories import accepted, import_factory, parse

__all__ = ["PRUNERS", "SAMPLERS", "Strategy", "build", "resolve", "split"]


def _table(*strategies: Strategy) -> dict[str, Strategy]:
    return {s.name: s for s in strategies}


PRUNERS: dict[str, Strategy] = _table(
    Strategy(
        "pruner", "hyperband", "HyperbandPruner",
        lambda epochs: {"min_resource": 1, "max_resource": epochs, "reduction_factor": 3},
        "brackets of successive halving; about the best third of a rung goes on",
    ),
    Strategy(
        "pruner", "median", "MedianPruner",
        lambda epochs: {"n_startup_trials": 2, "n_warmup_steps": 0},
        "stops a trial below the median of earlier trials at the same epoch",
    ),
    Strategy(
        "pruner", "percentile", "PercentilePruner",
        lambda epochs: {"percentile": 25.0, "n_startup_trials": 2, "n_warmup_steps": 0},
        "stops a trial below the given percentile of earlier trials at the same epoch",
    ),
    Strategy(
        "pruner", "successive_halving", "SuccessiveHalvingPruner",
        lambda epochs: {"min_resource": 1, "reduction_factor": 3},
        "asynchronous successive halving (one bracket of hyperband)",
    ),
    Strategy("pruner", "none", "NopPruner", help="every trial runs all its epochs"),
)

SAMPLERS: dict[str, Strategy] = _table(
    Strategy(
        "sampler", "tpe", "TPESampler",
        lambda epochs: {"multivariate": True, "n_startup_trials": 5},
        "multivariate tree-structured Parzen estimator after 5 random trials",
    ),
    Strategy("sampler", "random", "RandomSampler", help="independent random sampling"),
    Strategy(
        "sampler", "nsga2", "NSGAIISampler", lambda epochs: {"population_size": 10},
        "NSGA-II, the genetic algorithm for several objectives (Deb et al. 2002)",
    ),
)


def split(value: Any) -> tuple[str, dict[str, Any]]:
    """``"median"``, ``{"type": "median", ...}`` or ``{"factory": "pkg.mod:make", ...}`` ->
    ``("median", settings)`` (a factory's name is its import path)."""
    name, settings, _ = parse(value)
    return name, settings


def resolve(kind: str, value: Any) -> tuple[str, Strategy, dict[str, Any]]:
    """The name, :class:`Strategy` and settings of the space's ``pruner`` or ``sampler``: a
    builtin, a plugin's (the plugins load when the name is not a builtin) or a factory.

    Raises:
        ValueError: an unknown name (the known ones listed).
    """
    name, settings, is_factory = parse(value)
    if is_factory:
        return name, Strategy(kind, name, name), settings
    builtins = PRUNERS if kind == "pruner" else SAMPLERS
    if name in builtins:
        return name, builtins[name], settings
    from autotransfer.contract.collect import get_strategies

    offered = get_strategies()[kind]
    if name in offered:
        return name, offered[name], settings
    known = [*builtins, *(n for n in offered if n not in builtins)]
    raise ValueError(f"unknown {kind} {name!r}; expected one of {', '.join(known)}, or "
                     f"{{factory: 'module:attribute'}}")


def _factory(kind: str, strategy: Strategy):
    """The callable behind ``strategy.factory``."""
    import optuna

    factory = strategy.factory
    if callable(factory):
        return factory
    if ":" not in factory:  # an Optuna class name
        module = optuna.pruners if kind == "pruner" else optuna.samplers
        if not hasattr(module, factory):
            raise ValueError(f"optuna.{kind}s has no {factory!r}")
        return getattr(module, factory)
    return import_factory(factory)


def build(kind: str, value: Any, *, epochs: int, **context: Any) -> Any:
    """The pruner (``kind="pruner"``) or sampler named by ``value``.

    ``context`` adds arguments the search decides (a sampler's ``seed``), passed when the
    factory accepts them.

    Raises:
        ValueError: an unknown name, a factory that cannot be imported, arguments the factory
            rejects (its message, after the name) or a result that is not an Optuna pruner
            (sampler).
    """
    import optuna

    name, strategy, settings = resolve(kind, value)
    factory = _factory(kind, strategy)
    arguments = {**strategy.defaults(epochs), **settings, **accepted(factory, context)}
    try:
        built = factory(**arguments)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name}: {exc}") from None
    base = optuna.pruners.BasePruner if kind == "pruner" else optuna.samplers.BaseSampler
    if not isinstance(built, base):
        raise ValueError(f"{name}: the factory returned a {type(built).__name__}, not an "
                         f"optuna.{kind}s.{base.__name__}")
    return built
