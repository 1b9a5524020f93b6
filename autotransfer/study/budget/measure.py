"""A trial's costs: the ``params`` bound checked before the weights load (and again before
training), the trained model measured after it (:mod:`autotransfer.finetune.cost`) and
recorded with its constraint violations."""

from __future__ import annotations

from typing import Any

from autotransfer.finetune.records import TrialWriter
from autotransfer.study.budget import timebudget
from autotransfer.study.selection import Rule, objective_values, violations

#: The share of the trial so far that measuring may take, and its bounds in seconds.
SHARE = 0.03
MIN_SECONDS, MAX_SECONDS = 0.3, 3.0  # once per backbone and input size in a process
#: The objectives the timed passes measure.
TIMED = {"latency_ms", "throughput"}


def check_params_before_load(trial, entry, options: dict[str, Any], n_classes: int,
                             params: dict[str, Any], rule: Rule) -> None:
    """Prune a trial whose model (head included) cannot meet the ``params`` bound before any
    weight loads: :func:`autotransfer.finetune.cost.architecture_params` counts the
    architecture on the ``meta`` device. A zoo that cannot build there says nothing here, and
    :func:`check_params_bound` decides after loading.

    Raises:
        optuna.TrialPruned: over the bound (the reason, the count and the violation are
            recorded).
    """
    if rule.constraints.get("params") is None:
        return
    from autotransfer.finetune.cost import architecture_params

    count = architecture_params(entry, options, n_classes, params)
    if count is not None:
        _prune_over(trial, count, rule, "counted before loading the weights; not started")


def check_params_bound(trial, model, rule: Rule) -> None:
    """Prune a trial whose model (head and a tuning method's adapters included) has more
    parameters than the ``params`` bound, after loading and before it trains.

    Raises:
        optuna.TrialPruned: over the bound (the reason and the violation are recorded).
    """
    if rule.constraints.get("params") is None:
        return
    _prune_over(trial, sum(p.numel() for p in model.parameters()), rule,
                "counted after loading; not trained")


def _prune_over(trial, count: int, rule: Rule, when: str) -> None:
    import optuna

    bound = rule.constraints["params"]
    if count <= bound:
        return
    record = TrialWriter(trial)
    record.measured({"params_count": count}, 0.0)
    record.violations(violations(rule, {"params_count": count}))
    reason = f"constraint: params {count:,} > {bound:,.0f} ({when})"
    record.pruned(reason)
    raise optuna.TrialPruned(reason)


def measure_trial(trial, trainer, rule: Rule, *, started_at: float,
                  network: str | None = None, runtime: str = "pytorch",
                  precision: str = "fp32", deadline=None) -> dict[str, Any]:
    """Measure the trained model on the trial's device (at most :data:`SHARE` of the trial so
    far, within [:data:`MIN_SECONDS`, :data:`MAX_SECONDS`]) and record the costs and the
    constraint violations; returns the costs. ``network`` (the backbone id) lets trials of one
    backbone and input size share the timing of the first of them in this process.
    ``runtime``/``precision``: the space's ``latency`` (ONNX Runtime measures the exported
    model, fp32 or int8, on the CPU). ``deadline`` (a time budget's
    :class:`~autotransfer.study.budget.timebudget.Deadline`): the measurement also fits in the
    time it leaves, down to one warm-up and one timed pass at each batch size, and none once
    it is spent, unless latency or throughput is an objective or a bound (the leaderboard then
    shows no ``ms`` and the record says why)."""
    from autotransfer.finetune.cost import LIMIT, measure_cost

    began = timebudget.now()
    budget = min(MAX_SECONDS, max(MIN_SECONDS, SHARE * (began - started_at)))
    timed = True
    if deadline is not None:
        budget = min(budget, max(0.0, deadline.left()) / LIMIT)
        # passes of seconds each on a busy machine: none once the budget is spent, unless the
        # study optimises or bounds what they measure
        timed = deadline.left() > 0 or bool(TIMED & {*rule.objectives[1:], *rule.constraints})
    cost = measure_cost(trainer.model, trainer.preprocess, trainer.data, device=trainer.device,
                        batch_size=trainer.inference_batch_size, budget_s=budget,
                        cache_key=None if network is None else (network, runtime, precision),
                        runtime=runtime, precision=precision, timed=timed)
    record = TrialWriter(trial)
    record.measured(cost, timebudget.now() - began)
    if rule.constraints:
        record.violations(violations(rule, cost))
    return cost


def trial_value(rule: Rule, score: float, cost: dict[str, Any]) -> float | tuple[float, ...]:
    """What the objective returns to Optuna: the score, or one value per objective."""
    return objective_values(rule, score, cost) if rule.multi_objective else score
