"""A trial's costs: the ``params`` bound checked before training, the trained model measured
after it (:mod:`autotransfer.finetune.cost`) and recorded with its constraint violations."""

from __future__ import annotations

from typing import Any

from autotransfer.study import timebudget
from autotransfer.study.records import TrialWriter
from autotransfer.study.selection import Rule, objective_values, violations

#: The share of the trial so far that measuring may take, and its bounds in seconds.
SHARE = 0.03
MIN_SECONDS, MAX_SECONDS = 0.1, 3.0  # once per backbone and input size in a process


def check_params_bound(trial, model, rule: Rule) -> None:
    """Prune a trial whose model (head included) has more parameters than the ``params``
    bound, before it trains: its count is known once the backbone is loaded.

    Raises:
        optuna.TrialPruned: over the bound (the reason and the violation are recorded).
    """
    import optuna

    bound = rule.constraints.get("params")
    if bound is None:
        return
    count = sum(p.numel() for p in model.parameters())
    if count <= bound:
        return
    record = TrialWriter(trial)
    record.measured({"params_count": count}, 0.0)
    record.violations(violations(rule, {"params_count": count}))
    reason = f"constraint: params {count:,} > {bound:,.0f}; not trained"
    record.pruned(reason)
    raise optuna.TrialPruned(reason)


def measure_trial(trial, trainer, rule: Rule, *, started_at: float,
                  network: str | None = None) -> dict[str, Any]:
    """Measure the trained model on the trial's device (at most :data:`SHARE` of the trial so
    far, within [:data:`MIN_SECONDS`, :data:`MAX_SECONDS`]) and record the costs and the
    constraint violations; returns the costs. ``network`` (the backbone id) lets trials of one
    backbone and input size share the timing of the first of them in this process."""
    from autotransfer.finetune.cost import measure_cost

    began = timebudget.now()
    budget = min(MAX_SECONDS, max(MIN_SECONDS, SHARE * (began - started_at)))
    cost = measure_cost(trainer.model, trainer.preprocess, trainer.data, device=trainer.device,
                        batch_size=trainer.inference_batch_size, budget_s=budget,
                        cache_key=None if network is None else (network,))
    record = TrialWriter(trial)
    record.measured(cost, timebudget.now() - began)
    if rule.constraints:
        record.violations(violations(rule, cost))
    return cost


def trial_value(rule: Rule, score: float, cost: dict[str, Any]) -> float | tuple[float, ...]:
    """What the objective returns to Optuna: the score, or one value per objective."""
    return objective_values(rule, score, cost) if rule.multi_objective else score
