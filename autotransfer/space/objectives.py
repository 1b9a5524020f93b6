"""What a search can optimise or bound: a registry of objectives.

The space's ``metric`` (or the metric of its ``objectives``) is the trial's validation score;
``latency_ms``, ``params`` and ``size_mb`` are measured on the trained model after training
(:mod:`autotransfer.finetune.cost`) and may be a second objective (``objectives``) or an upper
bound (``constraints``). A new objective is one entry in :data:`OBJECTIVES`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class Objective:
    """One quantity a trial is judged by.

    Attributes:
        name: the key in the space (``objectives``, ``constraints``, ``pick``) and the trial's
            user attribute that holds the measured value (the metrics: the trial's value).
        direction: ``"maximize"`` or ``"minimize"`` (Optuna's words).
        measure: ``"score"`` (the validation metric, known after each epoch) or ``"cost"``
            (measured once, on the trained model).
        prunable: whether an epoch's value can be reported to a pruner (only a score is).
        unit: for messages and plot axes.
    """

    name: str
    direction: Literal["maximize", "minimize"]
    measure: Literal["score", "cost"]
    prunable: bool
    unit: str = ""

    @property
    def sign(self) -> int:
        """+1 when larger is better, -1 when smaller is."""
        return 1 if self.direction == "maximize" else -1


OBJECTIVES: dict[str, Objective] = {
    "accuracy": Objective("accuracy", "maximize", "score", prunable=True),
    "macro_f1": Objective("macro_f1", "maximize", "score", prunable=True),
    "latency_ms": Objective("latency_ms", "minimize", "cost", prunable=False, unit="ms"),
    "params": Objective("params", "minimize", "cost", prunable=False, unit="parameters"),
    "size_mb": Objective("size_mb", "minimize", "cost", prunable=False, unit="MB"),
}

#: The objectives that are a validation metric (``metric`` in the space).
METRICS = tuple(name for name, o in OBJECTIVES.items() if o.measure == "score")
#: The objectives measured on the trained model; each can also be a ``constraints`` bound.
COSTS = tuple(name for name, o in OBJECTIVES.items() if o.measure == "cost")


def get_objective(name: str) -> Objective:
    """The registered objective ``name``.

    Raises:
        ValueError: an unknown name (the message lists the known ones).
    """
    if name not in OBJECTIVES:
        raise ValueError(f"unknown objective {name!r}; expected one of {', '.join(OBJECTIVES)}")
    return OBJECTIVES[name]
