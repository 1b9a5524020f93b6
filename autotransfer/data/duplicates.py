"""The same content twice: in two splits (a leak), or under two labels (a contradiction).

Files are compared by SHA-256 of their bytes (``hashlib``), hashing only files of a size that
occurs more than once, so a clean dataset costs one ``stat`` per file. Texts are compared after
normalisation: Unicode NFC, letter case folded, runs of white space made one space.
"""

from __future__ import annotations

import hashlib
import unicodedata
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autotransfer.data.dataset import DataWarning, LabelledData


def text_key(text: str) -> str:
    """What makes two texts the same: NFC, case folded, white space collapsed."""
    return " ".join(unicodedata.normalize("NFC", text).casefold().split())


def _samples(data: LabelledData) -> list[tuple[str, Any, int, str]]:
    """``(split, sample, class index, key)`` of every sample; files of a unique size get a
    key of their own (no hashing)."""
    rows = []
    for name, split in data.splits().items():
        samples = split.paths if split.paths else (split.texts or [])
        rows += [(name, s, int(c), "") for s, c in zip(samples, split.labels, strict=True)]
    if any(isinstance(s, str) for _, s, _, _ in rows):
        return [(n, s, c, text_key(s)) for n, s, c, _ in rows]
    if rows and not isinstance(rows[0][1], Path):  # dataset rows: bytes are read either way
        return [(n, s, c, hashlib.sha256(s.read_bytes()).hexdigest()) for n, s, c, _ in rows]
    sizes = [s.stat().st_size for _, s, _, _ in rows]
    seen: dict[int, int] = {}
    for size in sizes:
        seen[size] = seen.get(size, 0) + 1
    return [(n, s, c, hashlib.sha256(s.read_bytes()).hexdigest() if seen[size] > 1
             else f"unique {i}")
            for i, ((n, s, c, _), size) in enumerate(zip(rows, sizes, strict=True))]


@dataclass
class Duplicates:
    """Samples with the same content.

    Attributes:
        across_splits: ``(first, other)`` pairs in two different splits.
        contradictions: ``(samples, class names)`` of content found under two or more labels,
            in any split.
    """

    across_splits: list[tuple[Any, Any]] = field(default_factory=list)
    #: the two splits of each pair in ``across_splits``
    split_names: list[tuple[str, str]] = field(default_factory=list)
    contradictions: list[tuple[list[Any], list[str]]] = field(default_factory=list)


def find_duplicates(data: LabelledData) -> Duplicates:
    """The samples of ``data`` that share their content (see the module docstring)."""
    groups: dict[str, list[tuple[str, Any, int]]] = {}
    for split, sample, label, key in _samples(data):
        groups.setdefault(key, []).append((split, sample, label))
    found = Duplicates()
    for members in groups.values():
        if len(members) < 2:
            continue
        first_split, first, _ = members[0]
        splits_seen = {first_split}
        for split, sample, _ in members[1:]:
            if split not in splits_seen:
                found.across_splits.append((first, sample))
                found.split_names.append((first_split, split))
                splits_seen.add(split)
        labels = sorted({label for _, _, label in members})
        if len(labels) > 1:
            found.contradictions.append(([s for _, s, _ in members],
                                         [data.classes[i] for i in labels]))
    return found


def _shown(sample: Any) -> str:
    if isinstance(sample, str):
        return repr(sample if len(sample) <= 40 else sample[:37] + "...")
    return str(sample)


def _pair(a: Any, b: Any, splits: tuple[str, str]) -> str:
    """``a = b`` for files; a text once (or both spellings) with its two splits."""
    if not isinstance(a, str):
        return f"{a} = {b}"
    same = _shown(a) if a == b else f"{_shown(a)} = {_shown(b)}"
    return f"{same} (in {splits[0]} and {splits[1]})" if all(splits) else same


def duplicate_warnings(data: LabelledData, found: Duplicates | None = None) -> list[str]:
    """One line for the samples in two splits and one for the contradictory labels."""
    found = find_duplicates(data) if found is None else found
    noun = "text" if data.modality == "text" else "file"
    lines = []
    pairs = found.across_splits
    if pairs:
        names = found.split_names or [("", "")] * len(pairs)
        listed = ", ".join(_pair(a, b, where) for (a, b), where in zip(pairs[:5], names,
                                                                        strict=False))
        more = f" and {len(pairs) - 5} more" if len(pairs) > 5 else ""
        lines.append(f"{len(pairs)} {noun}(s) appear in two splits, which inflates validation "
                     f"and test scores: {listed}{more}")
    clashes = found.contradictions
    if clashes:
        listed = ", ".join(" = ".join(map(_shown, samples[:2])) + f" ({', '.join(classes)})"
                           for samples, classes in clashes[:5])
        more = f" and {len(clashes) - 5} more" if len(clashes) > 5 else ""
        lines.append(f"{len(clashes)} {noun}(s) have identical content under different labels "
                     f"(contradictory labels; a model cannot learn both): {listed}{more}")
    return lines


def cross_split_duplicates(data: LabelledData) -> list[tuple[Any, Any]]:
    """Pairs of samples (files, or texts after normalisation) in two different splits."""
    return find_duplicates(data).across_splits


def warn_cross_split_duplicates(data: LabelledData) -> list[tuple[Any, Any]]:
    """Warn (``DataWarning``) about samples in two splits and about identical content under
    different labels; return the cross-split pairs."""
    found = find_duplicates(data)
    for line in duplicate_warnings(data, found):
        warnings.warn(DataWarning(line), stacklevel=2)
    return found.across_splits
