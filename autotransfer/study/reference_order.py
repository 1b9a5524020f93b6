"""The order reference trials run in: the pre-screen's rank, then the measured cost.

Reference trials are the floor of a search; under a small budget they may be all it runs, so
the most informative cheap ones go first. Linear probes come before default configurations
(a probe fits a head on cached frozen features: seconds); within each kind, backbones are
ordered by the pre-screen's score (best first, the ranking the study recorded with
``prescreen``), and equal scores by the pre-screen's measured seconds per backbone (a timed
forward pass over the same sample, the cost known before any trial), cheapest first. Without
a pre-screen record the space's order stays.
"""

from __future__ import annotations

from typing import Any

KIND_ORDER = ("linear_probe", "default")


def order_references(planned: list[tuple[str, dict[str, Any]]],
                     prescreen: dict[str, Any] | None) -> list[tuple[str, dict[str, Any]]]:
    """``planned`` (``(kind, params)`` pairs, as :func:`references.reference_params` gives)
    sorted by kind, then by the pre-screen's score of their backbone (higher first), then by
    its measured seconds (lower first); the space's order breaks the remaining ties."""
    scores = (prescreen or {}).get("scores") or {}
    by = (prescreen or {}).get("by", "logme")

    def key(item: tuple[int, tuple[str, dict[str, Any]]]):
        place, (kind, params) = item
        found = scores.get(params["backbone"], {})
        score = found.get(by)
        seconds = found.get("seconds")
        return (KIND_ORDER.index(kind) if kind in KIND_ORDER else len(KIND_ORDER),
                -score if isinstance(score, (int, float)) else 0.0,
                seconds if isinstance(seconds, (int, float)) else 0.0, place)

    return [pair for _, pair in sorted(enumerate(planned), key=key)]


def prunable(kind: str | None) -> bool:
    """Whether the pruner may stop a trial of reference ``kind`` (None: a sampled trial).

    A default configuration takes part in the rungs like any trial: at a small budget a full
    run of every backbone's default is what crowded the sampled trials out. The linear probe
    always finishes (it costs a head fit on cached features), so the floor is never empty.
    """
    return kind != "linear_probe"
