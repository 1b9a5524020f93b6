"""Ranking metadata a zoo offers for its candidates, and the ranker over it (#39).

A zoo calls ``register(RankingEntry(...))`` from its ``register_ranking`` hook; :func:`rank`
keeps the entries within the user's bounds and orders them by their published score (image:
ImageNet-1k top-1 from timm's tables), best first. No weight is downloaded.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from autotransfer.errors import OptionError

DEVICES = ("cpu", "gpu")
_SUFFIX = {"": 1, "K": 1e3, "M": 1e6, "B": 1e9, "G": 1e9}


@dataclass(frozen=True)
class RankingEntry:
    """What ranks one candidate, with where each figure comes from.

    Attributes:
        id: the backbone id (``timm/mobilenetv3_large_100.ra_in1k``).
        modality: ``image``, ``text``, ``audio`` or a plugin's.
        score: the prior, higher ranks first (e.g. ImageNet-1k top-1 in %).
        signal: what ``score`` is, in words (``ImageNet-1k top-1 %``, ``parameters``).
        source: where ``score`` was published (a table file and its date, a paper).
        params: parameter count, or None when unknown.
        throughput: images (samples) per second by device (``cpu``, ``gpu``).
        throughput_source: the benchmark row of each ``throughput`` figure.
        input_size: the evaluated input size in pixels, or None.
        license: the weights' licence (``apache-2.0``), or None when not published.
        pretrain: pretraining data tags (``in1k``, ``in22k``), or None.
        loads_offline: True when the weights load here without a download.
        architecture: candidates of one architecture share it; the ranker keeps its best.
        gmacs: multiply-accumulates of one image's forward pass, in billions, at
            ``gmacs_size`` pixels (timm's benchmark row), or None; the device-aware prior
            (:mod:`autotransfer.study.budget.prior`) reads it.
        gmacs_size: the image size of ``gmacs``.
    """

    id: str
    modality: str
    score: float
    signal: str
    source: str
    params: int | None = None
    throughput: dict[str, float] = field(default_factory=dict)
    throughput_source: dict[str, str] = field(default_factory=dict)
    input_size: int | None = None
    license: str | None = None
    pretrain: str | None = None
    loads_offline: bool = False
    architecture: str | None = None
    gmacs: float | None = None
    gmacs_size: int | None = None


def parse_count(value: str | int | float, what: str = "max_params") -> int:
    """``10M`` -> 10_000_000 (K, M, B/G suffixes; a plain number is a count).

    Raises:
        OptionError: not a number with an optional K/M/B suffix.
    """
    if isinstance(value, int | float) and not isinstance(value, bool):
        return int(value)
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([KMBG]?)\s*", str(value), re.IGNORECASE)
    if not match:
        raise OptionError(what, f" must be a count such as 10M, 500K or 2000000, got {value!r}")
    return int(float(match[1]) * _SUFFIX[match[2].upper()])


def rank(entries: Iterable[RankingEntry], n: int | None = None, *,
         max_params: int | None = None, min_throughput: float | None = None,
         device: str = "cpu", license: str | None = None, offline_only: bool = False,
         front: str | None = None) -> list[RankingEntry]:
    """The best ``n`` entries within the bounds, highest ``score`` first.

    Args:
        entries: candidates (any zoo's).
        n: how many to keep (None: all).
        max_params: keep entries of at most this many parameters (unknown counts drop out).
        min_throughput: keep entries whose ``device`` throughput (images/s) is at least this
            (entries without that row drop out).
        device: ``cpu`` or ``gpu``: which throughput row the bound reads.
        license: keep entries whose licence contains this text (case-insensitive).
        offline_only: keep entries that load without a download.
        front: ``cpu`` or ``gpu``: keep only the accuracy/throughput front on that device's
            row among the entries within the other bounds (:func:`pareto_front`).

    Raises:
        OptionError: unknown ``device`` or ``front``.
    """
    for name, value in (("device", device), ("front", front)):
        if value is not None and value not in DEVICES:
            raise OptionError(name, f" must be one of {', '.join(DEVICES)}, got {value!r}")
    kept = [
        e for e in entries
        if (max_params is None or (e.params is not None and e.params <= max_params))
        and (min_throughput is None or e.throughput.get(device, -1.0) >= min_throughput)
        and (license is None or license.lower() in (e.license or "").lower())
        and (not offline_only or e.loads_offline)
    ]
    # a packaged (offline) copy of an architecture ranks before the hub's copy of equal score
    kept.sort(key=lambda e: (-e.score, not e.loads_offline, e.id))
    best: list[RankingEntry] = []
    seen: set[str] = set()
    for entry in kept:
        key = entry.architecture or entry.id
        if key in seen:
            continue
        seen.add(key)
        best.append(entry)
    if front is not None:
        best = pareto_front(best, front)
    return best if n is None else best[:n]


def pareto_front(entries: list[RankingEntry], device: str) -> list[RankingEntry]:
    """The entries that no other entry beats on both ``score`` and ``device`` throughput
    (higher is better on both, at least as good on one and better on the other), in the
    order given; an entry without that throughput row drops out. The "accuracy/speed
    trade-off" front that timm's published benchmark plots draw (Wightman, pytorch-image-models
    ``results/``). O(n log n): sorted by score, an entry is kept when it is faster than every
    entry of a higher score (ties in score: the faster one).
    """
    timed = [e for e in entries if device in e.throughput]
    order = sorted(timed, key=lambda e: (-e.score, -e.throughput[device]))
    kept: set[int] = set()
    fastest = float("-inf")
    for entry in order:
        speed = entry.throughput[device]
        if speed > fastest:
            kept.add(id(entry))
            fastest = speed
    return [e for e in entries if id(e) in kept]
