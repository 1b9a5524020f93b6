"""The rungs a study's trials climb: the space's pruner, fitted to the trials it can expect.

An epoch is the resource. Hyperband (Li et al., "Hyperband: A Novel Bandit-Based Approach to
Hyperparameter Optimization", JMLR 2018) runs ``n`` brackets of successive halving side by
side, from the most aggressive (first rung after ``min_resource`` epochs) to one that never
stops a trial; Optuna assigns each trial to one bracket. That hedge pays when there are enough
trials to rank inside every bracket. At a small budget it does not: about half of the few
trials land in brackets that train them to the end, whatever their first epoch said.

With the space's ``budget.rungs: fitted`` (the default), a ``hyperband`` pruner is therefore
replaced by its most aggressive bracket alone, asynchronous successive halving from
``min_resource`` epochs with the same ``reduction_factor`` (Optuna's
``SuccessiveHalvingPruner``; Li et al., "A System for Massively Parallel Hyperparameter
Tuning", MLSys 2020), when the expected trial count is below ``n * eta ** n`` (``eta`` the
reduction factor: each bracket then holds about ``eta ** n`` trials, enough to promote ``eta``
of them to its top). With 3 epochs and ``eta = 3``: 2 brackets, so successive halving below 18
trials; the top third of each rung goes on. Training every candidate for one epoch and
keeping the top few matches multi-fidelity search at a fraction of its compute (Egele et al.,
arXiv 2307.15422).

The expected count is ``trials`` when given; under a time budget without it, the budget over
the mean measured cost of one trial's first epoch (:mod:`autotransfer.study.budget.backbone_cost`);
unknown otherwise (the pruner stays as set). ``rungs: pruner`` keeps the space's pruner as
set; ``rungs: off`` trains every trial to its last epoch. Workers build the same pruner from
the same options.
"""

from __future__ import annotations

import math
from typing import Any

from autotransfer.space.strategies import build, split


def expected_trials(space, trials: int | None, budget: float | None,
                    costs: dict[str, dict[str, Any]]) -> int | None:
    """How many trials the run can expect: ``trials``, else ``budget`` over the mean measured
    seconds to a trial's first report, else None."""
    if trials is not None:
        return trials
    if budget is None:
        return None
    from autotransfer.study.budget.backbone_cost import estimate, step_params

    params = step_params(space)
    firsts = [estimate(costs[b.id], params, 1) for b in space.backbones if b.id in costs]
    if not firsts:
        return None
    return max(1, int(budget / (sum(firsts) / len(firsts))))


def fitted_pruner(space, expected: int | None) -> tuple[Any, str | None]:
    """The study's pruner for ``expected`` trials, and a line saying what was fitted (None
    when the space's pruner is used as set)."""
    import optuna

    mode = space.budget.rungs
    if space.multi_objective:  # Optuna prunes on one reported value (budget.pruners)
        return optuna.pruners.NopPruner(), None
    if mode == "off":
        return optuna.pruners.NopPruner(), "rungs: off, every trial trains all its epochs"
    as_set = build("pruner", space.pruner, epochs=space.epochs)
    name, settings = split(space.pruner)
    if mode == "pruner" or name != "hyperband" or expected is None:
        return as_set, None
    eta = int(settings.get("reduction_factor", 3))
    low = settings.get("min_resource", 1)
    high = settings.get("max_resource", space.epochs)
    if not isinstance(low, int) or not isinstance(high, int) or high <= low or eta < 2:
        return as_set, None
    brackets = math.floor(math.log(high / low, eta) + 1e-9) + 1
    enough = brackets * eta**brackets
    if brackets < 2 or expected >= enough:
        return as_set, None
    pruner = optuna.pruners.SuccessiveHalvingPruner(min_resource=low, reduction_factor=eta)
    return pruner, (f"rungs: successive halving from epoch {low}, the top 1/{eta} of each rung "
                    f"goes on (~{expected} trials expected; hyperband's {brackets} brackets "
                    f"need {enough})")
