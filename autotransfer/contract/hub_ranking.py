"""Hugging Face Hub metadata as ranking entries, for the text and audio zoos (#39).

Asked only with ``online`` (``backbones --rank N --online``, a ranked space's
``online: true``): a hub zoo ranks the Hub's most downloaded public models of its pipeline tags
whose tags name a model type the zoo loads. One ``huggingface_hub.HfApi.list_models`` query a
pipeline tag (``sort="downloads"``, ``limit``, ``gated=False``, ``expand=["downloads",
"safetensors", "tags"]``), all of them within ``TIMEOUT_S`` seconds, else one line
(:class:`~autotransfer.errors.HubUnreachable`).

The score is the Hub's ``downloads`` (the last 30 days): no accuracy is published for these
models on one common task, and a model that many download is one that loads and fine-tunes: a
weak prior, stated as such (``SIGNAL``). Parameters are the safetensors metadata's total
(``ModelInfo.safetensors.total``; none when a repository has no safetensors file, and a
``max_params`` bound then drops it), the licence the ``license:`` tag. With ``HF_HUB_OFFLINE=1``
nothing is asked (:func:`hub_offline`): the packaged candidates alone are ranked.
"""

from __future__ import annotations

import datetime
import os
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from autotransfer.contract.ranking import RankingEntry
from autotransfer.errors import HubUnreachable, first_line

#: Seconds every query of one modality may take together before it fails in one line.
TIMEOUT_S = 25.0
#: ``ModelInfo`` fields asked of the Hub (``list_models(expand=...)``).
EXPAND = ["downloads", "safetensors", "tags"]
SIGNAL = "Hub downloads, last 30 days"

_T = TypeVar("_T")


@dataclass(frozen=True)
class HubQuery:
    """Which Hub models are a zoo's ranked candidates.

    Attributes:
        pipeline_tags: one ``list_models(pipeline_tag=...)`` query each (text:
            ``sentence-similarity``, ``feature-extraction``, ``fill-mask``).
        model_types: a model is kept when its tags name one of these ``config.model_type``
            values (those the zoo has layer groups for, so that it loads).
        limit: the most downloaded models asked for, per pipeline tag.
    """

    pipeline_tags: tuple[str, ...]
    model_types: frozenset[str]
    limit: int = 100


def hub_offline() -> bool:
    """Whether the Hugging Face Hub is switched off (``HF_HUB_OFFLINE`` set and not 0/false)."""
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() not in ("", "0", "false", "no")


def api() -> Any:
    """The ``huggingface_hub.HfApi`` the queries go through (tests replace this function)."""
    from huggingface_hub import HfApi

    return HfApi()


def within(seconds: float, what: str, call: Callable[[], _T]) -> _T:
    """``call()``, run in a daemon thread so that a dead network cannot hold the caller (nor
    the interpreter's exit) longer than ``seconds``.

    Raises:
        HubUnreachable: ``call`` raised, or did not return within ``seconds`` (one line naming
            ``what``).
    """
    result: list[_T] = []
    failure: list[BaseException] = []

    def run() -> None:
        try:
            result.append(call())
        except BaseException as exc:  # re-raised below as one line
            failure.append(exc)

    worker = threading.Thread(target=run, name="autotransfer-hub-query", daemon=True)
    worker.start()
    worker.join(seconds)
    advice = "; HF_HUB_OFFLINE=1 ranks the packaged candidates without asking"
    if worker.is_alive():
        raise HubUnreachable(f"the Hugging Face Hub did not answer {what} within "
                             f"{seconds:g} s{advice}")
    if failure:
        exc = failure[0]
        raise HubUnreachable(f"the Hugging Face Hub did not answer {what} "
                             f"({type(exc).__name__}: {first_line(exc)}){advice}")
    return result[0]


def hub_ranking_entries(zoo: str, modality: str, query: HubQuery, *,
                        timeout: float = TIMEOUT_S) -> list[RankingEntry]:
    """The ``query``'s models as entries ``zoo/<hub id>``, score = downloads (see the module
    docstring); [] with ``HF_HUB_OFFLINE=1``.

    Raises:
        HubUnreachable: a query failed or all of them took over ``timeout`` seconds.
    """
    if hub_offline():
        return []

    def ask() -> list[tuple[str, Any]]:
        hub = api()
        return [(tag, info) for tag in query.pipeline_tags
                for info in hub.list_models(pipeline_tag=tag, sort="downloads",
                                            limit=query.limit, gated=False, expand=EXPAND)]

    found = within(timeout, f"list_models for {modality} ({', '.join(query.pipeline_tags)})",
                   ask)
    today = datetime.date.today().isoformat()
    entries: dict[str, RankingEntry] = {}
    for tag, info in found:
        tags = set(info.tags or ())
        if info.id in entries or not tags & query.model_types:
            continue
        entries[info.id] = entry_of(info, zoo, modality, source=(
            f"huggingface.co list_models, pipeline {tag}, top {query.limit} by downloads "
            f"(read {today})"))
    return list(entries.values())


def entry_of(info: Any, zoo: str, modality: str, *, source: str,
             entry_id: str | None = None, loads_offline: bool | None = None) -> RankingEntry:
    """The entry of one ``huggingface_hub.ModelInfo`` (asked with ``expand=EXPAND``);
    ``architecture`` is the Hub id, so that a packaged copy of the same weights is one
    candidate with it (:func:`autotransfer.contract.ranking.rank` keeps one per architecture)."""
    safetensors = getattr(info, "safetensors", None)
    licences = [t.partition(":")[2] for t in (info.tags or ()) if t.startswith("license:")]
    return RankingEntry(
        id=entry_id or f"{zoo}/{info.id}", modality=modality, score=float(info.downloads or 0),
        signal=SIGNAL, source=source,
        params=int(safetensors.total) if safetensors is not None else None,
        license=licences[0] if licences else None,
        loads_offline=cached_here(info.id) if loads_offline is None else loads_offline,
        architecture=f"hub:{info.id}",
    )


def hub_infos(repo_ids: Iterable[str], *, timeout: float = TIMEOUT_S) -> dict[str, Any]:
    """``{hub id: ModelInfo}`` (``model_info(expand=EXPAND)``) of a few named repositories, for
    a zoo whose packaged copies take their Hub twin's downloads; {} with ``HF_HUB_OFFLINE=1``.

    Raises:
        HubUnreachable: a query failed or all of them took over ``timeout`` seconds.
    """
    ids = list(repo_ids)
    if hub_offline() or not ids:
        return {}

    def ask() -> dict[str, Any]:
        hub = api()
        return {repo: hub.model_info(repo, expand=EXPAND, timeout=timeout) for repo in ids}

    return within(timeout, f"model_info for {', '.join(ids)}", ask)


def cached_here(repo_id: str) -> bool:
    """Whether ``repo_id``'s weights (a safetensors or ``.bin`` file) are in the Hugging Face
    cache, so that it loads without a download."""
    try:
        from huggingface_hub.constants import HF_HUB_CACHE
    except ImportError:
        return False
    folder = Path(HF_HUB_CACHE) / f"models--{repo_id.replace('/', '--')}" / "snapshots"
    return any(folder.glob("*/*.safetensors")) or any(folder.glob("*/*.bin"))
