"""Split names and the held-out validation split.

The names a folder, a file or a ``split`` value may have for each of our splits are in
:data:`SPLIT_DIRS`; a validation split that the data does not hold is taken out of training,
stratified and seeded (:func:`hold_out_val`).
"""

from __future__ import annotations

import numpy as np

from autotransfer.data.dataset import Split
from autotransfer.errors import DataError

#: the names of each split, as folders, files (``dev.csv``) and ``split`` values (any case)
SPLIT_DIRS = {"train": ("train",), "val": ("val", "valid", "validation", "dev"),
              "test": ("test",)}
_OURS = {name: ours for ours, names in SPLIT_DIRS.items() for name in names}
#: every accepted name, for messages
SPLIT_NAMES = ", ".join(name for names in SPLIT_DIRS.values() for name in names)


def split_of(value: object) -> str | None:
    """Our split (``train``, ``val``, ``test``) for a folder, file or ``split`` value such as
    ``Validation`` or ``dev``; an empty value is ``train``; None for any other name."""
    name = "" if value is None else str(value).strip().lower()
    return "train" if not name else _OURS.get(name)


def stratified_split(labels: np.ndarray, val_fraction: float, seed: int) -> np.ndarray:
    """Indices of a validation split holding ``val_fraction`` of each class (at least one).

    Classes with a single sample stay in training.
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction=}")
    rng = np.random.default_rng(seed)
    chosen = []
    for cls in np.unique(labels):
        members = np.flatnonzero(labels == cls)
        if len(members) < 2:
            continue
        n_val = min(len(members) - 1, max(1, round(len(members) * val_fraction)))
        chosen.append(rng.permutation(members)[:n_val])
    return np.sort(np.concatenate(chosen)) if chosen else np.array([], dtype=np.int64)


def hold_out_val(train: Split, val_fraction: float, seed: int, where) -> tuple[Split, Split]:
    """``(train, val)``: a stratified, seeded validation split taken out of ``train``.

    Raises:
        DataError: ``WHERE: too few samples to hold out a validation split``.
    """
    val_idx = stratified_split(train.labels, val_fraction, seed)
    if len(val_idx) == 0:
        raise DataError(f"{where}: too few samples to hold out a validation split")
    keep = np.setdiff1d(np.arange(len(train)), val_idx)
    return train.subset(keep), train.subset(val_idx)
