"""The study's pruner and sampler, built from the search space's ``pruner`` and ``sampler``
(names and settings: :mod:`autotransfer.space.strategies`)."""

from __future__ import annotations

import warnings

from autotransfer.finetune.records import TrialWriter
from autotransfer.space.schema import SearchSpace
from autotransfer.space.strategies import PRUNERS, SAMPLERS, build, split

__all__ = ["PRUNERS", "SAMPLERS", "make_pruner", "make_sampler", "pruner_says", "report_epoch",
           "resumed_line"]


class PrunerWarning(UserWarning):
    """A pruner named in the space that the study cannot use."""


def make_pruner(space: SearchSpace, *, say: bool = False):
    """The pruner named by the space; its resource is the epoch.

    With several objectives there is none (``optuna.pruners.NopPruner``): Optuna's
    ``Trial.report`` takes one value, so no pruner can act. A pruner the space names
    explicitly is then said to be ignored (``say``: one :class:`PrunerWarning`)."""
    if space.multi_objective:
        import optuna

        named = (space.pruner if isinstance(space.pruner, str)
                 else space.pruner.type or space.pruner.factory)
        if say and "pruner" in space.model_fields_set and named != "none":
            warnings.warn(PrunerWarning(
                f"pruner: {named} is not used with several objectives "
                f"({', '.join(space.objective_names)}): Optuna prunes on one reported value, so "
                "every trial trains all its epochs (write pruner: none to silence this)"),
                stacklevel=2)
        return optuna.pruners.NopPruner()
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

    reason = pruner_says(trial, score, epoch, epochs, metric, prunable=prunable)
    if reason is not None:
        TrialWriter(trial).pruned(reason, rule="pruner")
        raise optuna.TrialPruned(reason)


def resumed_line(study, seed: int, sampler_seed: int) -> str | None:
    """The line for a run that adds trials to a study that has some (None otherwise).

    Each run (each worker) seeds the sampler with ``seed`` plus its worker number in the
    study, so that it does not draw the first run's configurations again; a sampler's
    state is not stored with the study, so trials added 1 + 1 + 1 are drawn differently
    from one run of 3 (the same sequence of runs draws the same again)."""
    from optuna.trial import TrialState

    done = sum(t.state.is_finished() and t.state != TrialState.WAITING
               for t in study.get_trials(deepcopy=False))
    if not done:
        return None
    return (f"sampler: seeded with {sampler_seed} (seed {seed} + this study's worker "
            f"{sampler_seed - seed}): it goes on from the study's {done} finished trial(s), "
            "but draws other configurations than one run of the whole total would")


def make_sampler(space: SearchSpace, seed: int, *, shared: bool = False):
    """The sampler named by the space, seeded (each worker adds its number to the seed).

    ``shared`` (workers share the study): TPE gets ``constant_liar=True`` (Optuna's fix for
    parallel workers proposing the same configuration, optuna#1547/#4714: a running trial counts
    as a poor result) unless the space sets it. Before optuna PR #6189 (``tpe:relative_params``
    shared through the storage), the liar did nothing for ``multivariate=True``: on such an
    Optuna, the sampler falls back to independent TPE unless the space sets ``multivariate``.
    """
    name, settings = split(space.sampler)
    context: dict = {"seed": seed}
    if shared and name == "tpe" and "constant_liar" not in settings:
        context["constant_liar"] = True
        if "multivariate" not in settings and not liar_sees_multivariate():
            context["multivariate"] = False
    return build("sampler", space.sampler, epochs=space.epochs, **context)


def liar_sees_multivariate() -> bool:
    """Whether the installed Optuna's ``constant_liar`` also covers multivariate TPE (PR #6189,
    seen by its ``_RELATIVE_PARAMS_KEY``: check it on an Optuna upgrade)."""
    from optuna.samplers._tpe import sampler

    return hasattr(sampler, "_RELATIVE_PARAMS_KEY")
