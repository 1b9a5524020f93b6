"""What a search can optimise or bound: a registry of objectives, each saying how it is obtained.

Two kinds, one registry (:func:`register_objective`, :func:`objectives`):

- a **metric** (``measure="score"``) is computed from a split's predictions and labels by its
  ``compute(labels, preds) -> float`` (scikit-learn's ``(y_true, y_pred)`` order, ``(N,)``
  int class indices). Every registered metric is computed on the validation split after each
  epoch and on the test split after training, and recorded on the trial; the space's
  ``metric`` (or the metric of its ``objectives``) is the trial's value.
- a **cost** (``measure="cost"``) is measured once, on the trained model, by the measurement
  step (:func:`autotransfer.finetune.cost.measure_cost`): its ``key`` is the key of that step's
  result and of the trial's record; a cost from outside the core may instead give
  ``compute(model) -> float``, which the measurement step calls on the trained model. A cost
  may be a second objective (``objectives``) or a bound (``constraints``: an upper bound for a
  minimised cost, a lower bound for a maximised one such as ``throughput``).

A new metric or cost is one :func:`register_objective` call (the builtins below are entries of
the same table), or, from a plugin, one ``register_objectives`` hook that offers it: those are
declared here (:func:`declare_plugin_objectives`) when a space names an objective that is not
registered yet, in the search and in each spawned worker alike. The leaderboard,
``best.yaml``, the history, the trackers and the plots iterate over the registry or over the
study's own objectives.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from autotransfer.contract.collect import get_objectives, on_reset


@dataclass(frozen=True)
class Objective:
    """One quantity a trial is judged by.

    Attributes:
        name: the key in the space (``metric``, ``objectives``, ``constraints``, ``pick``).
        direction: ``"maximize"`` or ``"minimize"`` (Optuna's words).
        measure: ``"score"`` (a validation metric, known after each epoch) or ``"cost"``
            (measured once, on the trained model).
        prunable: whether an epoch's value can be reported to a pruner (only a score is).
        unit: for messages and plot axes.
        compute: a metric's ``(labels, preds) -> float``; a cost's optional
            ``(model) -> float`` (else the measurement step reports ``key``).
        key: a cost's key in the measurement's result and the trial's record (default
            ``name``; ``params`` is recorded as ``params_count``).
        fmt: format spec of its table cells (``".4f"``, ``","``).
        label: its column header in tables (default ``name``).
        always: a metric computed for every trial, not only those of a study that names it
            (the two cheap builtins; a metric that imports a library is computed only when
            a study optimises it).
    """

    name: str
    direction: Literal["maximize", "minimize"]
    measure: Literal["score", "cost"]
    prunable: bool = False
    unit: str = ""
    compute: Callable[..., float] | None = None
    key: str = ""
    fmt: str = ".4f"
    label: str = ""
    always: bool = False

    def __post_init__(self) -> None:
        if self.direction not in ("maximize", "minimize"):
            raise ValueError(f"objective {self.name!r}: direction must be 'maximize' or "
                             f"'minimize', got {self.direction!r}")
        if self.measure not in ("score", "cost"):
            raise ValueError(f"objective {self.name!r}: measure must be 'score' or 'cost', "
                             f"got {self.measure!r}")
        if self.measure == "score" and self.compute is None:
            raise ValueError(f"metric {self.name!r}: give compute(labels, preds) -> float")
        if not self.key:
            object.__setattr__(self, "key", self.name)
        if not self.label:
            object.__setattr__(self, "label", self.name.replace("_", " "))

    @property
    def sign(self) -> int:
        """+1 when larger is better, -1 when smaller is."""
        return 1 if self.direction == "maximize" else -1

    def violation(self, value: float, bound: float) -> float:
        """How far ``value`` is past ``bound`` (feasible where <= 0): ``value - bound`` for a
        minimised cost (an upper bound), ``bound - value`` for a maximised one (a lower
        bound)."""
        return -self.sign * (float(value) - bound)


def _confusion(labels: Any, preds: Any) -> np.ndarray:
    labels, preds = np.asarray(labels, dtype=np.int64), np.asarray(preds, dtype=np.int64)
    n = int(max(labels.max(initial=-1), preds.max(initial=-1))) + 1
    return np.bincount(labels * n + preds, minlength=n * n).reshape(n, n).astype(np.float64)


def accuracy(labels: Any, preds: Any) -> float:
    """The fraction of ``preds`` equal to ``labels`` (0.0 for none)."""
    confusion = _confusion(labels, preds)
    return float(np.trace(confusion) / max(1.0, confusion.sum()))


def macro_f1(labels: Any, preds: Any) -> float:
    """Mean F1 over the classes present in ``labels`` or ``preds`` (scikit-learn's
    ``f1_score(average="macro")``)."""
    confusion = _confusion(labels, preds)
    support, predicted = confusion.sum(1), confusion.sum(0)
    present = (support + predicted) > 0
    if not present.any():
        return 0.0
    f1 = 2 * np.diag(confusion) / np.maximum(support + predicted, 1)
    import torch  # torch's mean (its summation order): the scores of 0.1 studies, to the bit

    return float(torch.from_numpy(f1[present]).mean())


def balanced_accuracy(labels: Any, preds: Any) -> float:
    """Mean recall over the classes present in ``labels`` (scikit-learn's
    ``balanced_accuracy_score``; Brodersen et al. 2010)."""
    import warnings

    from sklearn.metrics import balanced_accuracy_score

    with warnings.catch_warnings():  # "y_pred contains classes not in y_true": expected
        warnings.simplefilter("ignore", UserWarning)
        return float(balanced_accuracy_score(labels, preds))


_REGISTRY: dict[str, Objective] = {}


def register_objective(objective: Objective, *, replace: bool = False) -> Objective:
    """Add ``objective`` to the registry (then a space may name it as ``metric``, in
    ``objectives``, a cost in ``constraints``); returns it.

    Example:
        >>> from sklearn.metrics import cohen_kappa_score
        >>> from autotransfer.space.objectives import Objective, register_objective
        >>> _ = register_objective(Objective("kappa", "maximize", "score", prunable=True,
        ...                                  compute=cohen_kappa_score), replace=True)

    Raises:
        ValueError: ``objective.name`` is registered already (unless ``replace``).
    """
    if objective.name in _REGISTRY and not replace:
        raise ValueError(f"objective {objective.name!r} is registered already")
    _REGISTRY[objective.name] = objective
    return objective


def unregister_objective(name: str) -> None:
    """Remove objective ``name`` (a test's or a plugin's own; unknown names are ignored)."""
    _REGISTRY.pop(name, None)


#: the objectives declared from a plugin's ``register_objectives`` hook (forgotten when the
#: plugins change: ``contract.collect.reset_registry``)
_FROM_PLUGINS: set[str] = set()


def declare_plugin_objectives() -> None:
    """Register the objectives that the loaded plugins offer through ``register_objectives``
    (loading the plugins first); a name already registered (a builtin) wins.

    Raises:
        PluginError: a plugin registers something that is not an objective.
    """
    for name, objective in get_objectives().items():
        if name not in _REGISTRY:
            register_objective(objective)
            _FROM_PLUGINS.add(name)


def declare_plugin_objectives_named(names: Any) -> None:
    """:func:`declare_plugin_objectives` when one of ``names`` is not registered yet (so that
    the plugins load only then)."""
    if any(name not in _REGISTRY for name in names):
        declare_plugin_objectives()


def _forget_plugin_objectives() -> None:
    for name in sorted(_FROM_PLUGINS):
        unregister_objective(name)
    _FROM_PLUGINS.clear()


on_reset(_forget_plugin_objectives)


def objectives(measure: str | None = None) -> tuple[Objective, ...]:
    """The registered objectives (of ``measure``, "score" or "cost"), in registration order."""
    return tuple(o for o in _REGISTRY.values() if measure is None or o.measure == measure)


def metric_names() -> tuple[str, ...]:
    """The objectives that are a validation metric (``metric`` in the space)."""
    return tuple(o.name for o in objectives("score"))


def cost_names() -> tuple[str, ...]:
    """The objectives measured on the trained model; each can be a ``constraints`` bound."""
    return tuple(o.name for o in objectives("cost"))


def get_objective(name: str) -> Objective:
    """The registered objective ``name``.

    Raises:
        ValueError: an unknown name (the message lists the known ones).
    """
    if name not in _REGISTRY:
        raise ValueError(f"unknown objective {name!r}; expected one of {', '.join(_REGISTRY)}")
    return _REGISTRY[name]


def computed_metrics(metric: str | None = None) -> tuple[str, ...]:
    """The metrics a trial computes: those of every trial (``always``) and ``metric``.

    Raises:
        ValueError: ``metric`` is not a registered metric.
    """
    if metric is not None and get_objective(metric).measure != "score":
        raise ValueError(f"{metric!r} is a cost, not a metric")
    return tuple(o.name for o in objectives("score") if o.always or o.name == metric)


def classification_scores(labels: Any, preds: Any, metric: str | None = None
                          ) -> dict[str, float]:
    """The metrics of ``preds`` against ``labels`` (``(N,)`` class indices): those computed
    for every trial (``always``) and ``metric``, by name, in registration order.

    Raises:
        ValueError: ``metric`` is not a registered metric.
    """
    names = computed_metrics(metric)
    return {o.name: float(o.compute(labels, preds)) for o in objectives("score")
            if o.name in names and o.compute is not None}


for _builtin in (
    Objective("accuracy", "maximize", "score", prunable=True, compute=accuracy,
              label="acc", always=True),
    Objective("macro_f1", "maximize", "score", prunable=True, compute=macro_f1,
              label="macro-F1", always=True),
    Objective("balanced_accuracy", "maximize", "score", prunable=True,
              compute=balanced_accuracy, label="bal acc"),
    Objective("latency_ms", "minimize", "cost", unit="ms", fmt=".2f", label="latency ms"),
    Objective("throughput", "maximize", "cost", unit="samples/s", fmt=".0f",
              label="samples/s"),
    Objective("params", "minimize", "cost", unit="parameters", key="params_count", fmt=",",
              label="params"),
    Objective("size_mb", "minimize", "cost", unit="MB", fmt=".1f", label="MB"),
    Objective("peak_memory_mb", "minimize", "cost", unit="MiB", fmt=".0f",
              label="peak MiB"),
):
    register_objective(_builtin)
