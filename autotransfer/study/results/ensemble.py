"""The ensemble of a study's own trials: ``best.yaml``'s ``ensemble`` section, built from the
class probabilities every completed trial keeps (no trial is re-run, nothing is trained).

The library is every completed trial within the space's constraints whose validation labels
are the single pick's (the same examples in the same order). Members and weights come from
Caruana et al. 2004's greedy ensemble selection with replacement on the study's metric
(:mod:`autotransfer.finetune.ensemble`), at most ``max_members`` distinct trials, and only
sets whose combined costs stay within the constraints. Costs of an ensemble are its members'
measured costs combined: latency, size, parameters and peak memory add up (the members run one
after the other), throughput is ``1 / sum(1 / throughput)``.

What is reported, and why it is honest:

- ``val_score``: the **cross-fitted** validation score: selected on one fixed half of the
  validation split, scored on the other, and the reverse (every example predicted by an
  ensemble that did not see it); ``single_val_score`` is the same procedure restricted to one
  member (pick the best trial on one half, score it on the other), so ``val_gain`` compares
  like with like. ``val_score_in_sample`` is the final ensemble's score on the whole split it
  was selected on (optimistic; shown, never compared).
- ``test_score``: the final ensemble (members and weights chosen on the whole validation
  split) on the test split, which no choice saw, beside ``single.test_score``, the single
  pick's; both with 95% intervals (:mod:`autotransfer.study.results.intervals`).
- ``note``: when the selection keeps only the single pick, or when the ensemble is not better
  on held-out validation, it says so.
- ``pareto`` (a study with cost objectives): the ensemble as a point of the Pareto front, its
  held-out score against its combined costs, and the front's trials that dominate it
  (:func:`front_point`); the front plot marks it.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

import numpy as np

from autotransfer.finetune import ensemble as selection
from autotransfer.finetune.records import TrialRecord, trial_records
from autotransfer.space.objectives import get_objective, objectives
from autotransfer.study.results.intervals import intervals_of, score_ci95
from autotransfer.study.results.scores import confusion
from autotransfer.study.selection import best_trial, rule_of

#: How the validation split is cross-fitted, as ``best.yaml`` states it.
CROSS_FITTING = ("two fixed halves of the validation split (stratified by class, seed "
                 f"{selection.HALVES_SEED}): selected on one half, scored on the other, "
                 "and the reverse")


def single_section(pick: TrialRecord, metric: str) -> dict[str, Any]:
    """The single pick an ensemble or a soup is set beside: its trial, val and test scores with
    their 95% intervals, and its costs."""
    intervals = intervals_of(pick, metric)
    return {"trial": pick.number, "val_score": pick.value,
            "val_score_ci95": intervals["val_score_ci95"], "test_score": pick.test_score,
            "test_score_ci95": intervals["test_score_ci95"], **combined_costs([pick])}


def combined_costs(members: list[TrialRecord]) -> dict[str, float]:
    """The members' measured costs combined, by objective key (see the module docstring):
    only the costs every member measured."""
    found: dict[str, float] = {}
    for o in objectives("cost"):
        values = [r.costs.get(o.name) for r in members]
        if not values or any(v is None for v in values):
            continue
        numbers = [v for v in values if v is not None]
        if o.direction == "maximize":  # a rate: the members run one after the other
            found[o.key] = round(1.0 / sum(1.0 / max(float(v), 1e-12) for v in numbers), 4)
        elif all(isinstance(v, int) for v in numbers):  # a count stays one
            found[o.key] = int(sum(numbers))
        else:
            found[o.key] = round(float(sum(numbers)), 4)
    return found


def _score(compute, labels: np.ndarray, preds: np.ndarray, metric: str, n_classes: int
           ) -> tuple[float, list[float] | None]:
    matrix = confusion(preds, labels, n_classes)
    return round(float(compute(labels, preds)), 5), score_ci95(matrix, metric)


def _fits(library: list[TrialRecord], constraints: dict[str, float]):
    """Whether a set of library indices keeps the combined costs within ``constraints``."""
    if not constraints:
        return None

    def fits(members: frozenset[int]) -> bool:
        costs = combined_costs([library[i] for i in members])
        for name, bound in constraints.items():
            o = get_objective(name)
            if costs.get(o.key) is None or o.violation(costs[o.key], bound) > 0:
                return False
        return True

    return fits


def build_ensemble(study, *, metric: str, max_members: int = 5, space: Any = None,
                   constraints: dict[str, float] | None = None) -> dict[str, Any]:
    """``best.yaml``'s ``ensemble`` section for ``study`` (see the module docstring).

    Args:
        metric: the study's metric (:mod:`autotransfer.space.objectives`).
        max_members: at most this many distinct trials.
        space: the study's :class:`~autotransfer.space.schema.SearchSpace` (members' backbones
            as the space writes them); None: their ids.
        constraints: the space's bounds on costs (None: the study's stored rule).

    Returns:
        The section: ``kind``, ``members`` (trial, backbone, params, val_score, weight, costs),
        ``val_score`` (held-out) and ``val_score_ci95``, ``val_score_in_sample``,
        ``single_val_score`` (held-out), ``val_gain``, ``test_score`` and ``test_score_ci95``
        (with a test split), ``single`` (the pick: trial, val and test scores with intervals),
        the combined costs, ``selection`` (how), ``note`` and, with cost objectives,
        ``pareto`` (:func:`front_point`); without a library it is
        ``{kind, members: [], note}`` saying why.

    Raises:
        ValueError: ``max_members`` < 1, or a trial's stored predictions cannot be read.
    """
    started = time.perf_counter()
    if max_members < 1:
        raise ValueError(f"max_members must be >= 1, got {max_members=}")
    if constraints is None:
        constraints = dict(rule_of(study).constraints)
    pick = best_trial(study)
    if pick is None:
        return {"kind": "ensemble", "members": [], "note": "not built: no completed trial "
                "within the constraints"}
    kept = pick.probabilities()
    if "val" not in kept:
        return {"kind": "ensemble", "members": [], "note": f"not built: the pick (trial "
                f"{pick.number}) kept no predictions (a study from before they were kept)"}
    labels = kept["val"][1]
    test_labels = kept["test"][1] if "test" in kept else None
    candidates = [r for r in trial_records(study, ("complete",)) if r.feasible]
    objective = get_objective(metric)
    maximize = objective.direction == "maximize"
    library: list[TrialRecord] = []
    probs: list[np.ndarray] = []
    test_probs: list[np.ndarray] = []
    skipped = 0
    # the pick first, then by validation score: ties of the selection go to it
    order = sorted(candidates, key=lambda r: (r.number != pick.number,
                                              -(r.value or 0.0) * (1 if maximize else -1),
                                              r.number))
    for r in order:
        found = r.probabilities() if r.number != pick.number else kept
        if ("val" not in found or not np.array_equal(found["val"][1], labels)
                or (test_labels is not None and ("test" not in found
                                                 or not np.array_equal(found["test"][1],
                                                                       test_labels)))):
            skipped += 1
            continue
        library.append(r)
        probs.append(found["val"][0])
        if test_labels is not None:
            test_probs.append(found["test"][0])
    stacked = np.stack(probs)
    n_classes = stacked.shape[-1]
    options = {"maximize": maximize, "fits": _fits(library, constraints)}
    compute = objective.compute
    assert compute is not None  # a metric has one (Objective checks)
    final = selection.select(stacked, labels, compute, max_members=max_members, **options)
    held = selection.cross_fit(stacked, labels, compute, max_members=max_members, **options)
    single = selection.cross_fit(stacked, labels, compute, max_members=1, **options)
    val, val_ci = _score(compute, labels, held.preds, metric, n_classes)
    single_val, single_ci = _score(compute, labels, single.preds, metric, n_classes)
    members = [library[i] for i in final.weights]
    section: dict[str, Any] = {
        "kind": "ensemble",
        "members": [_member(r, w, space) for r, w in
                    zip(members, final.weights.values(), strict=True)],
        "metric": metric,
        "val_score": val, "val_score_ci95": val_ci,
        "val_score_in_sample": round(final.score, 5),
        "single_val_score": single_val, "single_val_score_ci95": single_ci,
        "val_gain": round(val - single_val, 5),
    }
    if test_labels is not None:
        test, test_ci = _score(compute, test_labels, final.predict(np.stack(test_probs)),
                               metric, n_classes)
        section.update(test_score=test, test_score_ci95=test_ci)
    section["single"] = single_section(pick, metric)
    section.update(combined_costs(members))
    section["selection"] = {
        "method": "Caruana et al. 2004 greedy ensemble selection with replacement",
        "library": len(library), "not_aligned": skipped, "max_members": max_members,
        "rounds": final.rounds, "cross_fitting": CROSS_FITTING,
        "halves": [len(held.a), len(held.b)],
        "seconds": round(time.perf_counter() - started, 3),
    }
    section["note"] = _note(members, pick, section)
    point = front_point(study, section)
    if point is not None:
        section["pareto"] = point
    return section


def _signed(name: str, value: float) -> float:
    direction = "maximize" if name == "score" else get_objective(name).direction
    return value if direction == "maximize" else -value


def front_point(study, section: dict[str, Any]) -> dict[str, Any] | None:
    """The ensemble (or the soup: any section of that shape) as a point of a multi-objective
    study's Pareto front: its held-out ``val_score`` and its combined costs on the study's
    objectives, and the front's trials
    that dominate it (at least as good on every objective, better on one). None without cost
    objectives, or when a cost of the point is unknown.

    The trials' scores are their own validation scores (each trial is one model, scored once);
    the ensemble's is the cross-fitted one, so that a selection on the split scoring it does
    not put it on the front by itself.

    Returns:
        ``{objectives: {name: value}, on_front, dominated_by: [trial numbers], score}``.
    """
    from autotransfer.study.selection import front_of, rule_of, value_of

    rule = rule_of(study)
    if not rule.multi_objective or section.get("val_score") is None:
        return None
    values: dict[str, float] = {rule.objectives[0]: float(section["val_score"])}
    for name in rule.objectives[1:]:
        found = section.get(get_objective(name).key)
        if found is None:
            return None
        values[name] = float(found)
    mine = [_signed(n, v) for n, v in values.items()]
    dominated_by = []
    for r in front_of(study):
        theirs = [value_of(r, n, rule) for n in values]
        if any(v is None for v in theirs):
            continue
        signed = [_signed(n, float(v)) for n, v in zip(values, theirs, strict=True)
                  if v is not None]
        if all(t >= m for t, m in zip(signed, mine, strict=True)) and signed != mine:
            dominated_by.append(r.number)
    return {"objectives": values, "on_front": not dominated_by,
            "dominated_by": sorted(dominated_by),
            "score": f"the {section.get('kind', 'ensemble')}'s held-out (cross-fitted) "
                     "val_score; the trials' own validation scores"}


def _member(r: TrialRecord, weight: float, space: Any) -> dict[str, Any]:
    backbone: Any = r.backbone or r.label
    if space is not None and isinstance(space.backbones, list):
        with contextlib.suppress(KeyError, StopIteration):  # a label the space lacks
            backbone = space.backbone(r.sampled["backbone"]).to_yaml()
    return {"trial": r.number, "backbone": backbone, "params": dict(r.params),
            "val_score": r.value, "weight": round(weight, 4),
            **{get_objective(name).key: value for name, value in r.costs.items()}}


def _note(members: list[TrialRecord], pick: TrialRecord, section: dict[str, Any]) -> str:
    """One sentence on what the ensemble is worth (see the module docstring)."""
    if len(members) == 1:
        which = ("only the single pick" if members[0].number == pick.number
                 else f"one trial ({members[0].number}), not the pick ({pick.number})")
        return f"the greedy selection kept {which}: no ensemble beyond one model"
    gain = section["val_gain"]
    if gain <= 0:
        return (f"{len(members)} trials, but not better than a single pick on held-out "
                f"validation ({section['val_score']:.4f} vs {section['single_val_score']:.4f})")
    return (f"{len(members)} trials, {gain:+.4f} over a single pick on held-out validation")


def ensemble_line(section: dict[str, Any]) -> str:
    """The console's line for an ``ensemble`` section."""
    members = ", ".join(f"{m['trial']} (weight {m['weight']:.2f})"
                        for m in section.get("members") or [])
    return combined_line(section, "ensemble", members, "single pick", "sum")


def combined_line(section: dict[str, Any], kind: str, members: str, single_label: str,
                  latency_label: str) -> str:
    """The console's line for a section of several trials (``ensemble`` or ``soup``): its
    held-out val beside one trial chosen the same way (``single_label``), its test beside the
    single pick's, both with intervals, its latency (``latency_label`` says how it adds up)."""
    if not section.get("members"):
        return f"{kind}: {section.get('note', 'not built')}"

    def ci(interval) -> str:
        return "" if not interval else f" [{interval[0]:.3f}, {interval[1]:.3f}]"

    single = section["single"]
    text = (f"{kind} of trials {members}: val {section['val_score']:.4f}"
            f"{ci(section['val_score_ci95'])} held-out ({single_label}, same way: "
            f"{section['single_val_score']:.4f})")
    if section.get("test_score") is not None:
        text += (f"; test {section['test_score']:.4f}{ci(section['test_score_ci95'])} vs "
                 f"single pick {single['test_score']:.4f}{ci(single['test_score_ci95'])}")
    if section.get("latency_ms") is not None:
        text += f"; latency {section['latency_ms']:.2f} ms ({latency_label})"
    return f"{text}; {section['note']}"


def ensemble_row(section: dict[str, Any]) -> dict[str, Any] | None:
    """A leaderboard row for an ``ensemble`` section (None when none was built): its trial is
    ``"ens"``, its state ``ensemble``, its val score the held-out one."""
    return combined_row(section, "ens", "ensemble")


def combined_row(section: dict[str, Any], trial: str, kind: str) -> dict[str, Any] | None:
    """A leaderboard row for a section of several trials (None when none was built): its
    trial is ``trial``, its state and method ``kind``, its val score the held-out one, its
    costs the section's."""
    if not section.get("members"):
        return None
    numbers = "+".join(str(m["trial"]) for m in section["members"])
    return {
        "trial": trial, "state": kind,
        "backbone": f"{kind} of trials {numbers}",
        "method": kind, "freeze_fraction": None, "trainable_params": None, "lr": None,
        "val_score": section["val_score"], "test_score": section.get("test_score"),
        "epochs": "-", "seconds_per_epoch": None, "reason": section["note"], "reference": "",
        **{o.key: section.get(o.key) for o in objectives("cost")}, "feasible": "",
        "val_score_ci95": section.get("val_score_ci95"),
        "test_score_ci95": section.get("test_score_ci95"),
    }
