"""Long lists in one-line messages: a count and the first names, so that a warning about 300
classes or 10,000 files stays one readable line."""

from __future__ import annotations

from collections.abc import Iterable

#: Names shown before the rest is counted.
SHOWN = 8


def few(items: Iterable[object], limit: int = SHOWN, *, last: int = 0, noun: str = "") -> str:
    """``a, b, c`` for a short list; ``a, b, ..., y, z (250 in all)`` for a long one.

    Args:
        items: what to list (``str()`` of each).
        limit: at most this many are shown (the first ``limit - last`` and the ``last`` last).
        last: how many of the shown ones come from the end (e.g. the smallest classes of a
            list sorted by size).
        noun: named in the count, e.g. ``classes`` gives ``(250 classes in all)``.
    """
    names = [str(item) for item in items]
    if len(names) <= limit:
        return ", ".join(names)
    head = names[:limit - last]
    tail = names[len(names) - last:] if last else []
    total = f"{len(names)} {noun} in all" if noun else f"{len(names)} in all"
    return ", ".join([*head, "...", *tail]) + f" ({total})"
