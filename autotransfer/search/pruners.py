"""Pruners and samplers of a study, by the names the search space uses."""

from __future__ import annotations

from autotransfer.contract.space import SearchSpace


def make_pruner(space: SearchSpace):
    """The pruner named by the space; its resource is the epoch."""
    import optuna

    if space.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(
            min_resource=1, max_resource=space.epochs, reduction_factor=3
        )
    if space.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0)
    return optuna.pruners.NopPruner()


def report_epoch(trial, score: float, epoch: int, epochs: int, metric: str) -> None:
    """Report an epoch's val ``score`` to the pruner; prune unless it was the last epoch.

    A trial that trained all its epochs is complete whatever the pruner thinks: its score
    costs nothing more, and Hyperband's top rung would otherwise discard it.

    Raises:
        optuna.TrialPruned: after an epoch before the last one, when the pruner says so (the
            reason is recorded on the trial).
    """
    import optuna

    from autotransfer.search.records import TrialWriter

    trial.report(score, epoch)
    if epoch < epochs and trial.should_prune():
        reason = f"pruned after epoch {epoch}/{epochs}: {metric} {score:.4f} below the pruner's bar"
        TrialWriter(trial).pruned(reason)
        raise optuna.TrialPruned(reason)


def make_sampler(seed: int):
    import optuna

    return optuna.samplers.TPESampler(seed=seed, multivariate=True, n_startup_trials=5)
