"""Checkpoint averaging inside a trial: the greedy soup of its best epochs.

Wortsman et al., 2022, "Model soups: averaging weights of multiple fine-tuned models improves
accuracy without increasing inference time" (ICML, arXiv 2203.05482), section 3: rank the
checkpoints by validation score, start from the best, and add each next one to the average
only if the validation score of the average does not drop. Here the checkpoints are the epoch
ends of one trial (as AutoGluon MultiModal averages a run's best 3 checkpoints), so every one
shares the architecture and the start; the averaged model costs nothing more to run.

By construction the soup scores at least the best single checkpoint on validation, so a trial
with averaging scores at least its best epoch, which is at least its last epoch (the score
without averaging). What it bought is recorded (``TrainResult.averaging``): the gain over the
last epoch (the score the trial has without averaging) and over the best epoch.

:func:`load_average` is the average itself, shared with the soup across trials
(:mod:`autotransfer.model.soup`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch

from autotransfer.finetune.results import EpochResult, TrainResult


@dataclass
class _Checkpoint:
    epoch: int
    score: float
    state: dict[str, torch.Tensor]


def _trained_state(trainer: Any) -> dict[str, torch.Tensor]:
    """A CPU copy of what training changes: the trainable parameters and every float buffer
    (BatchNorm statistics), by ``state_dict`` key."""
    trainable = {n for n, p in trainer.model.named_parameters() if p.requires_grad}
    buffers = {n for n, b in trainer.model.named_buffers() if b.is_floating_point()}
    return {k: v.detach().to("cpu", copy=True)
            for k, v in trainer.model.state_dict().items() if k in trainable | buffers}


def load_average(model: torch.nn.Module, states: list[dict[str, torch.Tensor]]) -> None:
    """Load the uniform average of ``states`` (``state_dict`` entries by key, the first
    state's keys; float tensors averaged in float32, an integer buffer such as BatchNorm's
    ``num_batches_tracked`` taken from the first) into ``model``, in its own dtypes; keys the
    states lack keep ``model``'s values (Wortsman et al. 2022's uniform average of an
    ingredient list).

    Raises:
        KeyError: a state lacks a key of the first, or ``model`` lacks one.
    """
    averaged = {k: (sum(s[k].float() for s in states) / len(states)
                    if states[0][k].is_floating_point() else states[0][k])
                for k in states[0]}
    model_state = model.state_dict()
    model.load_state_dict(
        {**model_state, **{k: v.to(model_state[k].dtype) for k, v in averaged.items()}})


def _load_average(trainer: Any, soup: list[_Checkpoint]) -> None:
    """Load the uniform average of ``soup``'s states into the trainer's model."""
    load_average(trainer.model, [c.state for c in soup])


@dataclass
class GreedySoup:
    """Keep the ``k`` best epoch ends of a trial by validation score, then average them
    greedily (see the module docstring). An :class:`~autotransfer.finetune.recipe.EpochStep`.

    Attributes:
        k: how many checkpoints to keep (at least 1; 1 keeps the best epoch's weights).
        epochs: replay: average exactly these epochs, without validation (a refit on
            train+val reproducing a search trial's soup); None: choose greedily.
    """

    k: int
    epochs: list[int] | None = None
    kept: list[_Checkpoint] = field(default_factory=list, repr=False)

    def after_epoch(self, trainer: Any, result: EpochResult) -> None:
        if self.epochs is not None:
            if result.epoch in self.epochs:
                self.kept.append(_Checkpoint(result.epoch, result.score, _trained_state(trainer)))
            return
        if math.isnan(result.score):
            return
        worst = min(self.kept, key=lambda c: (c.score, c.epoch)) if self.kept else None
        if len(self.kept) < self.k:
            self.kept.append(_Checkpoint(result.epoch, result.score, _trained_state(trainer)))
        elif worst is not None and result.score > worst.score:  # a tie keeps the earlier one
            self.kept.remove(worst)
            self.kept.append(_Checkpoint(result.epoch, result.score, _trained_state(trainer)))

    def after_fit(self, trainer: Any, result: TrainResult) -> None:
        """Load the soup into the trainer's model and record ``result.averaging``."""
        if not self.kept:
            return
        if self.epochs is not None:
            soup = sorted(self.kept, key=lambda c: self.epochs.index(c.epoch))
            _load_average(trainer, soup)
            result.averaging = {"k": self.k, "epochs": [c.epoch for c in soup], "replayed": True}
            return
        ranked = sorted(self.kept, key=lambda c: (-c.score, c.epoch))
        soup, best = [ranked[0]], ranked[0].score
        for candidate in ranked[1:]:
            _load_average(trainer, [*soup, candidate])
            score = trainer.val_score()
            if score >= best:
                soup, best = [*soup, candidate], score
        _load_average(trainer, soup)
        trainer.val_score()  # the soup's predictions and loss stay on the trainer
        result.averaging = {
            "k": self.k, "epochs": [c.epoch for c in soup], "tried": len(ranked),
            "best_epoch": ranked[0].epoch, "best_epoch_score": ranked[0].score,
            "last_epoch_score": result.history[-1].score, "score": best,
            # over the trial without averaging (scored at its last epoch), and over its best one
            "gain": best - result.history[-1].score, "gain_over_best_epoch": best - ranked[0].score,
        }

    def state_dict(self) -> dict[str, Any]:
        return {"kept": [(c.epoch, c.score, c.state) for c in self.kept]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.kept = [_Checkpoint(e, s, st) for e, s, st in state.get("kept", [])]
