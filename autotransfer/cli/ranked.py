"""``autotransfer backbones --rank N``: the ranked candidates with the figures behind the rank
and their sources (#39)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import typer
from rich.table import Table

from autotransfer.cli.console import console, err_console
from autotransfer.contract.ranking import RankingEntry

if TYPE_CHECKING:
    from autotransfer.study.budget.prior import DevicePrior


def ranking_entries(modality: str, *, online: bool) -> list[RankingEntry]:
    """Every zoo's ranking entries of ``modality``; ``online``: the current tables and the
    Hugging Face Hub's metadata, with a progress line on stderr while they are read (a spinner
    on a terminal) and one after saying how long it took, or, with ``HF_HUB_OFFLINE=1``, one
    line saying that nothing was asked.

    Raises:
        HubUnreachable: the Hub did not answer within ``hub_ranking.TIMEOUT_S`` (one line).
    """
    import time

    from autotransfer.contract.collect import get_ranking_entries
    from autotransfer.contract.hub_ranking import TIMEOUT_S, hub_offline

    if not online:
        return get_ranking_entries(modality)
    if hub_offline():
        err_console.print("HF_HUB_OFFLINE=1: nothing asked online; ranked from the shipped "
                          "snapshot and the packaged weights", highlight=False)
        return get_ranking_entries(modality)
    line = (f"reading the current tables and the Hugging Face Hub's {modality} metadata "
            f"(at most {TIMEOUT_S:g} s)")
    began = time.perf_counter()
    if err_console.is_terminal:
        with err_console.status(line + " ..."):
            entries = get_ranking_entries(modality, online=True)
    else:
        err_console.print(line + " ...", highlight=False)
        entries = get_ranking_entries(modality, online=True)
    err_console.print(f"read {len(entries)} {modality} candidates online in "
                      f"{time.perf_counter() - began:.1f} s", highlight=False)
    return entries


def prior_device(device: str) -> str:
    """Where the prior is measured: ``cuda`` for ``--device gpu`` when a GPU is here, else the
    CPU."""
    if device == "gpu":
        import torch

        if torch.cuda.is_available():
            return "cuda"
    return "cpu"


def as_dict(entry: RankingEntry, rank: int, prior: DevicePrior | None = None) -> dict:
    """One ``--json`` record (every field of the entry, plus its rank from 1 and, when asked,
    ``prior_latency_ms`` and ``prior_source``)."""
    from dataclasses import asdict

    extra = {} if prior is None else {"prior_latency_ms": round(prior.latency_ms, 3),
                                      "prior_source": prior.source}
    return {"rank": rank, **asdict(entry), **extra}


def show_ranked(entries: list[RankingEntry], *, device: str, as_json: bool,
                considered: int, priors: dict[str, DevicePrior] | None = None,
                prior_note: str | None = None) -> None:
    """Print the ranked entries (a table, or JSON lines' list with ``--json``) and, on stderr,
    how many were considered and the sources of the figures. ``priors`` (``{id: prior}``,
    None: not asked) adds the prior latency column; ``prior_note`` says how it was made."""
    if as_json:
        typer.echo(json.dumps([as_dict(e, i, (priors or {}).get(e.id))
                               for i, e in enumerate(entries, 1)], indent=1))
        return
    table = Table()
    columns = ["#", "id", "score", "params", f"{device} img/s", "size", "licence", "pretrain",
               "loads here"]
    if priors is not None:
        columns.insert(5, "prior ms")
    for column in columns:
        table.add_column(column)
    for i, e in enumerate(entries, 1):
        speed = e.throughput.get(device)
        score = f"{e.score:,.0f}" if e.score >= 1e4 else f"{e.score:g}"  # downloads: 1,234,567
        row = [str(i), e.id, score, f"{e.params / 1e6:.2f}M" if e.params else "-",
               f"{speed:g}" if speed is not None else "-", str(e.input_size or "-"),
               e.license or "-", e.pretrain or "-", "yes" if e.loads_offline else "download"]
        if priors is not None:
            prior = priors.get(e.id)
            row.insert(5, f"{prior.latency_ms:.1f}" if prior else "-")
        table.add_row(*row)
    console.print(table)
    if prior_note:
        err_console.print(f"prior ms: batch 1 on this machine = {prior_note}")
    signals = sorted({f"{e.signal} from {e.source}" for e in entries})
    rows = sorted({e.throughput_source[device].partition(":")[0] for e in entries
                   if device in e.throughput_source})
    err_console.print(f"{len(entries)} of {considered} candidates; score: " + "; ".join(signals))
    if rows:
        err_console.print(f"{device} throughput (images/s): " + "; ".join(rows))
