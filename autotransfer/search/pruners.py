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


def make_sampler(seed: int):
    import optuna

    return optuna.samplers.TPESampler(seed=seed, multivariate=True, n_startup_trials=5)
