"""A ranked space, ``backbones: {rank: 6, max_params: 10M, ...}``, expanded into ids (#39).

The study expands it once, when it is created, from the zoos' ranking metadata
(:mod:`autotransfer.contract.ranking`) for the data's modality, and records the ids
(``records.STUDY_RANKED``); a resumed study and its workers use the recorded ids. Offline
(``HF_HUB_OFFLINE=1``) only the candidates that load here are kept; online, a candidate whose
weights cannot be fetched (gated, removed) is named in one line and skipped.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from typing import Any

from autotransfer.contract.collect import get_ranking_entries
from autotransfer.contract.ranking import RankingEntry, parse_count, rank
from autotransfer.errors import SpaceError
from autotransfer.listing import few
from autotransfer.space.schema import BackboneSpec, RankedBackbones, SearchSpace
from autotransfer.study.budget import prior
from autotransfer.study.budget.prior import MARGIN, describe, over_bound, prior_of
from autotransfer.study.records import StudyRecord, set_ranked


def offline() -> bool:
    """Whether the Hugging Face hub is switched off (``HF_HUB_OFFLINE``)."""
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() not in ("", "0", "false", "no")


def hub_fetchable(entry: RankingEntry) -> str | None:
    """None when ``entry``'s weights can be fetched, else why not (one line). Asks the hub for
    ``timm/`` ids (``huggingface_hub.model_info``); other zoos' ids are taken as fetchable."""
    if entry.loads_offline or not entry.id.startswith("timm/"):
        return None
    try:
        from huggingface_hub import model_info

        info = model_info(entry.id, timeout=10)
    except Exception as exc:  # gated, removed, unreachable: the candidate is skipped
        return f"{type(exc).__name__}"
    return "gated" if getattr(info, "gated", False) else None


def expand(rule: RankedBackbones, modality: str,
           fetchable: Callable[[RankingEntry], str | None] = hub_fetchable,
           device: Any = "cpu") -> tuple[list[str], str]:
    """The ids of the ``rule.rank`` best candidates of ``modality`` and a one-line note.
    ``rule.max_latency_ms`` drops a candidate whose prior latency on ``device``
    (:mod:`autotransfer.study.budget.prior`) is over ``prior.MARGIN`` times it, or unknown.

    Raises:
        SpaceError: no candidate of ``modality`` within the bounds (or none that loads here).
    """
    max_params = parse_count(rule.max_params, "backbones.max_params") if rule.max_params else None
    entries = get_ranking_entries(modality)
    ranked = rank(entries, None, max_params=max_params, min_throughput=rule.min_throughput,
                  device=rule.device, license=rule.license, offline_only=offline())
    latency_note = ""
    if rule.max_latency_ms is not None:
        ranked, latency_note = within_latency(ranked, rule.max_latency_ms, device)
    kept: list[str] = []
    skipped: list[str] = []
    for entry in ranked:
        if len(kept) == rule.rank:
            break
        problem = None if offline() else fetchable(entry)
        if problem is None:
            kept.append(entry.id)
        else:
            skipped.append(f"{entry.id} ({problem})")
    if not kept:
        where = " that load here (HF_HUB_OFFLINE=1)" if offline() else ""
        raise SpaceError(f"backbones: no {modality} candidate{where} within {bounds(rule)}; "
                         f"of {len(entries)} ranked, loosen the bounds")
    note = (f"backbones: the {len(kept)} best {modality} candidates within {bounds(rule)}"
            + (" that load here (HF_HUB_OFFLINE=1)" if offline() else "")
            + f": {few(kept)}" + latency_note)
    if skipped:
        warnings.warn(f"backbones: skipped {len(skipped)} whose weights cannot be fetched: "
                      f"{few(skipped)}", stacklevel=2)
    return kept, note


def within_latency(entries: list[RankingEntry], bound_ms: float, device: Any = "cpu"
                   ) -> tuple[list[RankingEntry], str]:
    """The entries whose prior latency on ``device`` is at most ``prior.MARGIN`` times
    ``bound_ms`` (an entry without a prior drops out, as an unknown parameter count does), and
    a note naming the device constant the prior used."""
    constant = prior.device_constant(device)  # through its module: tests replace it there
    kept = [e for e in entries
            if (p := prior_of(e, constant)) is not None and not over_bound(p, bound_ms)]
    note = (f" (max_latency_ms: kept when the prior is at most {MARGIN:g}x {bound_ms:g} ms; "
            f"prior = {describe(constant)})")
    return kept, note


def bounds(rule: RankedBackbones) -> str:
    """``rank 6, max_params 10M`` (the rule as the space wrote it)."""
    return ", ".join(f"{k} {v}" for k, v in rule.model_dump(exclude_none=True).items())


def expand_space(study, space: SearchSpace, modality: str, *, device: Any = "cpu"
                 ) -> tuple[SearchSpace, str | None]:
    """``space`` with a ranked ``backbones`` replaced by its ids (recorded in ``study`` the
    first time; a resume reads them back) and the note saying what was chosen, or ``space``
    and None when it lists its ids. ``device``: where a ``max_latency_ms`` prior is measured."""
    rule = space.backbones
    if not isinstance(rule, RankedBackbones):
        return space, None
    recorded = StudyRecord.of(study).ranked
    if recorded and recorded.get("rule") == rule.model_dump():
        ids, note = recorded["ids"], recorded["note"] + " (recorded by the study)"
    else:
        ids, note = expand(rule, modality, device=device)
        set_ranked(study, {"ids": ids, "rule": rule.model_dump(), "note": note})
    return space.model_copy(update={"backbones": [BackboneSpec(id=i) for i in ids]}), note
