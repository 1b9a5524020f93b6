"""``score_per_backbone``: every backbone of the leaderboard, each trial's validation score with
its 95% interval, on an axis that does not magnify differences.

A completed trial is a filled point with its 95% interval
(:mod:`autotransfer.study.results.intervals`); a pruned one an open point at its last reported
score (it has no confusion matrix, so no interval); a backbone none of whose trials has a score
(each failed, or was pruned before its first epoch) a cross at the axis' foot, named so in the
legend. The score axis starts at 0 and ends at 1 (accuracy and macro-F1 are proportions): on a
magnified axis, intervals that overlap almost entirely look like a ranking.
"""

from __future__ import annotations

from typing import Any

#: the score axis (accuracy and macro-F1 are proportions)
AXIS = (0.0, 1.0)


def backbone_points(rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """backbone -> its leaderboard rows with a score (completed, and pruned at their last
    reported score), in the leaderboard's backbone order; a backbone with none maps to []."""
    points: dict[str, list[dict[str, Any]]] = {}
    for r in sorted(rows, key=lambda r: r["backbone"]):
        found = points.setdefault(r["backbone"], [])
        if r["state"] in ("complete", "pruned") and r["val_score"] is not None:
            found.append(r)
    return points


def _without_score(rows: list[dict[str, Any]], backbone: str) -> str:
    states = {r["state"] for r in rows if r["backbone"] == backbone}
    return "pruned before a score" if states == {"pruned"} else "failed"


def _errors(found: list[dict[str, Any]]) -> tuple[list[float], list[float]]:
    """(below, above) of each point's 95% interval (0 where it has none)."""
    low, high = [], []
    for r in found:
        ci = r.get("val_score_ci95")
        low.append(r["val_score"] - ci[0] if ci else 0.0)
        high.append(ci[1] - r["val_score"] if ci else 0.0)
    return low, high


def backbone_plotly(rows: list[dict[str, Any]], metric: str):
    import plotly.graph_objects as go

    figure = go.Figure()
    points = backbone_points(rows)
    for state, symbol in (("complete", "circle"), ("pruned", "circle-open")):
        found = [(b, r) for b, rs in points.items() for r in rs if r["state"] == state]
        low, high = _errors([r for _, r in found])
        figure.add_trace(go.Scatter(
            x=[b for b, _ in found], y=[r["val_score"] for _, r in found], mode="markers",
            name=state if state == "pruned" else "complete (95% interval)",
            text=[f"trial {r['trial']}" for _, r in found],
            error_y={"type": "data", "array": high, "arrayminus": low, "visible": True},
            marker={"symbol": symbol, "size": 10}))
    missing = [b for b, rs in points.items() if not rs]
    if missing:
        figure.add_trace(go.Scatter(
            x=missing, y=[AXIS[0]] * len(missing), mode="markers", name="no score",
            text=[_without_score(rows, b) for b in missing],
            marker={"symbol": "x", "size": 12, "color": "red"}))
    figure.update_layout(title="Score per backbone", xaxis_title="backbone",
                         yaxis_title=f"validation {metric} (pruned: last reported)",
                         yaxis_range=list(AXIS))
    return figure


def backbone_matplotlib(rows: list[dict[str, Any]], metric: str):
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots()
    points = backbone_points(rows)
    said: set[str] = set()
    for i, (backbone, found) in enumerate(points.items()):
        for state, face in (("complete", "C0"), ("pruned", "none")):
            mine = [r for r in found if r["state"] == state]
            if not mine:
                continue
            label = "complete (95% interval)" if state == "complete" else state
            axes.errorbar([i] * len(mine), [r["val_score"] for r in mine], yerr=_errors(mine),
                          fmt="o", mfc=face, mec="C0", ecolor="C0", capsize=4,
                          label=None if label in said else label)
            said.add(label)
        if not found:
            why = _without_score(rows, backbone)
            axes.scatter([i], [AXIS[0]], marker="x", color="red", s=60, clip_on=False,
                         label=None if why in said else why)
            said.add(why)
    axes.set_xticks(range(len(points)), list(points), rotation=15, ha="right")
    axes.set_xlim(-0.5, len(points) - 0.5)
    axes.set_ylim(*AXIS)
    axes.set_xlabel("backbone")
    axes.set_ylabel(f"validation {metric} (pruned: last reported)")
    axes.set_title("Score per backbone")
    axes.legend()
    return axes
