"""What training produced: one epoch (:class:`EpochResult`) and a whole fit
(:class:`TrainResult`); a leaf, so that the trainer, its recipes and checkpoints share them."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any


@dataclass
class EpochResult:
    """What one epoch produced; ``score`` is the study's metric on the validation split.

    ``seconds`` is the epoch's training time, without the validation pass after it
    (``val_seconds``); ``samples_per_second`` counts the training samples of that time.
    """

    epoch: int
    train_loss: float
    scores: dict[str, float]  # metric name -> value (autotransfer.space.objectives)
    score: float
    seconds: float
    samples_per_second: float
    val_loss: float = math.nan  # mean cross-entropy on the validation split (nats), no smoothing
    val_seconds: float = 0.0  # the validation pass after the epoch

    @property
    def accuracy(self) -> float:
        return self.scores.get("accuracy", math.nan)

    @property
    def macro_f1(self) -> float:
        return self.scores.get("macro_f1", math.nan)


@dataclass
class TrainResult:
    """What :meth:`Trainer.fit` produced: each epoch, the test scores (None without a test
    split), the trainable parameter count and how many of the layer groups were frozen;
    ``averaging``: what checkpoint averaging chose and bought (None without it,
    :class:`~autotransfer.finetune.averaging.GreedySoup`); ``lengths``: the planned length,
    then each longer one it was re-planned to (a freeze-thaw continuation)."""

    history: list[EpochResult] = field(default_factory=list)
    test: dict[str, float] | None = None
    n_trainable: int = 0
    n_groups: int = 0
    n_frozen_groups: int = 0
    averaging: dict[str, Any] | None = None
    lengths: list[int] = field(default_factory=list)  # each planned length ([4, 8]: continued)

    @property
    def epochs(self) -> int:
        """The epochs trained."""
        return len(self.history)

    @property
    def continuations(self) -> int:
        """How many times the planned length grew (:meth:`Trainer.replan`)."""
        return max(0, len(self.lengths) - 1)

    @property
    def score(self) -> float:
        """The validation score of the trained model: the averaged one's when checkpoints
        were averaged, else the last epoch's."""
        if self.averaging is not None and "score" in self.averaging:
            return float(self.averaging["score"])
        return self.history[-1].score
