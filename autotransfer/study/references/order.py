"""The order reference trials run in: promise, then measured cost, cheapest informative first.

Reference trials are the floor of a search; under a small budget they may be all it runs, so
the most informative cheap ones go first (the space's ``budget.reference_order: ranked``).
Under a time budget the search starts with the best-ranked backbone's first fine-tune
(:func:`lead_first`, :func:`best_ranked`), then the rest in this order:

- linear probes come before default configurations (a probe fits a head on cached frozen
  features: seconds), ordered by the pre-screen's score when the study has one, else by cost;
- the default configurations (and LoRA references) follow, ordered by the pre-screen's score
  (best first, the ranking the study recorded with ``prescreen``) when there is one, else by
  their backbone's linear-probe validation score (the probe *is* a pre-screen): without a
  pre-screen they are held back (:func:`deferred`) and enqueued once the probes have scored
  (:mod:`autotransfer.study.references.queue`);
- equal promise is broken by the measured cost (seconds per epoch of the backbone,
  :mod:`autotransfer.study.budget.backbone_cost`; else the pre-screen's timed forward pass),
  cheapest first, then by the space's order.

``reference_order: listed`` keeps the kinds in that order and the backbones as the space lists
them (the ablation's "off").
"""

from __future__ import annotations

from typing import Any

KIND_ORDER = ("linear_probe", "default")


def order_references(planned: list[tuple[str, dict[str, Any]]],
                     prescreen: dict[str, Any] | None, *,
                     cost: dict[str, float] | None = None,
                     probe_scores: dict[str, float] | None = None,
                     order: str = "ranked") -> list[tuple[str, dict[str, Any]]]:
    """``planned`` (``(kind, params)`` pairs, as :func:`references.reference_params` gives)
    in the order they should run.

    Args:
        planned: the reference trials, ``params["backbone"]`` the backbone's label.
        prescreen: the study's pre-screen record (``by`` and ``scores`` per label), or None.
        cost: seconds per epoch per backbone label (the measured cost), where known.
        probe_scores: the best linear-probe validation score per backbone label, where known;
            it ranks the other kinds when there is no pre-screen.
        order: ``ranked`` (promise, then cost) or ``listed`` (the space's order per kind).
    """
    scores = (prescreen or {}).get("scores") or {}
    by = (prescreen or {}).get("by", "logme")
    cost, probe_scores = cost or {}, probe_scores or {}

    def promise(kind: str, label: str) -> float:
        if prescreen is not None:
            value = scores.get(label, {}).get(by)
        elif kind != "linear_probe":
            value = probe_scores.get(label)
        else:  # probes without a pre-screen: by cost alone
            return 0.0
        return -value if isinstance(value, (int, float)) else float("inf")

    def seconds(label: str) -> float:
        value = cost.get(label, scores.get(label, {}).get("seconds"))
        return value if isinstance(value, (int, float)) else 0.0

    def key(item: tuple[int, tuple[str, dict[str, Any]]]):
        place, (kind, params) = item
        rank = KIND_ORDER.index(kind) if kind in KIND_ORDER else len(KIND_ORDER)
        if order == "listed":
            return (rank, 0.0, 0.0, place)
        label = params["backbone"]
        return (rank, promise(kind, label), seconds(label), place)

    return [pair for _, pair in sorted(enumerate(planned), key=key)]


def best_ranked(candidates: list[str], prescreen: dict[str, Any] | None,
                labels: list[str]) -> str | None:
    """The best-ranked of ``candidates`` (backbone labels): the pre-screen's best score when
    the study has one, else the first in ``labels`` (the space's backbones in its order: a
    ranked space lists its best candidate first); never by measured cost, so that it is known
    before any backbone is timed. None without candidates."""
    scores = (prescreen or {}).get("scores") or {}
    by = (prescreen or {}).get("by", "logme")

    def rank(label: str) -> tuple[float, int]:
        value = scores.get(label, {}).get(by)
        promise = -value if isinstance(value, (int, float)) else float("inf")
        return (promise, labels.index(label) if label in labels else len(labels))

    return min(candidates, key=rank) if candidates else None


def lead_first(planned: list[tuple[str, dict[str, Any]]], lead: str
               ) -> list[tuple[str, dict[str, Any]]]:
    """``planned`` with the first fine-tune (kind ``default``) of backbone label ``lead``
    (:func:`best_ranked`, among those a time budget can afford:
    :func:`autotransfer.study.warm_start.lead_backbone`) moved to the front, before the
    linear probes: under a time budget it is where the search starts
    (:mod:`autotransfer.space.first_finetune`), and the probes, which each need a feature pass
    over the data, follow it. ``planned`` without that first fine-tune is returned as it is."""
    place = next((i for i, (kind, params) in enumerate(planned)
                  if kind == "default" and params["backbone"] == lead), None)
    if place is None:
        return planned
    return [planned[place], *planned[:place], *planned[place + 1:]]


def deferred(kind: str, prescreen: dict[str, Any] | None, order: str = "ranked") -> bool:
    """Whether a reference of ``kind`` waits for the linear probes' scores before it is
    enqueued: ranked order without a pre-screen, for every kind but the probe."""
    return order == "ranked" and prescreen is None and kind != "linear_probe"


def prunable(kind: str | None) -> bool:
    """Whether the pruner may stop a trial of reference ``kind`` (None: a sampled trial).

    A default configuration takes part in the rungs like any trial: at a small budget a full
    run of every backbone's default is what crowded the sampled trials out. The linear probe
    always finishes (it costs a head fit on cached features), so the floor is never empty.
    """
    return kind != "linear_probe"
