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
- Booleans are one class however written: ``True``, ``true``, ``TRUE`` and a JSON ``true`` are
  the class ``true`` (``false`` likewise).
- autotransfer trains single-label classifiers: a label that is a list (a JSON array) is an
  error; labels that look like several classes (``a,b``, ``a;b``, ``a|b`` whose parts are
  classes themselves, ``["a", "b"]``, one-hot vectors ``[0, 1, 1]``) are warned about
  (:func:`several_labels`).
"""

from __future__ import annotations

import ast
import math
import re
import unicodedata
from typing import Any

from autotransfer.errors import DataError

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
    if text.lower() in ("true", "false"):
        return text.lower()
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


_SINGLE = "autotransfer trains single-label classifiers: one class per row"
_JOINED = re.compile(r"\s*[,;|]\s*")


def check_single(raw: Any, where: str) -> None:
    """A DataError when a raw label is a list or a mapping (a JSON array or object).

    Raises:
        DataError: ``WHERE: label is a list (['a', 'b']); autotransfer trains ...``.
    """
    if isinstance(raw, list | tuple | dict):
        kind = "a mapping" if isinstance(raw, dict) else "a list"
        raise DataError(f"{where}: label is {kind} ({raw!r}); {_SINGLE}")


def _as_list(label: str) -> list | None:
    if not (label.startswith("[") and label.endswith("]")):
        return None
    try:
        value = ast.literal_eval(label)  # JSON lists and Python reprs alike
    except (ValueError, SyntaxError):
        return None
    return value if isinstance(value, list) else None


def several_labels(counts: dict[str, int]) -> str | None:
    """A warning when classes look like several classes in one cell, else None.

    ``counts`` maps each class to its number of rows. A class is flagged when it is a list
    (``["a", "b"]``, ``[0, 1, 0]``: one-hot or multi-hot) or when it splits at ``,`` ``;`` or
    ``|`` into parts that are all classes themselves (``sports,tech`` beside ``sports`` and
    ``tech``).
    """
    classes = set(counts)
    flagged = []
    for cls in sorted(classes):
        parts = [p for p in _JOINED.split(cls) if p]
        if _as_list(cls) is not None or (len(parts) > 1 and set(parts) <= classes):
            flagged.append(cls)
    if not flagged:
        return None
    rows = sum(counts[c] for c in flagged)
    shown = ", ".join(repr(c) for c in flagged[:4]) + (" ..." if len(flagged) > 4 else "")
    return (f"{rows} label(s) in {len(flagged)} class(es) look like several classes in one "
            f"cell ({shown}); {_SINGLE}, so each combination is trained as a class of its own "
            "(keep one class per row)")


def missing_class_hint(unknown: str, classes: list[str] | set[str]) -> str:
    """`` (training has 'Cat', which differs only in letter case)`` or ``""``."""
    near = sorted(c for c in classes if c.casefold() == unknown.casefold())
    if near:
        return f" (training has {near[0]!r}, which differs only in letter case)"
    return ""
