"""How noisy a score is: 95% intervals, and the rule that picks among indistinguishable trials.

- **Accuracy**: the Wilson score interval of ``k`` correct out of ``n`` (Wilson, "Probable
  inference, the law of succession, and statistical inference", JASA 1927), computed by
  ``scipy.stats.binomtest(k, n).proportion_ci(method="wilson")``.
- **Macro-F1**: a percentile bootstrap over the evaluated examples (``scipy.stats.bootstrap``,
  :data:`BOOTSTRAP_RESAMPLES` resamples, a fixed seed, so the same predictions always give the
  same interval).
- **Any other registered metric** (:mod:`autotransfer.space.objectives`, e.g.
  ``balanced_accuracy``): the same percentile bootstrap, through the metric's own
  ``compute(labels, preds)`` (one call per resample: slower than the two above).

All read a trial's confusion matrix (rows true, columns predicted), which every completed
trial records per split; nothing is re-run.

**The winner's curse.** The best validation score of many trials is an optimistic estimate of
the winner's quality: the pick favours trials whose validation split happened to suit them.
The test split (when given) is scored for every completed trial but never used by any choice
(:func:`pick_best` reads validation scores only); it is the honest estimate, shown beside the
validation score in ``best.yaml``, the leaderboard and ``report.md``.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from autotransfer.finetune.records import reference_name
from autotransfer.space.objectives import get_objective

#: Bootstrap resamples for a macro-F1 interval, and the seed of the bootstrap.
BOOTSTRAP_RESAMPLES = 1000
BOOTSTRAP_SEED = 0
LEVEL = 0.95

#: The rule :func:`pick_best` applies, as the report states it.
RULE = ("the highest validation score wins; among the trials within one validation example of "
        "it (statistically tied: their 95% intervals overlap), the one that trained for the "
        "fewest seconds wins, never one below the best reference trial")


def wilson(k: int, n: int, level: float = LEVEL) -> tuple[float, float]:
    """The Wilson score interval of a proportion ``k / n`` (e.g. accuracy: ``k`` correct of
    ``n`` examples), as ``(low, high)`` in [0, 1].

    Raises:
        ValueError: ``n < 1`` or ``k`` outside ``[0, n]``.
    """
    from scipy.stats import binomtest

    if n < 1 or not 0 <= k <= n:
        raise ValueError(f"a proportion needs 0 <= k <= n and n >= 1, got k={k}, n={n}")
    ci = binomtest(int(k), int(n)).proportion_ci(confidence_level=level, method="wilson")
    return float(ci.low), float(ci.high)


def _macro_f1(true: np.ndarray, pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Macro-F1 along the last axis of ``true``/``pred`` (integer classes; any leading batch
    shape), over the classes present in each resample's truth or predictions, as sklearn's
    ``f1_score(average="macro")`` counts them."""
    classes = np.arange(n_classes)
    t = true[..., None] == classes  # (..., n, C)
    p = pred[..., None] == classes
    tp = (t & p).sum(-2)
    support, predicted = t.sum(-2), p.sum(-2)
    denominator = support + predicted
    f1 = np.where(denominator > 0, 2 * tp / np.maximum(denominator, 1), 0.0)
    present = denominator > 0
    return (f1 * present).sum(-1) / np.maximum(present.sum(-1), 1)


def pairs(confusion: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
    """The ``(true, predicted)`` label of every example a confusion matrix counts."""
    matrix = np.asarray(confusion, dtype=np.int64)
    rows, cols = np.nonzero(matrix)
    counts = matrix[rows, cols]
    return np.repeat(rows, counts), np.repeat(cols, counts)


def bootstrap_macro_f1(confusion: Sequence[Sequence[int]], *, resamples: int =
                       BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED,
                       level: float = LEVEL) -> tuple[float, float]:
    """A percentile-bootstrap interval of macro-F1 from a confusion matrix (rows true,
    columns predicted), resampling the examples with replacement; seeded, so repeatable."""
    from scipy.stats import bootstrap

    true, pred = pairs(confusion)
    if len(true) < 2:
        raise ValueError(f"a bootstrap needs at least 2 examples, got {len(true)}")
    n_classes = len(confusion)
    result = bootstrap(
        (np.arange(len(true)),),
        lambda index, axis=-1: _macro_f1(true[index], pred[index], n_classes),
        n_resamples=resamples, confidence_level=level, method="percentile", vectorized=True,
        rng=np.random.default_rng(seed),
    )
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def bootstrap_metric(confusion: Sequence[Sequence[int]], compute, *, resamples: int =
                     BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED,
                     level: float = LEVEL) -> tuple[float, float]:
    """A percentile-bootstrap interval of ``compute(labels, preds)`` (any metric) from a
    confusion matrix, resampling the examples with replacement; seeded, so repeatable."""

    true, pred = pairs(confusion)
    if len(true) < 2:
        raise ValueError(f"a bootstrap needs at least 2 examples, got {len(true)}")
    return _resampled(len(true), lambda index: compute(true[index], pred[index]),
                      resamples=resamples, seed=seed, level=level)


def _resampled(n: int, statistic, *, resamples: int, seed: int,
               level: float) -> tuple[float, float]:
    """scipy's seeded percentile bootstrap of ``statistic(index)`` over ``n`` examples drawn
    with replacement (``index``: the drawn examples' positions)."""
    from scipy.stats import bootstrap

    with warnings.catch_warnings():  # a resample may miss a class: the metric's own warning
        warnings.simplefilter("ignore")
        result = bootstrap((np.arange(n),), statistic, n_resamples=resamples,
                           confidence_level=level, method="percentile", vectorized=False,
                           rng=np.random.default_rng(seed))
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def paired_gain(pick, other, labels, metric: str, *, resamples: int = BOOTSTRAP_RESAMPLES,
                seed: int = BOOTSTRAP_SEED, level: float = LEVEL) -> dict[str, Any]:
    """``metric``'s gain of one model over another on the same examples, with a paired
    percentile bootstrap's 95% interval: ``{"gain", "ci95": [low, high] | None}``.

    ``pick`` and ``other`` are class probabilities ``(N, C)`` (or predicted classes ``(N,)``)
    of the same ``N`` examples, ``labels`` their classes ``(N,)``. Each resample draws the
    examples with replacement and scores both models on it (a paired bootstrap, Efron &
    Tibshirani 1993, ch. 16: what the two have in common, the examples' difficulty, cancels,
    so the interval is narrower than two separate intervals' overlap); scipy's
    ``stats.bootstrap``. The interval is None when undefined (fewer than 2 examples, or a
    metric that gives NaN on every resample).

    Raises:
        ValueError: the arrays do not describe the same ``N`` examples, or ``metric`` is not
            a registered metric.
    """

    compute = get_objective(metric).compute
    labels = np.asarray(labels)
    a, b = (np.asarray(p) for p in (pick, other))
    a, b = (p.argmax(1) if p.ndim == 2 else p for p in (a, b))
    if not len(a) == len(b) == len(labels):
        raise ValueError(f"paired gain: {len(a)} and {len(b)} predictions for {len(labels)} "
                         "labels; both models must score the same examples")
    gain = float(compute(labels, a) - compute(labels, b))
    if len(labels) < 2:
        return {"gain": gain, "ci95": None}
    low, high = _resampled(len(labels),
                           lambda i: compute(labels[i], a[i]) - compute(labels[i], b[i]),
                           resamples=resamples, seed=seed, level=level)
    if not (np.isfinite(low) and np.isfinite(high)):
        return {"gain": gain, "ci95": None}
    return {"gain": round(gain, 6), "ci95": [round(float(low), 4), round(float(high), 4)]}


def score_ci95(confusion: Sequence[Sequence[int]] | None, metric: str) -> list[float] | None:
    """The 95% interval ``[low, high]`` (rounded to 4 places) of ``metric`` (``accuracy``:
    Wilson; ``macro_f1``: bootstrap; another registered metric: a bootstrap of its
    ``compute``) from a split's confusion matrix; None without one.

    None too when the interval is undefined (a bootstrap whose resamples all give NaN, as
    Cohen's kappa does on a split where one class is predicted).

    Raises:
        ValueError: ``metric`` is not a registered metric.
    """
    if not confusion:
        return None
    matrix = np.asarray(confusion, dtype=np.int64)
    n = int(matrix.sum())
    if n < 2:
        return None
    if metric == "accuracy":  # a proportion: exact
        low, high = wilson(int(np.trace(matrix)), n)
    elif metric == "macro_f1":  # vectorised: 1000 resamples in one call
        low, high = bootstrap_macro_f1(matrix)
    else:
        low, high = bootstrap_metric(matrix, get_objective(metric).compute)
    if not (np.isfinite(low) and np.isfinite(high)):
        return None
    return [round(low, 4), round(high, 4)]


def metric_of(record, metric: str | None = None) -> str:
    """The metric of a trial's score: ``metric`` when known, else the one its validation
    confusion matrix reproduces (accuracy when it does, macro-F1 otherwise)."""
    if metric is not None:
        return metric
    matrix = np.asarray(record.confusion.get("val") or [[0]], dtype=np.int64)
    score = record.value if record.value is not None else record.score
    if score is None or matrix.sum() == 0:
        return "accuracy"
    return "accuracy" if abs(np.trace(matrix) / matrix.sum() - score) < 1e-4 else "macro_f1"


def intervals_of(record, metric: str | None = None) -> dict[str, list[float] | None]:
    """``{"val_score_ci95": [low, high] | None, "test_score_ci95": ...}`` of a trial record
    (completed trials have confusion matrices; others get None)."""
    metric = metric_of(record, metric)
    return {f"{split}_score_ci95": score_ci95(record.confusion.get(split), metric)
            for split in ("val", "test")}


def overlaps(a: Sequence[float] | None, b: Sequence[float] | None) -> bool:
    """Whether two intervals ``[low, high]`` intersect (False when either is unknown)."""
    return a is not None and b is not None and a[0] <= b[1] and b[0] <= a[1]


def _cost(record) -> float:
    """Seconds a trial trained (its duration, else seconds per epoch times epochs)."""
    if record.duration_seconds:
        return float(record.duration_seconds)
    if record.seconds_per_epoch:
        return float(record.seconds_per_epoch) * max(1, record.epochs_reported)
    return float("inf")


def val_examples(record) -> int | None:
    """How many validation examples scored the trial (from its confusion matrix)."""
    matrix = record.confusion.get("val")
    return int(np.asarray(matrix).sum()) if matrix else None


def pick_best(completed: Sequence[Any]) -> Any | None:
    """The study's winner among completed trial records, by :data:`RULE`.

    The highest validation score wins. Trials within one validation example of it (``1 / n``
    of accuracy for ``n`` validation examples; their 95% intervals overlap by construction)
    are statistically tied with it, and among them the one that trained for the fewest seconds
    wins: it is as good as far as the validation split can tell, and the cheaper to refit. A
    tied trial below the best reference trial's score is never picked, so the result is never
    below the best reference. Only validation scores and costs are read: the test split never
    influences the pick.
    """
    scored = [r for r in completed if r.value is not None]
    if not scored:
        return None
    top = max(scored, key=lambda r: r.value)
    n = val_examples(top)
    if not n:
        return top
    floor = max((r.value for r in scored if r.reference), default=-np.inf)
    tied = [r for r in scored
            if r.value >= top.value - 1.0 / n - 1e-9 and r.value >= floor - 1e-9]
    return min(tied, key=lambda r: (_cost(r), -r.value, r.number))


def tied_with(best, completed: Sequence[Any], metric: str | None = None) -> list[int]:
    """Numbers of the other completed trials whose validation interval overlaps ``best``'s
    (the report lists them: the validation split cannot tell them apart)."""
    own = intervals_of(best, metric)["val_score_ci95"]
    return [r.number for r in completed if r.number != best.number
            and overlaps(own, intervals_of(r, metric)["val_score_ci95"])]


def tie_note(rows: Sequence[dict[str, Any]]) -> str | None:
    """One line when the leaderboard (rows best first) ranks first a completed trial whose
    validation score is below another feasible completed trial's: why (the pick rule), so
    that the order does not read as a mistake. None otherwise."""
    complete = [r for r in rows if r["state"] == "complete" and r["val_score"] is not None
                and r.get("feasible") is not False]
    if not complete or rows[0] is not complete[0]:
        return None
    first, top = complete[0], max(complete, key=lambda r: r["val_score"])
    if top["val_score"] <= first["val_score"]:
        return None
    why = ("their 95% intervals overlap (a statistical tie) and it trained for fewer seconds"
           if overlaps(first.get("val_score_ci95"), top.get("val_score_ci95")) else
           "the study's pick rule ranks it first (best.yaml's pick)")
    return (f"trial {first['trial']} ranks above trial {top['trial']} despite a lower val "
            f"score ({first['val_score']:.4f} < {top['val_score']:.4f}): {why}")


def indistinguishable_lines(best, references: dict[str, Any], record_of,
                            metric: str | None = None) -> list[str]:
    """One line per reference kind whose best trial the best trial's validation score cannot
    be told apart from (their 95% intervals overlap): "Not distinguishable from the best
    default (trial 4): a gain of 1 of 120 validation examples". ``best`` is the best trial's
    record, ``references`` best.yaml's ``references`` and ``record_of(number)`` a trial's
    record."""
    own = intervals_of(best, metric)["val_score_ci95"]
    n = val_examples(best)
    if own is None or not n:
        return []
    lines = []
    for kind, ref in references.items():
        if ref["trial"] == best.number:
            continue
        other = record_of(ref["trial"])
        if not overlaps(own, intervals_of(other, metric)["val_score_ci95"]):
            continue
        gain = float(best.value) - float(ref["val_score"])
        if metric_of(best, metric) == "accuracy":
            size = f"a gain of {round(gain * n)} of {n} validation examples"
        else:
            size = f"a gain of {gain:+.4f} macro-F1 on {n} validation examples"
        lines.append(f"Not distinguishable from the best {reference_name(kind)} (trial "
                     f"{ref['trial']}, `{ref['backbone']}`): their 95% intervals overlap, "
                     f"{size}.")
    return lines
