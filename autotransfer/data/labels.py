"""Labels as the user means them: Unicode NFC, numbers as numbers, sorted as numbers.

- Every label (folder name, CSV cell, JSON value) is put in Unicode NFC
  (``unicodedata.normalize``), so a folder copied from macOS (NFD) names the same class as one
  typed on Linux or Windows, and stripped of surrounding spaces.
- A numeric label is written in its shortest form: ``1``, ``1.0``, ``"1"`` and ``1e0`` are the
  class ``1``; ``0.50`` is ``0.5``. Integers written with leading zeros (``007``) are kept as
  written: they are names, as in a folder called ``007``.
- When every class is a number, classes are sorted as numbers (``1, 2, 10``), else as text;
  this order is the model's class order everywhere (best.yaml, predict, reports, dashboard).
- Labels that differ only in letter case, or only by surrounding spaces, are warned about with
  both spellings (case differences stay two classes; spaces are stripped).
"""

from __future__ import annotations

import math
import re
import unicodedata
from typing import Any

_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def _number(text: str) -> float | None:
    if not _NUMBER.fullmatch(text) or re.fullmatch(r"[+-]?0\d+", text):
        return None
    value = float(text)
    return value if math.isfinite(value) else None


def normalize_label(raw: Any) -> str:
    """The class name of a raw label: NFC, stripped, numbers in shortest form.

    Example:
        >>> [normalize_label(x) for x in (2, 2.0, "2", " 2.00 ", "007", "Cafe\\u0301")]
        ['2', '2', '2', '2', '007', 'Café']
    """
    if isinstance(raw, bool):
        text = str(raw).lower()
    elif isinstance(raw, int | float):
        text = repr(raw)
    else:
        text = "" if raw is None else str(raw)
    text = unicodedata.normalize("NFC", text).strip()
    value = _number(text)
    if value is None:
        return text
    return str(int(value)) if value.is_integer() else repr(value)


def normalize_parts(parts: dict[str, list[tuple[Any, Any]]]
                    ) -> tuple[dict[str, list[tuple[Any, str]]], dict[str, set[str]]]:
    """``(sample, raw label)`` pairs by split -> ``(sample, class)`` pairs, plus the spellings
    (NFC, unstripped) read as each class, for :func:`label_warnings`."""
    spellings: dict[str, set[str]] = {}
    out = {}
    for split, items in parts.items():
        out[split] = []
        for sample, raw in items:
            label = normalize_label(raw)
            written = unicodedata.normalize("NFC", raw) if isinstance(raw, str) else str(raw)
            spellings.setdefault(label, set()).add(written)
            out[split].append((sample, label))
    return out, spellings


def sort_classes(classes: set[str] | list[str]) -> list[str]:
    """Classes sorted as numbers when all are numbers (``1, 2, 10``), else as text."""
    values = [_number(c) for c in classes]
    if classes and all(v is not None for v in values):
        return [c for _, c in sorted(zip(values, classes, strict=True))]
    return sorted(classes)


def label_warnings(spellings: dict[str, set[str]]) -> list[str]:
    """Warnings for classes whose names differ only in case, or that were written with spaces.

    ``spellings`` maps each class to the raw labels (NFC) that were read as it.
    """
    out = []
    for cls, raw in sorted(spellings.items()):
        spaced = sorted(r for r in raw if r != r.strip())
        if spaced:
            shown = ", ".join(repr(r) for r in spaced[:3])
            out.append(f"labels {shown} have surrounding spaces; read as the class {cls!r}")
    by_fold: dict[str, list[str]] = {}
    for cls in spellings:
        by_fold.setdefault(cls.casefold(), []).append(cls)
    for names in by_fold.values():
        if len(names) > 1:
            shown = " and ".join(repr(n) for n in sorted(names))
            out.append(f"classes {shown} differ only in letter case; they are "
                       "different classes unless you rename one")
    return out
