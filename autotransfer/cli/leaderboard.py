"""The leaderboard as the console shows it: whole backbones and scores at any width.

A table as wide as every column cut the backbone and the score to ``pack…`` and ``0.71…`` at 80
columns while empty test columns kept their width. Here the columns that carry nothing (no test
split, no measured latency) are left out, a zoo prefix that every backbone shares is said once
in the title, and the secondary columns are left out, least useful first, until the table fits
the width; the caption names them (``leaderboard.csv`` has every one). A column with one value
in every row (``method: finetune`` in a search of one method) is said once in the title rather
than dropped unseen, and a reference trial's method reads ``linear probe`` or ``first fine-tune``.
The backbone, the score and the state are never cut: at a width too narrow for them, the
backbone folds onto a second line instead.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from autotransfer.study.results.report import fmt

#: Columns left out first when the table is too wide, in that order (never: #, backbone, the
#: score, state).
SECONDARY = ("MB", "ms", "s/epoch", "trainable", "epochs", "freeze", "lr", "#", "test 95%",
             "val 95%", "method", "trial", "test")
#: Before these are left out, the backbone folds onto lines of this many characters.
FOLD_BEFORE, FOLD_WIDTH = ("method", "trial", "test"), 26
#: Columns said once in the title when every row has the same value.
SAME_IN_TITLE = ("method", "epochs")
#: Columns whose every value may be "-": left out when none has a value.
OPTIONAL = ("trainable", "val 95%", "test", "test 95%", "s/epoch", "ms", "MB")


def _ci(interval) -> str:
    return "-" if not interval else f"{interval[0]:.3f}-{interval[1]:.3f}"


def short_names(backbones: list[str]) -> tuple[list[str], str]:
    """``backbones`` without the zoo prefix they all share (``packaged/``), and that prefix;
    unchanged (and ``""``) when they do not share one or when two would read the same."""
    zoos = {b.split("/", 1)[0] for b in backbones if "/" in b}
    if len(zoos) != 1 or not all("/" in b for b in backbones):
        return backbones, ""
    zoo = zoos.pop()
    short = [b.split("/", 1)[1] for b in backbones]
    if len(set(short)) != len(set(backbones)):
        return backbones, ""
    return short, f"{zoo}/"


def _cells(rank: int, row: dict[str, Any], backbone: str, metric: str) -> dict[str, str]:
    state = row["state"] + (" [red]infeasible[/]" if row.get("feasible") is False else "")
    return {
        "#": str(rank), "trial": str(row["trial"]), "backbone": escape(backbone),
        "method": _method(row), "freeze": fmt(row["freeze_fraction"], ".2f"),
        "trainable": fmt(row.get("trainable_params"), ","), "lr": fmt(row["lr"], ".1e"),
        f"val {metric}": fmt(row["val_score"], ".4f"), "val 95%": _ci(row.get("val_score_ci95")),
        "test": fmt(row["test_score"], ".4f"), "test 95%": _ci(row.get("test_score_ci95")),
        "epochs": str(row["epochs"]), "s/epoch": fmt(row["seconds_per_epoch"], ".1f"),
        "ms": fmt(row.get("latency_ms"), ".2f"), "MB": fmt(row.get("size_mb"), ".1f"),
        "state": state,
    }


def _method(row: dict[str, Any]) -> str:
    kind = str(row.get("reference") or "")
    method = str(row.get("method", ""))
    if kind == "linear_probe":
        return "linear probe"
    if kind == "default":  # the stored kind of a first fine-tune
        return "first fine-tune" if method == "finetune" else f"{method} (first fine-tune)"
    return method


def _table(cells: list[dict[str, str]], columns: list[str], title: str, caption: str | None,
           fold: bool) -> Table:
    table = Table(title=title, title_justify="left", caption=caption, caption_justify="left",
                  show_edge=False)
    for column in columns:
        folds = column == "backbone" and fold
        table.add_column(column, justify="left" if column in ("backbone", "state") else "right",
                         no_wrap=not folds, overflow="fold" if folds else "ellipsis",
                         max_width=FOLD_WIDTH if folds else None)
    for row in cells:
        table.add_row(*(row[c] for c in columns))
    return table


def _width(console: Console, table: Table) -> int:
    return console.measure(table, options=console.options.update_width(10_000)).maximum


def leaderboard_table(rows: list[dict[str, Any]], metric: str, limit: int = 15,
                      width: int | None = None) -> Table:
    """The leaderboard's first ``limit`` rows as a rich table that fits ``width`` columns
    (default: the terminal's, as rich measures it), ``metric`` naming the value: see the
    module docstring."""
    width = width or Console().width
    measure = Console(width=10_000, color_system=None)
    shown = rows[:limit]
    names, zoo = short_names([r["backbone"] for r in shown])
    cells = [_cells(rank, r, name, metric)
             for rank, (r, name) in enumerate(zip(shown, names, strict=True), start=1)]
    columns = ["#", "trial", "backbone", "method", "freeze", "trainable", "lr", f"val {metric}",
               "val 95%", "test", "test 95%", "epochs", "s/epoch", "ms", "MB", "state"]
    columns = [c for c in columns
               if c not in OPTIONAL or any(row[c] != "-" for row in cells)]
    same = [c for c in SAME_IN_TITLE
            if c in columns and len(cells) > 1 and len({row[c] for row in cells}) == 1]
    columns = [c for c in columns if c not in same]
    told = [f"backbones of {zoo}"] if zoo else []
    told += [f"{c} {cells[0][c]}" for c in same]
    title = "Leaderboard" + (f" ({'; '.join(told)})" if told else "")
    dropped: list[str] = []
    fold = False
    for column in SECONDARY:
        if _width(measure, _table(cells, columns, title, None, False)) <= width:
            break
        if column in FOLD_BEFORE and _width(measure, _table(cells, columns, title, None,
                                                                True)) <= width:
            fold = True
            break
        if column in columns:
            columns.remove(column)
            dropped.append(column)
    else:
        fold = True  # the backbone, the score and the state alone are wider than ``width``
    caption = (f"not shown at {width} columns: {', '.join(dropped)} (see leaderboard.csv)"
               if dropped else None)
    return _table(cells, columns, title, caption, fold)
