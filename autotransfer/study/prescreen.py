"""Transferability pre-screen: rank candidate backbones from frozen features, in seconds each.

Each candidate embeds a stratified sample of the training split once (eval mode, no gradients),
and the features are scored against the labels:

- ``logme``: LogME, the log of the maximum evidence of a Bayesian linear model of one-vs-rest
  targets on the features (You et al., "LogME: Practical Assessment of Pre-trained Models for
  Transfer Learning", ICML 2021), by the paper's fixed-point iteration on the SVD;
- ``knn``: leave-one-out k-nearest-neighbour accuracy (cosine, k=5) on the same features;
- ``params``: parameter count, largest first (pretrained before random-init) — a baseline that
  published work finds hard to beat;
- ``imagenet``: the published ImageNet top-1 accuracy of the weights (known ones only).

LEEP and NCE need the source task's class probabilities, which pooled-feature backbones do not
have (their classifier head is removed), so they are not offered.
``benchmarks/prescreen.py`` measures which ranking agrees best with fine-tuned accuracy;
``DEFAULT_BY`` is the winner (docs/prescreen.md has the table).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from autotransfer.contract.collect import get_registry
from autotransfer.data import LabelledData, iterate_batches
from autotransfer.errors import AutotransferError, OptionError, first_line
from autotransfer.finetune.records import StudyRecord, set_prescreen
from autotransfer.study.options import PRESCREEN_METHODS

DEFAULT_BY = "logme"
DEFAULT_SAMPLES = 300


@dataclass
class Score:
    """One candidate's pre-screen result."""

    label: str  # the search-space label (id, or id + " (random init)")
    backbone: str
    pretrained: bool
    parameters: int
    dim: int = 0
    samples: int = 0
    seconds: float = 0.0
    scores: dict[str, float | None] = field(default_factory=dict)
    error: str | None = None  # why features could not be computed

    def key(self, by: str) -> float:
        """Sort key for ``by`` (higher is better); missing scores sort last."""
        value = self.scores.get(by)
        return -np.inf if value is None or not np.isfinite(value) else float(value)


def stratified_sample(labels: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """Indices of about ``n`` samples, each class in proportion but with at least 2 when it has
    them (so that leave-one-out neighbours exist); all indices when ``n >= len(labels)``."""
    if n < 2:
        raise OptionError("samples", f" must be >= 2, got {n}")
    if n >= len(labels):
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(labels, return_counts=True)
    quota = np.maximum(np.minimum(counts, 2), np.floor(counts * n / len(labels)).astype(int))
    chosen = [rng.permutation(np.flatnonzero(labels == c))[:q]
              for c, q in zip(classes, quota, strict=True)]
    return np.sort(np.concatenate(chosen))


def feature_params(space) -> dict[str, Any]:
    """The preprocessing settings that every trial shares: the space's fixed values (e.g.
    ``image_size: 96``), defaults for sampled ones."""
    return space.resolve({})


def frozen_features(
    backbone, data, index: np.ndarray, params: dict[str, Any], *, device="cpu",
    batch_size: int = 64,
) -> tuple[np.ndarray, np.ndarray]:
    """Pooled features ``(n, D)`` (float64) and labels of the training samples ``index``.

    The backbone runs in eval mode under ``torch.inference_mode``, with the preprocessing of
    a trial with ``params`` (image size, text length, clip length) and no augmentation.
    """
    import torch

    sample = LabelledData(data.modality, data.classes, data.train.subset(index), data.val,
                          None, data.source)
    preprocess = backbone.configured(params, augment="none")
    device = torch.device(device)
    model = backbone.model.to(device).eval()
    inputs, labels = preprocess.encode(sample, "train")
    chunks = []
    with torch.inference_mode():
        for batch, _ in iterate_batches(inputs, labels, batch_size, shuffle=False):
            chunks.append(model(preprocess.to_input(batch, device=device)).float().cpu())
    return torch.cat(chunks).double().numpy(), labels.numpy()


def logme(features: np.ndarray, labels: np.ndarray) -> float:
    """LogME of ``features`` (n, D) for class ``labels``: the mean over classes of the maximum
    log evidence per sample of a Bayesian ridge regression onto each one-vs-rest target.

    The prior precision ``alpha`` and noise precision ``beta`` are found by MacKay's fixed-point
    updates on the SVD of the features (Algorithm 1 of You et al., 2021); higher is better.
    """
    f = np.asarray(features, dtype=np.float64)
    n, d = f.shape
    # the eigen-decomposition of the smaller Gram matrix gives the SVD F = U S V^T (faster than
    # an SVD, and much less hurt by BLAS threads on a busy machine)
    if n <= d:
        sigma, u = np.linalg.eigh(f @ f.T)
    else:
        sigma, v = np.linalg.eigh(f.T @ f)
        keep = sigma > 1e-10 * max(float(sigma.max()), 1e-300)
        sigma, v = sigma[keep], v[:, keep]
        u = (f @ v) / np.sqrt(sigma)
    sigma = np.clip(sigma, 0.0, None)  # the eigenvalues of F^T F: squared singular values
    evidences = []
    for cls in np.unique(labels):
        y = (labels == cls).astype(np.float64)
        x = u.T @ y  # the target in the singular basis
        x2 = x**2
        outside = max(float(y @ y - x2.sum()), 0.0)  # the part no linear model can fit
        alpha, beta = 1.0, 1.0
        for _ in range(100):
            gamma = float((beta * sigma / (alpha + beta * sigma)).sum())
            m2 = float((beta**2 * sigma * x2 / (alpha + beta * sigma) ** 2).sum())
            res2 = float((x2 * (alpha / (alpha + beta * sigma)) ** 2).sum()) + outside
            new_alpha = gamma / (m2 + 1e-5)
            new_beta = (n - gamma) / (res2 + 1e-5)
            converged = abs(new_alpha / new_beta - alpha / beta) <= 1e-3 * (alpha / beta)
            alpha, beta = new_alpha, new_beta
            if converged:
                break
        m2 = float((beta**2 * sigma * x2 / (alpha + beta * sigma) ** 2).sum())
        res2 = float((x2 * (alpha / (alpha + beta * sigma)) ** 2).sum()) + outside
        log_det = float(np.log(alpha + beta * sigma).sum()) + (d - len(sigma)) * np.log(alpha)
        evidence = (
            d / 2 * np.log(alpha) + n / 2 * np.log(beta) - 0.5 * log_det
            - beta / 2 * res2 - alpha / 2 * m2 - n / 2 * np.log(2 * np.pi)
        )
        evidences.append(evidence / n)
    return float(np.mean(evidences))


def knn_accuracy(features: np.ndarray, labels: np.ndarray, k: int = 5) -> float:
    """Leave-one-out accuracy of a cosine k-nearest-neighbour vote on centred features (ties go
    to the class with the larger summed similarity).

    ``features`` is ``(N, D)``, ``labels`` ``(N,)`` integer classes; returns a fraction in
    [0, 1]."""
    z = np.asarray(features, dtype=np.float64)
    z = z - z.mean(0)
    z /= np.linalg.norm(z, axis=1, keepdims=True).clip(min=1e-12)
    sims = z @ z.T
    np.fill_diagonal(sims, -np.inf)
    k = max(1, min(k, len(labels) - 1))
    nearest = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    classes, y = np.unique(labels, return_inverse=True)
    votes = np.zeros((len(y), len(classes)))
    rows = np.repeat(np.arange(len(y)), k)
    weight = 1.0 + 1e-6 * np.take_along_axis(sims, nearest, 1).ravel()  # ties: closer wins
    np.add.at(votes, (rows, y[nearest].ravel()), weight)
    return float((votes.argmax(1) == y).mean())


def feature_scores(features: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Every feature-based score of one candidate."""
    return {"logme": logme(features, labels), "knn": knn_accuracy(features, labels)}


def prescreen(
    data,
    space,
    *,
    samples: int = DEFAULT_SAMPLES,
    by: str = DEFAULT_BY,
    device="cpu",
    seed: int = 0,
    trust_remote_code: bool = False,
    on_score: Callable[[Score], None] | None = None,
) -> list[Score]:
    """Score every backbone of ``space`` on frozen features of ``data``; best first by ``by``.

    Args:
        data: a :class:`~autotransfer.data.LabelledData`.
        space: a :class:`~autotransfer.space.schema.SearchSpace`; its fixed preprocessing values
            (``image_size``, ``max_length``, ``clip_seconds``) are used.
        samples: training samples embedded per backbone (stratified, seeded).
        by: the ranking: ``logme``, ``knn``, ``params`` or ``imagenet``.
        device: a torch device.
        seed: seeds the sample (and random-init weights).
        trust_remote_code: passed to Hugging Face loaders that accept it.
        on_score: called with each candidate's result as soon as it is known.

    A backbone whose features cannot be computed is reported with its ``error`` and ranked
    last; it never stops the others.

    Example:
        >>> ranking = prescreen(load_data("data/fashion-mnist"),
        ...                     load_space("search_spaces/image-quick.yaml"))  # doctest: +SKIP
        >>> [(s.label, s.scores["knn"]) for s in ranking]  # doctest: +SKIP

    Long (as a reason): one loop over the candidates, each isolated (a broken one
    is scored as an error, never stops the pre-screen).
    """
    import torch

    if by not in PRESCREEN_METHODS:
        raise OptionError("by", f" must be one of {', '.join(PRESCREEN_METHODS)}, got {by!r}")
    registry = get_registry()
    index = stratified_sample(data.train.labels, samples, seed)
    params = feature_params(space)
    results = []
    for spec in space.backbones:
        entry = registry.get(spec.id)
        options = spec.load_options(entry, trust_remote_code=trust_remote_code)
        score = Score(spec.label, spec.id, spec.pretrained, entry.params or 0, samples=len(index))
        start = time.perf_counter()
        try:
            torch.manual_seed(seed)
            backbone = entry.load(pretrained=spec.pretrained, **options)
            score.parameters = sum(p.numel() for p in backbone.model.parameters())
            features, labels = frozen_features(backbone, data, index, params, device=device)
            del backbone
            score.dim = features.shape[1]
            if not np.isfinite(features).all():
                raise FloatingPointError("features contain NaN or inf")
            score.scores.update(feature_scores(features, labels))
        except Exception as exc:  # one broken candidate does not stop the pre-screen
            score.error = f"{type(exc).__name__}: {first_line(exc)}"
        score.seconds = time.perf_counter() - start
        # baselines: bigger first (pretrained before random init), published ImageNet top-1
        score.scores["params"] = float(score.parameters) + (1e12 if spec.pretrained else 0.0)
        # the zoo's published figure (entry metadata) holds for its own weights only
        top1 = entry.imagenet_top1 if spec.pretrained and not spec.weights else None
        score.scores["imagenet"] = top1
        results.append(score)
        if on_score is not None:
            on_score(score)
    return rank(results, by)


def rank(results: Sequence[Score], by: str) -> list[Score]:
    """``results`` best first by ``by``; ties keep the space's order."""
    return sorted(results, key=lambda s: -s.key(by))


def keep_top(space, ranking: Sequence[Score], k: int, by: str):
    """A copy of ``space`` with only the ``k`` best backbones of ``ranking``, in ``space``
    order, plus the dropped ones with the reason."""
    if k < 1:
        raise OptionError("k", f" must be >= 1, got {k}")
    from autotransfer.study.results.report import fmt

    kept = {s.label for s in ranking[:k]}
    dropped = []
    for place, s in enumerate(ranking, start=1):
        if s.label in kept:
            continue
        why = s.error or f"{by} {fmt(s.scores.get(by), '.4g')} ranks #{place} of {len(ranking)}"
        dropped.append((s.label, why))
    narrowed = space.model_copy(update={
        "backbones": [b for b in space.backbones if b.label in kept]
    })
    return narrowed, dropped


def narrow_space(study, space, data, k: int, *, by: str = DEFAULT_BY, samples: int =
                 DEFAULT_SAMPLES, device="cpu", seed: int = 0, trust_remote_code: bool = False,
                 on_score=None):
    """``space`` with the ``k`` best backbones, for ``search --prescreen K``.

    The first search of a study runs the pre-screen and records the kept labels on the study;
    a resumed search (or another worker) reuses them, since a study's backbone choices must
    never change. Returns ``(space, ranking, dropped)``; ``ranking`` is empty when reused.
    """
    saved = StudyRecord.of(study).prescreen
    if saved is not None:
        kept = set(saved["kept"])
        known = {b.label for b in space.backbones}
        if not kept <= known:
            raise AutotransferError(
                f"study {study.study_name!r} was pre-screened to {sorted(kept)}, which this "
                "space does not hold; pass the original space or a new study name"
            )
        narrowed = space.model_copy(update={
            "backbones": [b for b in space.backbones if b.label in kept]
        })
        dropped = [(label, "dropped by this study's earlier pre-screen")
                   for label in known - kept]
        return narrowed, [], dropped
    ranking = prescreen(data, space, samples=samples, by=by, device=device, seed=seed,
                        trust_remote_code=trust_remote_code, on_score=on_score)
    narrowed, dropped = keep_top(space, ranking, k, by)
    set_prescreen(study, {
        "by": by, "k": k, "samples": samples, "kept": [b.label for b in narrowed.backbones],
        "scores": {s.label: {**s.scores, "seconds": round(s.seconds, 2)} for s in ranking},
    })
    return narrowed, ranking, dropped


def as_json(ranking: Sequence[Score], by: str) -> list[dict[str, Any]]:
    """The ranking as JSON-ready rows (``autotransfer prescreen --json``)."""
    return [
        {"rank": place, "backbone": s.label, "id": s.backbone, "pretrained": s.pretrained,
         "parameters": s.parameters, "dim": s.dim, "samples": s.samples,
         "seconds": round(s.seconds, 3), "by": by,
         "scores": {k: v for k, v in s.scores.items() if k != "params"}, "error": s.error}
        for place, s in enumerate(ranking, start=1)
    ]
