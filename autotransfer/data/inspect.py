"""``autotransfer inspect``: what a search would read from DATA, without training.

The same code path as ``search``: :func:`~autotransfer.data.load_data` then the checks before
trial 1 (:func:`~autotransfer.data.checks.examine`) and the cross-split duplicate check.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from autotransfer.data.options import DataOptions


@dataclass
class Inspection:
    """What a search would read.

    Attributes:
        modality: ``image``, ``audio``, ``text`` or a plugin's.
        classes: class names in the model's order.
        counts: ``{split: {class: n}}`` after skipping unusable files.
        skipped: ``(path, reason)`` of every file a search would skip.
        warnings: everything else worth knowing (files not used, label spellings, imbalance...).
        error: why a search would stop before trial 1 (too many unusable files), or None.
        duplicates: every sample found in two splits, ``{"samples": [a, b], "splits": [s, t]}``
            (the warnings list 5 of them).
        contradictions: every content found under two or more labels, ``{"samples": [...],
            "classes": [...]}``.
    """

    modality: str
    classes: list[str]
    counts: dict[str, dict[str, int]]
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    error: str | None = None
    origin: str = ""  # how it was read, e.g. a Hugging Face dataset's columns
    duplicates: list[dict[str, list[str]]] = field(default_factory=list)
    contradictions: list[dict[str, list[str]]] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        """A JSON-ready dict: modality, classes, counts, skipped [{path, reason}], warnings,
        error, origin, duplicates [{samples, splits}], contradictions [{samples, classes}]."""
        return {
            "modality": self.modality,
            "classes": list(self.classes),
            "counts": self.counts,
            "skipped": [{"path": str(p), "reason": r} for p, r in self.skipped],
            "warnings": list(self.warnings),
            "error": self.error,
            "origin": self.origin,
            "duplicates": self.duplicates,
            "contradictions": self.contradictions,
        }


def inspect(
    data: str | Path,
    *,
    data_options: DataOptions | None = None,
    val_fraction: float = 0.2,
    seed: int = 0,
    **given: object,
) -> Inspection:
    """Read ``data`` as ``autotransfer search`` would and say what it holds, without training.

    Args:
        data: a folder of class folders, split folders, a CSV / TSV / JSONL table, or a
            Hugging Face dataset.
        data_options: how to read it (:class:`~autotransfer.data.options.DataOptions`: modality,
            default detected; columns), as a search would; or the same as keywords
            (``modality="text"``, ``text_column=``, ``label_column=``, ``image_column=``,
            ``audio_column=``, ``columns=``), as :func:`~autotransfer.data.load.load_data`.
        val_fraction, seed: how a validation split is held out when there is none.

    Returns:
        An :class:`Inspection`; its ``error`` is set when a search would stop at the checks.

    Raises:
        DataError: the data cannot be read at all (one line naming the file, line or folder).
        OptionError: an unknown keyword, or keywords beside ``data_options``.

    Example:
        >>> import autotransfer
        >>> autotransfer.inspect("data/fashion-mnist").classes[:2]  # doctest: +SKIP
        ['ankle_boot', 'bag']
    """
    from autotransfer.data.checks import drop, examine
    from autotransfer.data.duplicates import duplicate_warnings, find_duplicates
    from autotransfer.data.load import load_data

    dataset = load_data(data, val_fraction=val_fraction, seed=seed,
                        data_options=data_options, **given)
    report = examine(dataset)
    duplicates, contradictions = [], []
    if report.error is None:
        drop(dataset, {p for p, _ in report.skipped})
        found = find_duplicates(dataset)
        report.warnings += duplicate_warnings(dataset, found)
        splits = found.split_names or [("", "")] * len(found.across_splits)
        duplicates = [{"samples": [str(a), str(b)], "splits": list(where)}
                      for (a, b), where in zip(found.across_splits, splits, strict=True)]
        contradictions = [{"samples": [str(x) for x in samples], "classes": list(classes)}
                          for samples, classes in found.contradictions]
    counts = {}
    for name, split in dataset.splits().items():
        n = [int(x) for x in _bincount(split.labels, dataset.n_classes)]
        counts[name] = dict(zip(dataset.classes, n, strict=True))
    return Inspection(dataset.modality, list(dataset.classes), counts, report.skipped,
                      report.warnings, report.error, dataset.origin, duplicates, contradictions)


def _bincount(labels, n: int):
    import numpy as np

    return np.bincount(labels, minlength=n)
