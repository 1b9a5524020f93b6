"""Checks before trial 1: every problem of a dataset in one report.

Run by search, train, prescreen and ``inspect`` alike (:func:`check_data`):

- every file is decoded once by the modality's check (images: Pillow, fully, as training will;
  audio: libsndfile, every sample): unreadable, empty, not-audio files, and clips holding NaN,
  infinite or absurd samples are unusable. Up to ``max_unusable`` (5%) of all files are skipped
  and named; more is an error naming them, since the data is then more likely at fault. The
  same rule holds for every modality;
- clips that are silent after the stereo downmix are named;
- a class that the validation split does not hold is named;
- class imbalance beyond 10:1 in training is reported with the counts and a suggestion of
  ``metric: macro_f1``;
- notes gathered while reading (files not used, label spellings) join the report.
"""

from __future__ import annotations

import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from autotransfer.contract.collect import get_modality
from autotransfer.data.dataset import DataWarning, LabelledData
from autotransfer.errors import AutotransferError, DataError

IMBALANCE_LIMIT = 10.0


@dataclass
class CheckReport:
    """What the checks found: skipped files with reasons, warnings, and the error if any."""

    skipped: list[tuple[Path, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    error: str | None = None
    noun: str = "file"

    def message(self) -> str | None:
        """All skipped files and warnings as one line (None when there is nothing to say)."""
        parts = []
        if self.skipped:
            parts.append(f"skipped {len(self.skipped)} unusable {self.noun}(s): "
                         + _listed(self.skipped))
        parts += self.warnings
        return "; ".join(parts) or None


def _listed(items: list[tuple[Path, str]], limit: int = 20) -> str:
    shown = ", ".join(f"{p} ({why})" for p, why in items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


def _file_problems(data, check) -> tuple[list[tuple[Path, str]], list[tuple[Path, str]]]:
    paths = [p for split in data.splits().values() for p in split.paths]
    workers = min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(workers) as pool:  # Pillow and libsndfile release the GIL
        results = list(pool.map(check, paths))
    bad = [(p, why) for p, (why, _) in zip(paths, results, strict=True) if why]
    noted = [(p, note) for p, (_, note) in zip(paths, results, strict=True) if note]
    return bad, noted


def examine(data, *, max_unusable: float = 0.05) -> CheckReport:
    """The report for ``data`` (a LabelledData), without changing it."""
    modality = get_modality(data.modality)
    report = CheckReport(warnings=list(getattr(data, "notes", [])), noun=modality.noun)
    if modality.check is not None:
        bad, noted = _file_problems(data, modality.check)
        report.skipped = bad
        for note in sorted({n for _, n in noted}):
            named = [(p, n) for p, n in noted if n == note]
            report.warnings.append(f"{len(named)} clip(s) {note}: "
                                   + ", ".join(str(p) for p, _ in named[:20]))
        total = sum(len(s) for s in data.splits().values())
        if bad and len(bad) > max_unusable * total:
            report.error = (f"{len(bad)} of {total} {modality.noun}s are unusable (more than "
                            f"{max_unusable:.0%}): {_listed(bad)}")
            return report
    skipped = {p for p, _ in report.skipped}
    train = _counts(data.train, data.n_classes, skipped)
    val = _counts(data.val, data.n_classes, skipped)
    missing = [data.classes[i] for i in range(data.n_classes) if val[i] == 0]
    from autotransfer.listing import few  # hundreds of classes: a count and the first names

    if missing:
        report.warnings.append(
            f"the validation split holds no sample of class(es) {few(map(repr, missing))}; "
            "their scores are not measured (add samples, or more to training so that "
            "val_fraction takes some)")
    present = train[train > 0]
    if len(present) and present.max() > IMBALANCE_LIMIT * present.min():
        counts = list(zip(data.classes, train.tolist(), strict=True))
        if len(counts) > 8:  # many classes: the largest and the smallest
            counts.sort(key=lambda c: -c[1])
        shown = few((f"{c} {n}" for c, n in counts), last=4, noun="classes")
        report.warnings.append(
            f"classes are imbalanced beyond {IMBALANCE_LIMIT:.0f}:1 in training ({shown}); "
            "accuracy then rewards the largest class: consider metric: macro_f1 in the space")
    return report


def _counts(split, n_classes: int, skipped: set[Path]) -> np.ndarray:
    labels = split.labels
    if split.paths and skipped:
        keep = np.array([p not in skipped for p in split.paths], dtype=bool)
        labels = labels[keep]
    return np.bincount(labels, minlength=n_classes)


def drop(data, paths: set[Path]) -> None:
    """Remove ``paths`` from every split of ``data``."""
    for name, split in data.splits().items():
        keep = [i for i, p in enumerate(split.paths) if p not in paths]
        if split.paths and len(keep) < len(split):
            setattr(data, name, split.subset(np.array(keep, dtype=np.int64)))


def check_data(data, *, max_unusable: float = 0.05) -> CheckReport:
    """Check ``data`` before trial 1: drop unusable files and warn once with the whole report.

    Raises:
        DataError: more than ``max_unusable`` of the files are unusable (names them).
    """
    report = examine(data, max_unusable=max_unusable)
    if report.error:
        raise DataError(report.error)
    drop(data, {p for p, _ in report.skipped})
    text = report.message()
    if text:
        warnings.warn(DataWarning(text), stacklevel=2)
    return report


def check_images(data: LabelledData, *, max_unreadable: float = 0.05) -> list[Path]:
    """Check every image before any trial (see :func:`check_data`); returns the skipped files."""
    return [p for p, _ in check_data(data, max_unusable=max_unreadable).skipped]


def check_audio(data: LabelledData) -> list[Path]:
    """Check every clip before any trial (see :func:`check_data`); returns the skipped files."""
    return [p for p, _ in check_data(data).skipped]


def check_modality(backbone_ids, data) -> None:
    """Every backbone of ``backbone_ids`` takes ``data``'s modality (search, prescreen and
    train ask the same question).

    Raises:
        AutotransferError: one line naming the first backbone of another modality.
    """
    from autotransfer.contract.collect import get_registry

    for backbone_id in backbone_ids:
        modality = get_registry().get(backbone_id).modality
        if modality != data.modality:
            raise AutotransferError(
                f"{backbone_id} is a {modality} backbone, but {data.source} holds "
                f"{data.modality} data; pick {data.modality} backbones "
                f"(the registry's entries with modality {data.modality!r})"
            )
