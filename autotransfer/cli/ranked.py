"""``autotransfer backbones --rank N``: the ranked candidates with the figures behind the rank
and their sources (#39)."""

from __future__ import annotations

import json

import typer
from rich.table import Table

from autotransfer.cli.console import console, err_console
from autotransfer.contract.ranking import RankingEntry


def as_dict(entry: RankingEntry, rank: int) -> dict:
    """One ``--json`` record (every field of the entry, plus its rank from 1)."""
    from dataclasses import asdict

    return {"rank": rank, **asdict(entry)}


def show_ranked(entries: list[RankingEntry], *, device: str, as_json: bool,
                considered: int) -> None:
    """Print the ranked entries (a table, or JSON lines' list with ``--json``) and, on stderr,
    how many were considered and the sources of the figures."""
    if as_json:
        typer.echo(json.dumps([as_dict(e, i) for i, e in enumerate(entries, 1)], indent=1))
        return
    table = Table()
    for column in ("#", "id", "score", "params", f"{device} img/s", "size", "licence",
                   "pretrain", "loads here"):
        table.add_column(column)
    for i, e in enumerate(entries, 1):
        speed = e.throughput.get(device)
        table.add_row(
            str(i), e.id, f"{e.score:g}", f"{e.params / 1e6:.2f}M" if e.params else "-",
            f"{speed:g}" if speed is not None else "-", str(e.input_size or "-"),
            e.license or "-", e.pretrain or "-", "yes" if e.loads_offline else "download",
        )
    console.print(table)
    signals = sorted({f"{e.signal} from {e.source}" for e in entries})
    rows = sorted({e.throughput_source[device].partition(":")[0] for e in entries
                   if device in e.throughput_source})
    err_console.print(f"{len(entries)} of {considered} candidates; score: " + "; ".join(signals))
    if rows:
        err_console.print(f"{device} throughput (images/s): " + "; ".join(rows))
