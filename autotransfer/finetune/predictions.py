"""A trained model's class probabilities per split, packed small enough to keep in a study.

What an ensemble of a study's trials is built from (:mod:`autotransfer.finetune.ensemble`),
without re-running any trial: each split's probabilities ``(N, C)`` as float16 and its labels
``(N,)`` (the split's fixed order, so that the trials' rows align; the labels let a reader check
it), in one ``numpy.savez_compressed`` archive, base64-encoded into a JSON-ready string (an
Optuna user attribute). A 10-class, 300-example split takes about 8 KB of text per trial
(8,057 characters measured for softmax outputs: float16's mantissas barely compress), float16
keeps about 3 significant digits of each probability (an average of a few models'
probabilities moves by at most ~1e-3).
"""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping

import numpy as np

#: What :func:`encode` writes (a reader refuses another).
FORMAT = "npz-float16-base64/1"
#: An encoding longer than this many characters is not kept (a split of ~100,000 examples of
#: 10 classes): every read of the study's trials would carry it.
LIMIT_CHARS = 4_000_000


def encode(splits: Mapping[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, str]:
    """``{"format": FORMAT, "npz": base64 text}`` of ``{split: (probabilities (N, C),
    labels (N,))}``.

    Raises:
        ValueError: a split whose probabilities are not ``(N, C)`` with N labels.
    """
    arrays: dict[str, np.ndarray] = {}
    for split, (probs, labels) in splits.items():
        probs, labels = np.asarray(probs), np.asarray(labels)
        if probs.ndim != 2 or len(probs) != len(labels):
            raise ValueError(f"{split}: probabilities must be (N, C) for N={len(labels)} "
                             f"labels, got shape {probs.shape}")
        arrays[split] = probs.astype(np.float16)
        arrays[f"{split}_labels"] = labels.astype(np.int32)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)  # type: ignore[arg-type]  # numpy's stub: allow_pickle
    return {"format": FORMAT, "npz": base64.b64encode(buffer.getvalue()).decode("ascii")}


def decode(stored: Mapping[str, str]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{split: (probabilities (N, C) float32, labels (N,) int64)}`` of :func:`encode`'s
    mapping.

    Raises:
        ValueError: another format, or text that is not such an archive.
    """
    if stored.get("format") != FORMAT:
        raise ValueError(f"predictions: unknown format {stored.get('format')!r}; expected "
                         f"{FORMAT!r}")
    try:
        with np.load(io.BytesIO(base64.b64decode(stored["npz"])), allow_pickle=False) as found:
            arrays = {k: found[k] for k in found.files}
    except (KeyError, ValueError, OSError) as exc:
        raise ValueError(f"predictions: not a readable archive ({exc})") from None
    return {k: (arrays[k].astype(np.float32), arrays[f"{k}_labels"].astype(np.int64))
            for k in arrays if not k.endswith("_labels")}
