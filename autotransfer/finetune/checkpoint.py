"""A trainer's state at an epoch boundary, and resuming from it bit for bit.

A checkpoint holds what the next epoch depends on: the model's weights (``state_dict``), the
optimiser's moments, the learning-rate schedule's position, the epoch, the random generators
(torch's global one, which dropout draws from; the trainer's own, which shuffles, augments and
draws cached views; CUDA's), the loss of the first step (the divergence check's reference), the
history so far, the recipe's state (the checkpoints an averaging step keeps) and the plan (the
planned length and each earlier one, :meth:`Trainer.replan`; the schedule's own state holds its
re-planned cosine). It is a dict of
tensors and plain values: ``torch.save`` writes it, ``torch.load(path, weights_only=False)``
reads it back. This is the seam that a freeze-thaw continuation (a trial paused at an epoch end
and resumed later) uses: :meth:`Trainer.checkpoint` then ``Trainer.fit(epochs, resume=...)`` on
a trainer built alike.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from autotransfer.finetune.results import EpochResult

#: bumped when what a checkpoint holds changes
VERSION = 2  # 2: EpochResult.scores (a metric -> value mapping)


def capture(trainer: Any) -> dict[str, Any]:
    """The state of ``trainer`` after epoch ``trainer.epoch`` (see the module docstring).

    Raises:
        RuntimeError: called before ``fit`` set up the schedule.
    """
    if trainer.scheduler is None:
        raise RuntimeError("a checkpoint is taken at an epoch end, inside or after fit")
    state: dict[str, Any] = {
        "version": VERSION,
        "epoch": trainer.epoch,
        "model": {k: v.detach().clone() for k, v in trainer.model.state_dict().items()},
        "optimizer": trainer.optimizer.state_dict(),
        "scheduler": trainer.scheduler.state_dict(),
        "rng": {"torch": torch.get_rng_state(), "trainer": trainer.generator.get_state()},
        "first_loss": trainer.first_loss,
        "history": [dataclasses.asdict(h) for h in trainer.history],
        "recipe": trainer.recipe.state_dict(),
        # the plan: the running fit's planned length and each one it had (a continuation's)
        "planned": trainer.epochs,
        "lengths": list(trainer.lengths),
    }
    if trainer.device.type == "cuda":
        state["rng"]["cuda"] = torch.cuda.get_rng_state(trainer.device)
    return _copy(state)


def _copy(state: Any) -> Any:
    """A deep copy whose tensors no longer alias the trainer's (the optimiser's state_dict
    holds its live moment tensors)."""
    if isinstance(state, torch.Tensor):
        return state.detach().clone()
    if isinstance(state, dict):
        return {k: _copy(v) for k, v in state.items()}
    if isinstance(state, (list, tuple)):
        return type(state)(_copy(v) for v in state)
    return state


def restore(trainer: Any, state: dict[str, Any]) -> list[EpochResult]:
    """Put ``trainer`` back to ``state`` (from :func:`capture`); returns the history so far.

    Raises:
        ValueError: a checkpoint of another version.
    """
    if state.get("version") != VERSION:
        raise ValueError(f"checkpoint version {state.get('version')!r}; this autotransfer "
                         f"reads version {VERSION}")
    assert trainer.scheduler is not None
    trainer.model.load_state_dict(state["model"])
    trainer.optimizer.load_state_dict(_copy(state["optimizer"]))
    trainer.scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["rng"]["torch"])
    trainer.generator.set_state(state["rng"]["trainer"])
    if "cuda" in state["rng"] and trainer.device.type == "cuda":
        torch.cuda.set_rng_state(state["rng"]["cuda"], trainer.device)
    trainer.first_loss = state["first_loss"]
    trainer.recipe.load_state_dict(_copy(state["recipe"]))
    trainer.epoch = int(state["epoch"])
    if "lengths" in state:  # taken by a version that re-plans (a continued trial's plan)
        trainer.lengths = [int(n) for n in state["lengths"]]
        trainer.epochs = int(state["planned"])
    return [EpochResult(**h) for h in state["history"]]
