"""``pareto_front.{png,html}``: validation score against latency, the front drawn, the
reference trials marked (written with the report in multi-objective mode, and whenever the
trials were measured and one of them is over a bound)."""

from __future__ import annotations

from typing import Any

from autotransfer.study.records import trial_records
from autotransfer.study.selection import front_of, rule_of


def _points(study):
    """(all measured completed records, the front ranked by the pick, latency's axis name)."""
    records = [r for r in trial_records(study, ("complete",)) if r.latency_ms is not None]
    front = [r for r in front_of(study) if r.latency_ms is not None]
    return records, sorted(front, key=lambda r: r.latency_ms)


def front_plots(study, metric: str, references: dict[str, dict[str, Any]]
                ) -> dict[str, tuple[Any, Any]]:
    """name -> (plotly figure builder, matplotlib axes builder); empty unless the study has
    several objectives or constraints and measured trials."""
    rule = rule_of(study)
    records, front = _points(study)
    if not records or not (rule.multi_objective or rule.constraints):
        return {}
    marked = {ref["trial"]: kind for kind, ref in references.items()}
    refs = [r for r in records if r.reference or r.number in marked]
    return {"pareto_front": (lambda: _plotly(records, front, refs, metric),
                             lambda: _matplotlib(records, front, refs, metric))}


def _plotly(records, front, refs, metric: str):
    import plotly.graph_objects as go

    def trace(rs, name, **style):
        return go.Scatter(x=[r.latency_ms for r in rs], y=[r.value for r in rs], name=name,
                          text=[f"trial {r.number}: {r.label}" for r in rs], **style)

    figure = go.Figure([
        trace([r for r in records if r.feasible], "feasible", mode="markers"),
        trace([r for r in records if not r.feasible], "infeasible", mode="markers",
              marker={"symbol": "x"}),
        trace(front, "Pareto front", mode="lines+markers", line={"shape": "hv"}),
        trace(refs, "references", mode="markers",
              marker={"symbol": "diamond-open", "size": 14}),
    ])
    figure.update_layout(title="Score against latency", xaxis_title="latency (ms, batch 1)",
                         yaxis_title=f"validation {metric}")
    return figure


def _matplotlib(records, front, refs, metric: str):
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots()
    ok = [r for r in records if r.feasible]
    over = [r for r in records if not r.feasible]
    axes.scatter([r.latency_ms for r in ok], [r.value for r in ok], c="C0", label="feasible")
    if over:
        axes.scatter([r.latency_ms for r in over], [r.value for r in over], c="C3", marker="x",
                     label="infeasible")
    if front:
        axes.step([r.latency_ms for r in front], [r.value for r in front], where="post",
                  c="C1", marker="o", label="Pareto front")
    if refs:
        axes.scatter([r.latency_ms for r in refs], [r.value for r in refs], s=140,
                     facecolors="none", edgecolors="k", marker="D", label="references")
    axes.set_xlabel("latency (ms, batch 1)")
    axes.set_ylabel(f"validation {metric}")
    axes.set_title("Score against latency")
    axes.legend()
    return axes
