"""Ensemble selection over trained models' class probabilities, and its honest score.

Caruana, Niculescu-Mizil, Crew and Ksikes, 2004, "Ensemble selection from libraries of models"
(ICML): start from an empty ensemble and, for a fixed number of rounds, add the model of the
library whose addition scores best (here: the study's metric of the averaged probabilities'
arg-max), *with replacement*, so that a model added twice weighs twice; the ensemble kept is the
round that scored best (the earliest on a tie, so that an addition that buys nothing is not
kept). AutoGluon's ``EnsembleSelection`` and auto-sklearn do the same. Within a round, a tie of
the metric goes to the lower log loss of the average (accuracy on a few hundred examples ties
often), then to the library's order.

Bounds: at most ``max_members`` distinct models, and ``fits(members)``: a model whose addition
would break it (e.g. the summed latency over a constraint) is not a candidate.

**Honest score (cross-fitting).** The members and weights are chosen on the validation split
that also chose (and scored) the trials, so their score there is optimistic.
:func:`cross_fit` splits the validation examples into two fixed halves (stratified by class,
seeded), selects on half A and predicts half B, and the reverse; every validation example is
then predicted by an ensemble that did not see it, and the metric of those held-out predictions
is the ensemble's reported validation score. The same procedure with ``max_members=1`` (pick the
best single model on one half, predict the other) is the comparable score of a single pick.
The final members and weights are selected on the whole split.

Needs numpy only (no torch, no Optuna): the study reads the trials' recorded probabilities
(:mod:`autotransfer.finetune.predictions`) and calls :func:`select` and :func:`cross_fit`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

#: Greedy rounds of a selection (AutoGluon's ``ensemble_size`` default is 25 too): the weights
#: are multiples of 1 / the number of rounds kept.
ROUNDS = 25
#: The seed of the two fixed halves of :func:`halves`.
HALVES_SEED = 0


@dataclass(frozen=True)
class Selection:
    """What :func:`select` chose.

    Attributes:
        counts: library index -> how many rounds added it (its weight is count / rounds).
        rounds: the rounds of the kept ensemble (the sum of ``counts``).
        score: the metric of the kept ensemble on the examples it was selected on.
        first_score: the metric of the first round's model alone (the best single model).
    """

    counts: dict[int, int]
    rounds: int
    score: float
    first_score: float

    @property
    def weights(self) -> dict[int, float]:
        """Library index -> weight (summing to 1), heaviest first."""
        return {i: c / self.rounds for i, c in
                sorted(self.counts.items(), key=lambda kv: (-kv[1], kv[0]))}

    def combine(self, probs: np.ndarray) -> np.ndarray:
        """The weighted average ``(N, C)`` of ``probs`` ``(M, N, C)`` (the library's)."""
        return sum((w * probs[i].astype(np.float64) for i, w in self.weights.items()),
                   np.zeros(probs.shape[1:]))

    def predict(self, probs: np.ndarray) -> np.ndarray:
        """The predicted classes ``(N,)`` of the ensemble on ``probs`` ``(M, N, C)``."""
        return self.combine(probs).argmax(-1)


def _log_loss(average: np.ndarray, labels: np.ndarray) -> float:
    picked = average[np.arange(len(labels)), labels]
    return float(-np.log(np.clip(picked, 1e-12, None)).mean())


def select(probs: np.ndarray, labels: np.ndarray, compute: Callable[..., float], *,
           max_members: int = 5, rounds: int = ROUNDS, maximize: bool = True,
           fits: Callable[[frozenset[int]], bool] | None = None) -> Selection:
    """Greedy forward ensemble selection with replacement (see the module docstring).

    Args:
        probs: ``(M, N, C)`` class probabilities of the M library models on N examples.
        labels: ``(N,)`` true class indices.
        compute: the metric, ``compute(labels, preds) -> float``
            (:mod:`autotransfer.space.objectives`).
        max_members: at most this many distinct models.
        rounds: greedy rounds.
        maximize: whether a larger metric is better.
        fits: whether a set of distinct members is allowed (None: every set).

    Returns:
        The kept ensemble (:class:`Selection`).

    Raises:
        ValueError: no model, shapes that disagree, ``max_members`` or ``rounds`` < 1, or no
            single model that ``fits``.

    Example:
        >>> import numpy as np
        >>> from autotransfer.space.objectives import accuracy
        >>> a = np.array([[.9, .1], [.4, .6], [.2, .8]])  # wrong on example 1
        >>> b = np.array([[.4, .6], [.9, .1], [.2, .8]])  # wrong on example 0
        >>> select(np.stack([a, b]), np.array([0, 0, 1]), accuracy).weights
        {0: 0.5, 1: 0.5}
    """
    probs, labels = np.asarray(probs, dtype=np.float32), np.asarray(labels)
    if probs.ndim != 3 or len(probs) == 0 or probs.shape[1] != len(labels):
        raise ValueError(f"probs must be (models, {len(labels)} examples, classes), got "
                         f"shape {probs.shape}")
    if max_members < 1 or rounds < 1:
        raise ValueError(f"max_members and rounds must be >= 1, got {max_members=}, {rounds=}")
    sign = 1.0 if maximize else -1.0
    total = np.zeros(probs.shape[1:])  # float64: the sum of the chosen rows
    counts: Counter[int] = Counter()
    trace: list[tuple[float, dict[int, int]]] = []
    for done in range(rounds):
        members = frozenset(counts)
        best: tuple[float, float, int] | None = None
        for i in range(len(probs)):
            if i not in members and (len(members) >= max_members
                                     or (fits is not None and not fits(members | {i}))):
                continue
            average = (total + probs[i]) / (done + 1)
            score = float(compute(labels, average.argmax(-1)))
            key = (sign * score, -_log_loss(average, labels), -i)
            if best is None or key > best:
                best = key
        if best is None:
            if done == 0:
                raise ValueError("no single model fits the bounds")
            break
        chosen = -best[2]
        counts[chosen] += 1
        total += probs[chosen]
        trace.append((sign * best[0], dict(counts)))
    kept = max(range(len(trace)), key=lambda r: (sign * trace[r][0], -r))
    score, chosen_counts = trace[kept]
    return Selection(counts=chosen_counts, rounds=sum(chosen_counts.values()), score=score,
                     first_score=trace[0][0])


def halves(labels: np.ndarray, seed: int = HALVES_SEED) -> tuple[np.ndarray, np.ndarray]:
    """Two fixed halves of the examples, stratified by class: within each class the examples
    are shuffled with ``seed`` and dealt alternately to A and B. Returns the sorted indices of
    A and of B."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    a: list[int] = []
    b: list[int] = []
    flip = 0
    for c in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == c))
        first, second = (a, b) if flip == 0 else (b, a)  # odd classes alternate the extra one
        first.extend(members[0::2].tolist())
        second.extend(members[1::2].tolist())
        flip ^= len(members) % 2
    return np.sort(np.array(a, dtype=np.int64)), np.sort(np.array(b, dtype=np.int64))


@dataclass(frozen=True)
class CrossFit:
    """The held-out predictions of :func:`cross_fit` and the two selections behind them."""

    preds: np.ndarray  # (N,): each example predicted by the selection of the other half
    on_a: Selection  # selected on half A, predicts half B
    on_b: Selection
    a: np.ndarray
    b: np.ndarray


def cross_fit(probs: np.ndarray, labels: np.ndarray, compute: Callable[..., float],
              **options) -> CrossFit:
    """Select on half A and predict half B, and the reverse (:func:`halves`); ``options`` are
    :func:`select`'s. The metric of ``result.preds`` against ``labels`` is the ensemble's
    held-out validation score.

    Raises:
        ValueError: fewer than 2 examples, or as :func:`select`.
    """
    probs, labels = np.asarray(probs), np.asarray(labels)
    if len(labels) < 2:
        raise ValueError(f"cross-fitting needs at least 2 examples, got {len(labels)}")
    a, b = halves(labels)
    on_a = select(probs[:, a], labels[a], compute, **options)
    on_b = select(probs[:, b], labels[b], compute, **options)
    preds = np.empty(len(labels), dtype=np.int64)
    preds[b] = on_a.predict(probs[:, b])
    preds[a] = on_b.predict(probs[:, a])
    return CrossFit(preds=preds, on_a=on_a, on_b=on_b, a=a, b=b)


def aligned(labels: Sequence[np.ndarray]) -> list[bool]:
    """Which label vectors equal the first (the same examples in the same order)."""
    first = np.asarray(labels[0]) if len(labels) else None
    return [first is not None and np.array_equal(np.asarray(x), first) for x in labels]
