"""The study's pruner and sampler, built from the search space's ``pruner`` and ``sampler``
(names and settings: :mod:`autotransfer.space.strategies`)."""

from __future__ import annotations

from autotransfer.space.schema import SearchSpace
from autotransfer.space.strategies import PRUNERS, SAMPLERS, build

__all__ = ["PRUNERS", "SAMPLERS", "make_pruner", "make_sampler", "pruner_says",
           "report_epoch"]


def make_pruner(space: SearchSpace):
    """The pruner named by the space; its resource is the epoch."""
    return build("pruner", space.pruner, epochs=space.epochs)


def pruner_says(trial, score: float, epoch: int, epochs: int, metric: str, *,
                prunable: bool = True) -> str | None:
    """Report an epoch's val ``score`` to the study's pruner; the reason to prune, or None after
    the last epoch or for a trial that is not ``prunable`` (a reference trial).

    A trial that trained all its epochs is complete whatever the pruner thinks: its score
    costs nothing more, and Hyperband's top rung would otherwise discard it.
    """
    trial.report(score, epoch)
    if prunable and epoch < epochs and trial.should_prune():
        return f"pruned after epoch {epoch}/{epochs}: {metric} {score:.4f} below the pruner's bar"
    return None


def report_epoch(trial, score: float, epoch: int, epochs: int, metric: str, *,
                 prunable: bool = True) -> None:
    """:func:`pruner_says`, its reason recorded on the trial and raised.

    Raises:
        optuna.TrialPruned: after an epoch before the last one, when the pruner says so (the
            reason is recorded on the trial).
    """
    import optuna

    from autotransfer.study.records import TrialWriter

    reason = pruner_says(trial, score, epoch, epochs, metric, prunable=prunable)
    if reason is not None:
        TrialWriter(trial).pruned(reason, rule="pruner")
        raise optuna.TrialPruned(reason)


def make_sampler(space: SearchSpace, seed: int):
    """The sampler named by the space, seeded (each worker adds its number to the seed)."""
    return build("sampler", space.sampler, epochs=space.epochs, seed=seed)
