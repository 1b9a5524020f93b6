"""The data's leaf types: splits, a labelled dataset, what a reader found, the data warning.

Every other module of :mod:`autotransfer.data` imports these; this module imports none of them.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


class DataWarning(UserWarning):
    """Something in the data deserves the user's attention but does not stop the search."""


@dataclass
class Split:
    """The samples of one split and their class indices: files (images, audio) or texts."""

    paths: list[Path]
    labels: np.ndarray
    texts: list[str] | None = None

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, index: np.ndarray) -> Split:
        texts = None if self.texts is None else [self.texts[i] for i in index]
        paths = [self.paths[i] for i in index] if self.paths else []
        return Split(paths, self.labels[index], texts)


@dataclass
class LabelledData:
    """A classification dataset: class names and train / val / optional test splits."""

    modality: str
    classes: list[str]
    train: Split
    val: Split
    test: Split | None
    source: Path
    cache: dict[Any, Any] = field(default_factory=dict, repr=False)
    #: what reading noticed (files not used, label spellings); reported by ``check_data``
    notes: list[str] = field(default_factory=list, repr=False)
    #: where encoded splits are kept: None (the default store), a folder, or "memory"
    store: Any = field(default=None, repr=False)
    #: how the data was read, when a reader has more to say than the modality (``inspect``)
    origin: str = field(default="", repr=False)

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    def splits(self) -> dict[str, Split]:
        found = {"train": self.train, "val": self.val}
        if self.test is not None:
            found["test"] = self.test
        return found


@dataclass
class Unused:
    """Files found where data was expected but not used, with why; named in one warning."""

    files: list[tuple[Path, str]] = field(default_factory=list)

    def add(self, path: Path, reason: str) -> None:
        self.files.append((path, reason))

    def message(self) -> str | None:
        """One line grouping the files by reason, with counts and a few names; None if none."""
        if not self.files:
            return None
        groups: dict[str, list[Path]] = {}
        for path, reason in self.files:
            groups.setdefault(reason, []).append(path)
        parts = []
        for reason, paths in groups.items():
            names = ", ".join(str(p) for p in paths[:3])
            more = f" and {len(paths) - 3} more" if len(paths) > 3 else ""
            parts.append(f"{len(paths)} {reason} ({names}{more})")
        return f"not used: {len(self.files)} file(s): " + "; ".join(parts)

    def warn(self) -> None:
        text = self.message()
        if text:
            warnings.warn(DataWarning(text), stacklevel=3)


@dataclass
class ReadResult:
    """What a modality's reader found: ``(sample, raw label)`` pairs by split, the file or
    folder each split came from, and the files it did not use."""

    parts: dict[str, list[tuple[Any, Any]]]
    where: dict[str, Path]
    unused: Unused = field(default_factory=Unused)
