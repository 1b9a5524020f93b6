"""What a study's data was when the study began, to tell when a resumed study's data changed.

A fingerprint is small and JSON-ready (an optuna study user attribute): the sample count and a
SHA-256 digest (``hashlib``) per split. A split's digest covers each sample's class and its
identity: a text's content, a file's path relative to the data's folder and its size, a Hugging
Face row's dataset fingerprint and row number. Reading no file's bytes, it costs one ``stat``
per file.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from autotransfer.data.dataset import LabelledData


def _identity(sample: Any, root: Path) -> str:
    if isinstance(sample, str):
        return "text:" + sample
    if hasattr(sample, "fingerprint"):  # a Hugging Face row (autotransfer.data.hf_rows.HFRow)
        return "row:" + sample.fingerprint()
    path = Path(sample)
    try:
        name = str(path.relative_to(root))
    except ValueError:
        name = str(path)
    return f"file:{name}:{path.stat().st_size}"


def data_fingerprint(data: LabelledData) -> dict[str, Any]:
    """``{"classes": [...], "counts": {split: n}, "digests": {split: hex}}`` of ``data``."""
    root = data.source if data.source.is_dir() else data.source.parent
    counts, digests = {}, {}
    for name, split in data.splits().items():
        samples = split.paths if split.paths else (split.texts or [])
        digest = hashlib.sha256()
        for sample, label in zip(samples, split.labels.tolist(), strict=True):
            digest.update(f"{data.classes[label]}\0{_identity(sample, root)}\n".encode())
        counts[name] = len(split)
        digests[name] = digest.hexdigest()
    return {"classes": list(data.classes), "counts": counts, "digests": digests}


def changes(before: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """What changed between two fingerprints, per split: ``val 40 -> 38 samples``,
    ``train content changed``; empty when nothing did."""
    out = []
    if before.get("classes") != now.get("classes"):
        out.append(f"classes {', '.join(before.get('classes') or [])} -> "
                   f"{', '.join(now.get('classes') or [])}")
    for split in sorted(set(before.get("counts", {})) | set(now.get("counts", {})),
                        key=["train", "val", "test"].index):
        old, new = before.get("counts", {}).get(split), now.get("counts", {}).get(split)
        if old != new:
            out.append(f"{split} {old or 0} -> {new or 0} samples")
        elif before.get("digests", {}).get(split) != now.get("digests", {}).get(split):
            out.append(f"{split} content changed")
    return out
