"""Backbones known to break the ``params`` bound are not drawn again.

A backbone's parameter count (head included) does not depend on the hyperparameters, except
for the adapters a tuning method adds (``lora``, ``ia3``). A trial of a method that adds none,
pruned because its model is over the ``params`` bound
(:func:`autotransfer.study.budget.measure.check_params_before_load`), so proves its backbone
infeasible for every later trial: :class:`ExcludeInfeasible` wraps the study's sampler and,
when it draws such a backbone, draws one of the others instead (uniformly, seeded by the trial
number), and says so once per backbone (:class:`InfeasibleWarning`). When every backbone is
infeasible the sampler's own draw stands (each such trial is pruned before loading, in
milliseconds). Without it, the sampler (TPE treats a pruned trial as a poor one, not an
impossible one) drew the same backbone again and could spend the whole ``--trials`` on it.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from optuna.samplers import BaseSampler

from autotransfer.finetune.records import TrialRecord
from autotransfer.study.budget.cost_aware import DelegatingSampler, whole_study

#: Tuning methods that add parameters (their count over the bound says nothing of the others).
ADDS_PARAMETERS = frozenset({"lora", "ia3"})


class InfeasibleWarning(UserWarning):
    """A backbone is not drawn again: its parameter count breaks the ``params`` bound."""


def infeasible_backbones(study) -> dict[str, str]:
    """``{backbone label: the reason}`` of backbones proven over the ``params`` bound."""
    from optuna.trial import TrialState

    found: dict[str, str] = {}
    for t in study.get_trials(deepcopy=False, states=(TrialState.PRUNED,)):
        record = TrialRecord.from_frozen(t)
        reason = record.prune_reason or ""
        if reason.startswith("constraint: params ") and (
                record.params.get("method", "finetune") not in ADDS_PARAMETERS):
            found.setdefault(record.label, reason)
    return found


def exclude_infeasible(sampler, space, seed: int):
    """``sampler`` that draws no backbone known to break the ``params`` bound (module
    docstring); ``sampler`` itself without such a bound or with one backbone."""
    if space.constraints.get("params") is None or len(space.backbones) < 2:
        return sampler
    return ExcludeInfeasible(sampler, seed)


class ExcludeInfeasible(DelegatingSampler):
    """Delegates to ``base``; redraws a backbone known to be over the ``params`` bound."""

    def __init__(self, base: BaseSampler, seed: int) -> None:
        super().__init__(base)
        self.seed, self.said = seed, set()

    def infer_relative_search_space(self, study, trial):
        found = self.base.infer_relative_search_space(study, trial)
        if "backbone" in found and infeasible_backbones(whole_study(study)):
            found = {k: v for k, v in found.items() if k != "backbone"}  # drawn below
        return found

    def sample_independent(self, study, trial, param_name: str, param_distribution: Any):
        drawn = self.base.sample_independent(study, trial, param_name, param_distribution)
        if param_name != "backbone":
            return drawn
        known = infeasible_backbones(whole_study(study))
        others = [c for c in param_distribution.choices if c not in known]
        if drawn not in known or not others:
            return drawn
        for label in known:
            if label not in self.said:
                self.said.add(label)
                warnings.warn(InfeasibleWarning(
                    f"backbone {label} is not drawn again: {known[label]}"), stacklevel=2)
        rng = np.random.default_rng([self.seed, trial.number])
        return others[int(rng.integers(len(others)))]
