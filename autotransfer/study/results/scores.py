"""Scores beyond the study's metric: per-class scores and the confusion matrix of a trial,
divergence, chance level, and the plots that show them (scikit-learn computes the scores)."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

import numpy as np

from autotransfer.finetune.records import StudyRecord, reference_name, trial_records
from autotransfer.space.objectives import get_objective
from autotransfer.study.selection import best_so_far as feasible_best

# a trial whose epoch loss exceeds this many times its first step's loss has diverged
DIVERGENCE_FACTOR = 10.0


def confusion(predictions: Any, labels: Any, n_classes: int) -> list[list[int]]:
    """The ``n_classes x n_classes`` confusion matrix (rows: true class, columns: predicted),
    from ``sklearn.metrics.confusion_matrix``, as lists (JSON for a trial's user attrs)."""
    from sklearn.metrics import confusion_matrix

    return confusion_matrix(np.asarray(labels), np.asarray(predictions),
                            labels=list(range(n_classes))).tolist()


def per_class_scores(matrix: list[list[int]], classes: list[str]) -> dict[str, dict[str, Any]]:
    """``{class: {precision, recall, f1, support}}`` of a confusion matrix (scikit-learn's
    ``precision_recall_fscore_support``; 0 where a score is undefined, e.g. never predicted)."""
    from sklearn.metrics import precision_recall_fscore_support

    counts = np.asarray(matrix)
    n = len(counts)
    true = np.repeat(np.arange(n), counts.sum(1))
    pred = np.concatenate([np.repeat(np.arange(n), row) for row in counts]) if n else []
    precision, recall, f1, support = precision_recall_fscore_support(
        true, pred, labels=list(range(n)), zero_division=0
    )
    return {
        name: {"precision": round(float(p), 4), "recall": round(float(r), 4),
               "f1": round(float(f), 4), "support": int(s)}
        for name, p, r, f, s in zip(classes, precision, recall, f1, support, strict=True)
    }


def macro_f1(per_class: dict[str, dict[str, Any]]) -> float:
    """The mean F1 over the classes that occur in the split."""
    present = [c["f1"] for c in per_class.values() if c["support"] > 0]
    return round(float(np.mean(present)), 4) if present else 0.0


def worst_class(per_class: dict[str, dict[str, Any]]) -> tuple[str, float] | None:
    """The class with the lowest recall among those in the split, and that recall."""
    present = [(c["recall"], name) for name, c in per_class.items() if c["support"] > 0]
    return (min(present)[1], min(present)[0]) if present else None


def divergence(train_loss: float, first_loss: float | None, epoch: int) -> str | None:
    """``diverged: ...`` when an epoch's mean training loss is non-finite or above
    ``DIVERGENCE_FACTOR`` times the first step's loss, else None."""
    if not math.isfinite(train_loss):
        return f"diverged: training loss {train_loss} at epoch {epoch}"
    if first_loss is not None and train_loss > DIVERGENCE_FACTOR * max(first_loss, 1e-8):
        return (f"diverged: training loss {train_loss:.3g} at epoch {epoch} is over "
                f"{DIVERGENCE_FACTOR:g}x its start ({first_loss:.3g})")
    return None


def chance_level(labels: Any, n_classes: int, metric: str) -> float:
    """The ``metric`` (a registered one, :mod:`autotransfer.space.objectives`) of always
    predicting the majority class of ``labels`` (the majority-class rate for accuracy)."""
    labels = np.asarray(labels)
    if len(labels) == 0:
        return 0.0
    majority = np.bincount(labels, minlength=n_classes).argmax()
    compute = get_objective(metric).compute
    assert compute is not None  # a metric always has one
    return float(compute(labels, np.full_like(labels, majority)))


def chance_warning(study, chance: float, metric: str) -> str | None:
    """One line when every finished trial of ``study`` scored at chance level (or diverged)."""
    trials = trial_records(study, ("complete", "pruned"))
    if not trials:
        return None
    complete = [r for r in trials if r.state == "complete"]
    diverged = [r for r in trials if (r.prune_reason or "").startswith("diverged")]
    at_chance = all(r.value is not None and r.value <= chance + 1e-6  # the score is first
                    for r in complete)
    advice = "try a lower learning-rate range (e.g. params.lr high: 1.0e-3)"
    if complete and at_chance:
        return (f"every finished trial scored at chance level (val {metric} <= {chance:.4f}, "
                f"what always predicting the majority class scores): {advice}")
    if not complete and len(diverged) == len(trials):
        return f"every finished trial diverged (its training loss blew up): {advice}"
    return None


def best_so_far(study) -> tuple[list[float], list[float], list[tuple[float, float]]]:
    """Wall-clock seconds since the search started (its first run's start; the first trial's
    start for a study that did not record it), the best validation score up to then at each
    completed trial, and each run's start-up as ``(start, end)`` seconds: from the run's start
    to its first trial's start (loading the data, timing the backbones, the pre-screen)."""
    trials = study.get_trials(deepcopy=False)
    starts = sorted(t.datetime_start for t in trials if t.datetime_start is not None)
    done, best = feasible_best(study)  # infeasible trials (over a constraint) never count
    if not starts or not done:
        return [], [], []
    # Optuna's datetimes are naive local time, as datetime.fromtimestamp gives
    runs = [datetime.fromtimestamp(at) for at in StudyRecord.of(study).run_starts or []]
    origin = min([*runs, starts[0]])
    startups = []
    for run in runs:
        first = next((s for s in starts if s >= run), None)
        if first is not None:
            startups.append(((run - origin).total_seconds(), (first - origin).total_seconds()))
    seconds = [(t.datetime_complete - origin).total_seconds() for t in done]
    return seconds, best, startups


def outcome_plots(study, metric: str, references: dict[str, dict[str, Any]],
                  best_trial) -> dict[str, tuple[Any, Any]]:
    """name -> (plotly figure builder, matplotlib axes builder) of ``best_so_far`` and the best
    trial's validation ``confusion_matrix`` (when recorded); ``best_trial`` is its
    :class:`~autotransfer.finetune.records.TrialRecord` (or None)."""
    plots: dict[str, tuple[Any, Any]] = {}
    seconds, best, startups = best_so_far(study)
    if seconds:
        plots["best_so_far"] = (
            lambda: _best_so_far_plotly(seconds, best, references, metric, startups),
            lambda: _best_so_far_matplotlib(seconds, best, references, metric, startups))
    matrix = None if best_trial is None else best_trial.confusion.get("val")
    classes = None if best_trial is None else best_trial.classes
    if matrix and classes:
        title = f"Confusion matrix of trial {best_trial.number} (validation)"
        plots["confusion_matrix"] = (lambda: _confusion_plotly(matrix, classes, title),
                                     lambda: _confusion_matplotlib(matrix, classes, title))
    return plots


STARTUP = "start-up (data, timing, pre-screen)"


def _best_so_far_plotly(seconds, best, references, metric, startups=()):
    import plotly.graph_objects as go

    figure = go.Figure(go.Scatter(x=seconds, y=best, mode="lines+markers", line_shape="hv",
                                  name="best so far"))
    for i, (start, end) in enumerate(startups):
        figure.add_vrect(x0=start, x1=end, fillcolor="grey", opacity=0.25, line_width=0,
                         annotation_text=STARTUP if i == 0 else None)
    for kind, ref in references.items():
        figure.add_hline(y=ref["val_score"], line_dash="dash",
                         annotation_text=f"{reference_name(kind)} ({ref['backbone']})")
    figure.update_layout(title="Best so far",
                         xaxis_title="wall-clock seconds since the search started",
                         yaxis_title=f"best validation {metric}")
    return figure


def _best_so_far_matplotlib(seconds, best, references, metric, startups=()):
    import matplotlib.pyplot as plt

    _, axes = plt.subplots()
    for i, (start, end) in enumerate(startups):
        axes.axvspan(start, end, color="grey", alpha=0.25, label=STARTUP if i == 0 else None)
    axes.step(seconds, best, where="post", marker="o", label="best so far")
    for i, (kind, ref) in enumerate(references.items()):
        axes.axhline(ref["val_score"], linestyle="--", color=f"C{i + 1}",
                     label=f"{reference_name(kind)} ({ref['backbone']})")
    axes.set_xlim(left=0)
    axes.set_xlabel("wall-clock seconds since the search started")
    axes.set_ylabel(f"best validation {metric}")
    axes.set_title("Best so far")
    axes.legend()
    return axes


#: Up to this many classes the plots print each cell's count; beyond, the colour (and in HTML
#: the hover) gives it, so that 200+ classes draw in seconds and stay legible.
LABELLED_CLASSES = 30
#: At most this many class names along each axis of the PNG (every k-th beyond).
TICK_LABELS = 50


def _confusion_plotly(matrix, classes, title):
    import plotly.graph_objects as go

    text = {"text": matrix, "texttemplate": "%{text}"} if len(classes) <= LABELLED_CLASSES else {}
    figure = go.Figure(go.Heatmap(z=matrix, x=classes, y=classes, colorscale="Blues", **text,
                                  hovertemplate="true %{y}<br>predicted %{x}<br>%{z}"
                                                "<extra></extra>"))
    figure.update_layout(title=_sized(title, classes), xaxis_title="predicted",
                         yaxis_title="true", yaxis_autorange="reversed")
    return figure


def _sized(title: str, classes) -> str:
    return (title if len(classes) <= LABELLED_CLASSES
            else f"{title}: {len(classes)} classes, counts by colour")


def _confusion_matplotlib(matrix, classes, title):
    if len(classes) > LABELLED_CLASSES:
        return _confusion_heatmap(np.asarray(matrix), classes, title)
    from sklearn.metrics import ConfusionMatrixDisplay

    display = ConfusionMatrixDisplay(np.asarray(matrix), display_labels=classes)
    display.plot(cmap="Blues", xticks_rotation=45, colorbar=False)
    display.ax_.grid(False)  # a style's grid lines would cut through the counts
    for label in display.ax_.get_xticklabels():  # rotated names end under their column
        label.set_horizontalalignment("right")
        label.set_rotation_mode("anchor")
    display.ax_.set_title(title)
    return display.ax_


def _confusion_heatmap(matrix: np.ndarray, classes, title):
    """Many classes: one image (no text per cell), a colour bar, every k-th class named."""
    import matplotlib.pyplot as plt

    _, axes = plt.subplots()
    image = axes.imshow(matrix, cmap="Blues", interpolation="nearest", aspect="auto")
    axes.figure.colorbar(image, ax=axes, label="samples")
    step = -(-len(classes) // TICK_LABELS)
    ticks = np.arange(0, len(classes), step)
    axes.set_xticks(ticks, [classes[i] for i in ticks], rotation=90, fontsize=5)
    axes.set_yticks(ticks, [classes[i] for i in ticks], fontsize=5)
    axes.set_xlabel("predicted" + (f" (every {step}th class named)" if step > 1 else ""))
    axes.set_ylabel("true")
    axes.set_title(_sized(title, classes))
    axes.grid(False)
    return axes
