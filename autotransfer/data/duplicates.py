"""The same content twice: files (by SHA-256, through hashlib) that appear in two splits."""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path

from autotransfer.data.dataset import DataWarning, LabelledData


def cross_split_duplicates(data: LabelledData) -> list[tuple[Path, Path]]:
    """Pairs of files with the same content in two different splits (a leak between them).

    Only files of equal size are hashed, so clean datasets cost one ``stat`` per file.
    """
    by_size: dict[int, list[tuple[str, Path]]] = {}
    for name, split in data.splits().items():
        for path in split.paths:
            by_size.setdefault(path.stat().st_size, []).append((name, path))
    pairs = []
    for candidates in by_size.values():
        if len({name for name, _ in candidates}) < 2:
            continue
        first_seen: dict[str, tuple[str, Path]] = {}
        for name, path in candidates:
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            if digest in first_seen and first_seen[digest][0] != name:
                pairs.append((first_seen[digest][1], path))
            first_seen.setdefault(digest, (name, path))
    return pairs


def warn_cross_split_duplicates(data: LabelledData) -> list[tuple[Path, Path]]:
    """Warn (``DataWarning``) about files that appear in two splits; return the pairs."""
    pairs = cross_split_duplicates(data)
    if pairs:
        listed = ", ".join(f"{a} = {b}" for a, b in pairs[:5])
        more = f" and {len(pairs) - 5} more" if len(pairs) > 5 else ""
        warnings.warn(
            DataWarning(
                f"{len(pairs)} file(s) appear in two splits, which inflates validation and "
                f"test scores: {listed}{more}"
            ),
            stacklevel=2,
        )
    return pairs
