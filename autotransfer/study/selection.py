"""The one place that answers "which trial is best".

Three steps, in this order:

1. **Feasible set**: the completed trials that exceed none of the space's ``constraints``
   (bounds on the costs of :mod:`autotransfer.space.objectives`: an upper bound on a
   minimised one such as ``latency_ms``, a lower bound on a maximised one such as
   ``throughput``; a trial records how far past each bound it is,
   :data:`~autotransfer.finetune.records.VIOLATIONS`). An infeasible trial is never best.
2. **Pareto front**: the feasible trials no other feasible trial dominates on the study's
   objectives (the metric first, then ``objectives``' costs; directions from
   :func:`autotransfer.space.objectives.get_objective`). With one objective, the front is the
   trials that share the top score.
3. **Pick**: the front ranked by the ``pick`` objective (default: the metric, so "the highest
   score on the front"), ties broken by the other objectives in order, then by the earlier
   trial; :func:`prefer` then chooses among the ranked front. :func:`prefer` is the seam for
   a rule that looks at more than the values (e.g. which of the top trials' 95% intervals
   overlap): such a rule replaces its body, nothing else here.

The study stores its rule (:func:`start_selection`) so that every reader (report, references,
history, artifacts, warm start, the dashboard note) gets the same answer from the study alone;
a study written before objectives existed has one maximised metric and no constraints.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from autotransfer.finetune.records import StudyRecord, TrialRecord, set_selection, trial_records
from autotransfer.space.objectives import get_objective, objectives
from autotransfer.study.results.intervals import pick_best


def _measured(cost: dict[str, float], name: str) -> float | None:
    """Cost objective ``name`` in a measurement's result (under the objective's key)."""
    found = cost.get(get_objective(name).key)
    return None if found is None else float(found)


@dataclass(frozen=True)
class Rule:
    """How a study picks its best trial: its objectives (the metric first), the upper
    bounds of ``constraints`` and the ``pick`` objective."""

    objectives: tuple[str, ...] = ("score",)
    constraints: dict[str, float] = field(default_factory=dict)
    pick: str | None = None  # None: the metric (objectives[0])

    @classmethod
    def of_space(cls, space) -> Rule:
        return cls(tuple(space.objective_names), dict(space.constraints), space.pick)

    @property
    def multi_objective(self) -> bool:
        return len(self.objectives) > 1

    @property
    def directions(self) -> list[str]:
        """Optuna's study directions, one per objective."""
        return [_direction(name) for name in self.objectives]

    def to_attr(self) -> dict[str, Any]:
        return {"objectives": list(self.objectives), "constraints": dict(self.constraints),
                "pick": self.pick}


def _direction(name: str) -> str:
    return "maximize" if name == "score" else get_objective(name).direction


def start_selection(study, space) -> None:
    """Store the space's rule with a new study (every process then reads the same one) and
    name its objectives for optuna-dashboard (``set_metric_names``)."""
    if StudyRecord.of(study).selection is not None:  # resumed: the same space, checked
        return
    rule = Rule.of_space(space)
    set_selection(study, rule.to_attr())

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Optuna marks set_metric_names experimental
        # the metric as the dashboard names it ("val accuracy"), then the costs (latency_ms)
        study.set_metric_names([f"val {name.replace('_', ' ')}" if i == 0 else name
                                for i, name in enumerate(rule.objectives)])


def rule_of(study) -> Rule:
    """The rule stored with ``study`` (one maximised score for a study that has none)."""
    stored = StudyRecord.of(study).selection
    if not stored:
        return Rule()
    return Rule(tuple(stored["objectives"]), dict(stored.get("constraints") or {}),
                stored.get("pick"))


def value_of(record: TrialRecord, name: str, rule: Rule) -> float | None:
    """The record's value of objective ``name`` (the metric: its score)."""
    if record.values is not None and name in rule.objectives:
        return record.values[rule.objectives.index(name)]
    if name == rule.objectives[0]:
        return record.value
    found = record.costs.get(name)
    return None if found is None else float(found)


def objective_values(rule: Rule, score: float, cost: dict[str, float]) -> tuple[float, ...]:
    """What the trial returns to Optuna: its score, then each cost objective's measure."""
    return (score, *(float(cost[get_objective(name).key]) for name in rule.objectives[1:]))


def violations(rule: Rule, cost: dict[str, float]) -> dict[str, float]:
    """``{bound: how far past it}`` of the rule's constraints (feasible where <= 0):
    ``measured - bound`` for a minimised cost (an upper bound), ``bound - measured`` for a
    maximised one (``throughput``: a lower bound)."""
    found = {name: _measured(cost, name) for name in rule.constraints}
    return {name: round(get_objective(name).violation(value, rule.constraints[name]), 6)
            for name, value in found.items() if value is not None}


def feasible(records: list[TrialRecord]) -> list[TrialRecord]:
    """The completed records that exceed no bound."""
    return [r for r in records if r.state == "complete" and r.feasible]


def _signed(record: TrialRecord, rule: Rule) -> list[float]:
    """The record's values, larger is better (a missing value is worst)."""
    out = []
    for name in rule.objectives:
        value = value_of(record, name, rule)
        out.append(float("-inf") if value is None else value * (1 if _direction(name)
                                                                  == "maximize" else -1))
    return out


def pareto_front(records: list[TrialRecord], rule: Rule) -> list[TrialRecord]:
    """The feasible completed records no other one dominates (by trial number)."""
    pool = feasible(records)
    signed = {r.number: _signed(r, rule) for r in pool}

    def dominated(a: TrialRecord) -> bool:
        sa = signed[a.number]
        return any(all(x >= y for x, y in zip(signed[b.number], sa, strict=True))
                   and signed[b.number] != sa for b in pool)

    return [r for r in pool if not dominated(r)]


def rank(records: list[TrialRecord], rule: Rule) -> list[TrialRecord]:
    """``records`` best first by the pick objective, then the others, then the earlier trial."""
    pick = rule.pick or rule.objectives[0]
    order = [pick, *(o for o in rule.objectives if o != pick)]
    index = {name: rule.objectives.index(name) for name in order}

    def key(r: TrialRecord):
        signed = _signed(r, rule)
        return (*(-signed[index[name]] for name in order), r.number)

    return sorted(records, key=key)


def top(records: list[TrialRecord], rule: Rule) -> TrialRecord | None:
    """The first of the ranked Pareto front of the feasible ``records`` (no tie rule): the
    best of a group such as one kind of reference trial; None when none is feasible."""
    front = rank(pareto_front(records, rule), rule)
    return front[0] if front else None


def ordered(records: list[TrialRecord], rule: Rule) -> list[TrialRecord]:
    """The feasible completed ``records``, best first: :func:`pick`'s choice, then the rest of
    the ranked Pareto front, then the front of what is left, and so on (non-dominated sorting,
    Deb et al. 2002, each front ranked by :func:`rank`). With one objective this is the score,
    highest first (the tie rule's pick leading). An infeasible record is never in it. The
    leaderboard and the transfer history (warm starts) order trials this way."""
    import numpy as np

    best = pick(records, rule)
    pool = feasible(records)
    if rule.multi_objective and pool:
        signed = np.array([_signed(r, rule) for r in pool])  # (n, objectives), larger better
        at_least = (signed[:, None, :] >= signed[None, :, :]).all(-1)
        better = (signed[:, None, :] > signed[None, :, :]).any(-1)
        dominates = at_least & better  # [i, j]: pool[i] dominates pool[j]
        left = np.ones(len(pool), dtype=bool)
        found: list[TrialRecord] = []
        while left.any():
            front = left & ~(dominates[left].any(0))
            found += rank([r for r, f in zip(pool, front, strict=True) if f], rule)
            left &= ~front
    else:
        found = rank(pool, rule)
    if best is not None:
        found = [best, *(r for r in found if r.number != best.number)]
    return found


def prefer(ranked: list[TrialRecord], rule: Rule) -> TrialRecord:
    """The member of the ranked front that best.yaml describes: the first."""
    return ranked[0]


def pick(records: list[TrialRecord], rule: Rule) -> TrialRecord | None:
    """The best of ``records``: the preferred member of the ranked Pareto front of the
    feasible ones; None when none completed within the bounds."""
    front = pareto_front(records, rule)
    if not front:
        return None
    if not rule.multi_objective:  # one score: the tie rule of autotransfer.study.results.intervals
        return pick_best(feasible(records))
    return prefer(rank(front, rule), rule)


def best_trial(study) -> TrialRecord | None:
    """The record of the study's best trial (None when no trial completed within bounds)."""
    return pick(trial_records(study, ("complete",)), rule_of(study))


def front_of(study) -> list[TrialRecord]:
    """The study's Pareto front, ranked by the pick rule."""
    rule = rule_of(study)
    return rank(pareto_front(trial_records(study, ("complete",)), rule), rule)


def is_best_so_far(study, number: int, score: float, cost: dict[str, float]) -> bool:
    """Whether a running trial that ends with ``score`` and ``cost`` would be the study's pick
    (for ``--keep-best``, before Optuna records the trial as complete)."""
    rule = rule_of(study)
    records = [r for r in trial_records(study, ("complete",)) if r.number != number]
    template = TrialRecord(number=number, state="complete", value=score, score=score, label="",
                           sampled={}, epochs_reported=0)
    mine = replace(template, values=objective_values(rule, score, cost)
                   if rule.multi_objective else None,
                   costs={o.name: cost[o.key] for o in objectives("cost") if o.key in cost},
                   violations=violations(rule, cost))
    best = pick([*records, mine], rule)
    return best is not None and best.number == number


def score_target(study) -> Callable[[Any], float] | None:
    """Optuna's ``target`` for plots and importances of a multi-objective study (the score,
    its first value); None for a single-objective study, which needs none."""
    if len(study.directions) == 1:
        return None
    return lambda t: t.values[0]


def least_violating(study) -> str | None:
    """With bounds and no feasible completed trial: one line naming the trial that exceeds
    them least (by the sum of relative excesses) and by how much; else None. The trials a
    bound stopped before training (a ``params`` bound counted on the ``meta`` device) take
    part: when every configuration is over it, none completes."""
    rule = rule_of(study)
    records = [r for r in trial_records(study, ("complete", "pruned"))
               if r.violations and (r.state == "complete" or not r.feasible)]
    if not rule.constraints or not records or feasible(records):
        return None

    def excess(r: TrialRecord) -> float:
        return sum(max(v, 0.0) / rule.constraints[k] for k, v in r.violations.items()
                   if k in rule.constraints)

    def number(name: str, x: float) -> str:  # a count with separators, a measure as is
        return f"{x:,.0f}" if get_objective(name).fmt == "," else f"{x:g}"

    def past(name: str, v: float) -> str:  # "latency_ms 12 > 10 (+20%)"; a lower bound: <
        objective, bound = get_objective(name), rule.constraints[name]
        measured = bound - v * objective.sign
        return (f"{name} {number(name, measured)} {'<' if objective.sign > 0 else '>'} "
                f"{number(name, bound)} (+{v / bound:.0%})")

    worst = min(records, key=excess)
    over = ", ".join(past(k, v) for k, v in worst.violations.items() if v > 0)
    return (f"no trial meets the constraints; the least violating is trial {worst.number} "
            f"({worst.backbone or worst.label}): {over}")


def best_so_far(study) -> tuple[list[Any], list[float]]:
    """The completed trials in order of completion and the best feasible score (the metric)
    up to each (NaN before the first feasible one)."""
    done = sorted((t for t in study.get_trials(deepcopy=False)
                   if t.state.name == "COMPLETE" and t.datetime_complete is not None),
                  key=lambda t: t.datetime_complete)
    best: list[float] = []
    top = float("nan")
    for t in done:
        record = TrialRecord.from_frozen(t)
        if record.feasible and record.value is not None and not (top >= record.value):
            top = record.value
        best.append(top)
    return done, best
