"""``pareto_front.{png,html}``: the validation score against the study's own cost objective,
the front drawn, the reference trials marked, and the ensemble of trials (best.yaml's
``ensemble`` section: its held-out score against its members' costs combined) and their weight
soup (``soup``: its held-out score against the pick's costs) as stars
(written with the report in multi-objective mode,
and whenever the trials were measured and one of them is over a bound).

The x axis is the study's first cost objective (``objectives: [accuracy, size_mb]`` draws
``size_mb``); a study with one objective and ``constraints`` draws its first bounded cost. The
front's staircase follows the cost's direction: a minimised cost (latency) attains at each x
the best score at or left of it, a maximised one (throughput) the best at or right of it. With
more than two objectives the front is a set in more dimensions: its members are marked, with
no staircase (a 2-D projection of it is not one).
"""

from __future__ import annotations

from typing import Any

from autotransfer.finetune.records import trial_records
from autotransfer.space.objectives import Objective, cost_names, get_objective
from autotransfer.study.selection import front_of, rule_of


def axis_objective(rule) -> Objective | None:
    """The cost drawn on the x axis: the rule's first cost objective, else its first bounded
    cost; None when it has neither."""
    for name in (*rule.objectives[1:], *rule.constraints):
        if name in cost_names():
            return get_objective(name)
    return None


def _points(study, cost: Objective):
    """(the measured completed records, the front sorted along the cost's axis)."""
    records = [r for r in trial_records(study, ("complete",)) if cost.name in r.costs]
    front = [r for r in front_of(study) if cost.name in r.costs]
    return records, sorted(front, key=lambda r: r.costs[cost.name])


def front_plots(study, metric: str, references: dict[str, dict[str, Any]],
                ensemble: dict[str, Any] | None = None, soup: dict[str, Any] | None = None
                ) -> dict[str, tuple[Any, Any]]:
    """name -> (plotly figure builder, matplotlib axes builder); empty unless the study has
    several objectives or constraints and measured trials. ``ensemble``, ``soup``: best.yaml's
    sections, each drawn as one point when it has members, a held-out ``val_score`` and the
    axis' cost."""
    rule = rule_of(study)
    cost = axis_objective(rule)
    if cost is None or not (rule.multi_objective or rule.constraints):
        return {}
    records, front = _points(study, cost)
    if not records:
        return {}
    marked = {ref["trial"]: kind for kind, ref in references.items()}
    refs = [r for r in records if r.reference or r.number in marked]
    step = len(rule.objectives) <= 2  # a staircase only for a 2-D front
    points = [p for p in (ensemble_point(ensemble, cost), ensemble_point(soup, cost))
              if p is not None]
    return {"pareto_front": (lambda: _plotly(records, front, refs, metric, cost, step, points),
                             lambda: _matplotlib(records, front, refs, metric, cost, step,
                                                 points))}


def ensemble_point(section: dict[str, Any] | None, cost: Objective
                   ) -> tuple[float, float, str, str] | None:
    """``(cost, score, label, kind)`` of an ensemble (or soup) section on the plot's axes;
    None without members, a held-out score or the cost."""
    if not section or not section.get("members") or section.get("val_score") is None:
        return None
    x = section.get(cost.key)
    if x is None:
        return None
    trials = "+".join(str(m["trial"]) for m in section["members"])
    kind = str(section.get("kind") or "ensemble")
    return float(x), float(section["val_score"]), f"{kind} of trials {trials} (held-out val)", kind


def _axis_title(cost: Objective) -> str:
    return f"{cost.name} ({cost.unit}, {cost.direction[:3]})" if cost.unit else cost.name


def _plotly(records, front, refs, metric: str, cost: Objective, step: bool, points=()):
    import plotly.graph_objects as go

    def trace(rs, name, **style):
        return go.Scatter(x=[r.costs[cost.name] for r in rs], y=[r.value for r in rs],
                          name=name, text=[f"trial {r.number}: {r.label}" for r in rs], **style)

    shape = "hv" if cost.direction == "minimize" else "vh"
    figure = go.Figure([
        trace([r for r in records if r.feasible], "feasible", mode="markers"),
        trace([r for r in records if not r.feasible], "infeasible", mode="markers",
              marker={"symbol": "x"}),
        trace(front, "Pareto front", mode="lines+markers" if step else "markers",
              line={"shape": shape}),
        trace(refs, "references", mode="markers",
              marker={"symbol": "diamond-open", "size": 14}),
    ])
    for x, y, label, kind in points:
        figure.add_trace(go.Scatter(x=[x], y=[y], name=kind, text=[label], mode="markers",
                                    marker={"symbol": "star", "size": 16}))
    figure.update_layout(title=f"Score against {cost.name}", xaxis_title=_axis_title(cost),
                         yaxis_title=f"validation {metric}")
    return figure


def _matplotlib(records, front, refs, metric: str, cost: Objective, step: bool,
                points=()):
    import matplotlib.pyplot as plt

    def xs(rs):
        return [r.costs[cost.name] for r in rs]

    figure, axes = plt.subplots()
    ok = [r for r in records if r.feasible]
    over = [r for r in records if not r.feasible]
    axes.scatter(xs(ok), [r.value for r in ok], c="C0", label="feasible")
    if over:
        axes.scatter(xs(over), [r.value for r in over], c="C3", marker="x", label="infeasible")
    if front and step:
        axes.step(xs(front), [r.value for r in front], c="C1", marker="o", label="Pareto front",
                  where="post" if cost.direction == "minimize" else "pre")
    elif front:
        axes.scatter(xs(front), [r.value for r in front], c="C1", marker="o",
                     label="Pareto front")
    if refs:
        axes.scatter(xs(refs), [r.value for r in refs], s=140,
                     facecolors="none", edgecolors="k", marker="D", label="references")
    for (x, y, _label, kind), colour in zip(points, ("C2", "C4"), strict=False):
        axes.scatter([x], [y], s=220, c=colour, marker="*", label=kind)
    axes.set_xlabel(_axis_title(cost))
    axes.set_ylabel(f"validation {metric}")
    axes.set_title(f"Score against {cost.name}")
    axes.legend()
    return axes
