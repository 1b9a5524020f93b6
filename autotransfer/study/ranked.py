"""A ranked space, ``backbones: {rank: 6, max_params: 10M, ...}``, expanded into ids (#39).

The study expands it once, when it is created, from the zoos' ranking metadata
(:mod:`autotransfer.contract.ranking`) for the data's modality, and records the ids
(``records.STUDY_RANKED``); a resumed study and its workers use the recorded ids. ``front:
cpu`` keeps the accuracy/throughput front; ``online: true`` reads the current tables and the
Hugging Face Hub's metadata (:mod:`autotransfer.contract.hub_ranking`). Offline
(``HF_HUB_OFFLINE=1``), or when the hub does not answer, the space's ``offline`` ids are used,
else only the candidates that load here are kept, said in one line; online, a candidate whose
weights cannot be fetched (gated, removed) is named in one line and skipped.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from typing import Any

from autotransfer.contract.collect import get_ranking_entries
from autotransfer.contract.hub_ranking import TIMEOUT_S
from autotransfer.contract.ranking import RankingEntry, parse_count, rank
from autotransfer.errors import HubUnreachable, SpaceError, first_line
from autotransfer.finetune.records import StudyRecord, set_ranked
from autotransfer.listing import few
from autotransfer.space.schema import BackboneSpec, RankedBackbones, SearchSpace
from autotransfer.study.budget import prior
from autotransfer.study.budget.prior import MARGIN, describe, over_bound, prior_of


def offline() -> bool:
    """Whether the Hugging Face hub is switched off (``HF_HUB_OFFLINE``)."""
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() not in ("", "0", "false", "no")


def hub_fetchable(entry: RankingEntry) -> str | None:
    """None when ``entry``'s weights can be fetched, else why not (one line). Asks the hub for
    ``timm/`` ids (``huggingface_hub.model_info``); other zoos' ids are taken as fetchable
    (the Hub query of the text and audio zoos leaves gated models out).

    Raises:
        HubUnreachable: the hub did not answer at all (no HTTP reply within 10 s): the network
            is down, not this candidate.
    """
    if entry.loads_offline or not entry.id.startswith("timm/"):
        return None
    from huggingface_hub import model_info
    from huggingface_hub.errors import HfHubHTTPError

    try:
        info = model_info(entry.id, timeout=10)
    except HfHubHTTPError as exc:  # gated, removed: the candidate is skipped
        return f"{type(exc).__name__}"
    except Exception as exc:  # no answer: every candidate would fail the same way
        raise HubUnreachable(f"the Hugging Face Hub did not answer model_info({entry.id}) "
                             f"({type(exc).__name__}: {first_line(exc)})") from None
    return "gated" if getattr(info, "gated", False) else None


def expand(rule: RankedBackbones, modality: str,
           fetchable: Callable[[RankingEntry], str | None] = hub_fetchable,
           device: Any = "cpu", say: Callable[[str], None] | None = None
           ) -> tuple[list[str], str]:
    """The ids of the ``rule.rank`` best candidates of ``modality`` and a one-line note.
    ``rule.max_latency_ms`` drops a candidate whose prior latency on ``device``
    (:mod:`autotransfer.study.budget.prior`) is over ``prior.MARGIN`` times it, or unknown.
    Offline (``HF_HUB_OFFLINE=1``), or when the hub does not answer, ``rule.offline`` when the
    space gives it, else the best candidates that load here. ``say``: a progress line before
    an ``online`` query.

    Raises:
        SpaceError: no candidate of ``modality`` within the bounds (or none that loads here).
    """
    if offline():
        return _offline(rule, modality, "HF_HUB_OFFLINE=1", device)
    try:
        return _expand(rule, modality, fetchable, device, say, hub_off=None)
    except HubUnreachable as exc:
        return _offline(rule, modality, str(exc).partition("; HF_HUB_OFFLINE")[0], device)


def _offline(rule: RankedBackbones, modality: str, why: str, device: Any
             ) -> tuple[list[str], str]:
    """The space's ``offline`` ids, else the best candidates that load here; the note says
    ``why`` the hub was not asked."""
    if rule.offline is None:
        return _expand(rule, modality, hub_fetchable, device, None, hub_off=why)
    return list(rule.offline), (f"backbones: offline ({why}): the space's offline list "
                                f"instead of {bounds(rule)}: {few(rule.offline)}")


def _expand(rule: RankedBackbones, modality: str,
            fetchable: Callable[[RankingEntry], str | None], device: Any,
            say: Callable[[str], None] | None, *, hub_off: str | None
            ) -> tuple[list[str], str]:
    """The expansion from the ranking; ``hub_off``: why the hub is not asked (the candidates
    that load here are kept), None: online."""
    max_params = parse_count(rule.max_params, "backbones.max_params") if rule.max_params else None
    online = rule.online and hub_off is None
    if online and say is not None:
        say(f"backbones: reading the current tables and the Hugging Face Hub's {modality} "
            f"metadata (at most {TIMEOUT_S:g} s)")
    entries = get_ranking_entries(modality, online=online)
    ranked = rank(entries, None, max_params=max_params, min_throughput=rule.min_throughput,
                  device=rule.device, license=rule.license, offline_only=hub_off is not None,
                  front=rule.front)
    latency_note = ""
    if rule.max_latency_ms is not None:
        ranked, latency_note = within_latency(ranked, rule.max_latency_ms, device)
    kept: list[str] = []
    skipped: list[str] = []
    for entry in ranked:
        if len(kept) == rule.rank:
            break
        problem = None if hub_off is not None else fetchable(entry)
        if problem is None:
            kept.append(entry.id)
        else:
            skipped.append(f"{entry.id} ({problem})")
    if not kept:
        where = f" that load here ({hub_off})" if hub_off is not None else ""
        raise SpaceError(f"backbones: no {modality} candidate{where} within {bounds(rule)}; "
                         f"of {len(entries)} ranked, loosen the bounds")
    note = (f"backbones: the {len(kept)} best {modality} candidates within {bounds(rule)}"
            + (f" that load here ({hub_off})" if hub_off is not None else "")
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
    """``rank 6, max_params 10M`` (the rule as the space wrote it, its offline list aside)."""
    return ", ".join(f"{k} {v}" for k, v in rule_key(rule).items()
                     if v is not None and k != "offline")


def rule_key(rule: RankedBackbones) -> dict[str, Any]:
    """The rule as a study records it; ``front``, ``online`` and ``offline`` only when given,
    so that a study recorded before they existed resumes with its ids."""
    return {k: v for k, v in rule.model_dump().items()
            if not (k in ("front", "online", "offline") and v in (None, False))}


def expand_space(study, space: SearchSpace, modality: str, *, device: Any = "cpu",
                 say: Callable[[str], None] | None = None) -> tuple[SearchSpace, str | None]:
    """``space`` with a ranked ``backbones`` replaced by its ids (recorded in ``study`` the
    first time; a resume reads them back; ``study`` None: not recorded, as the ``prescreen``
    command needs) and the note saying what was chosen, or ``space`` and None when it lists
    its ids. ``device``: where a ``max_latency_ms`` prior is measured; ``say``: a progress line
    before an online query."""
    rule = space.backbones
    if not isinstance(rule, RankedBackbones):
        return space, None
    recorded = StudyRecord.of(study).ranked if study is not None else None
    if recorded and recorded.get("rule") == rule_key(rule):
        ids, note = recorded["ids"], recorded["note"] + " (recorded by the study)"
    else:
        ids, note = expand(rule, modality, device=device, say=say)
        if study is not None:
            set_ranked(study, {"ids": ids, "rule": rule_key(rule), "note": note})
    return space.model_copy(update={"backbones": [BackboneSpec(id=i) for i in ids]}), note
