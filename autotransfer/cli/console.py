"""What the CLI shows: live progress of a search and the tables it prints."""

from __future__ import annotations

import sys
import time
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from autotransfer.cli.leaderboard import _ci, leaderboard_table
from autotransfer.finetune.records import reference_name
from autotransfer.study.results.report import fmt, training_summary

__all__ = ["ConsoleProgress", "ensemble_table", "leaderboard_table"]

# Leaderboards stay readable when the output goes to a file or a CI log.
console = Console(width=None if sys.stdout.isatty() else 160)
err_console = Console(stderr=True, width=None if sys.stderr.isatty() else 160)


class ConsoleProgress:
    """Live view of a search: a line per epoch of the running trial and per finished trial."""

    def __init__(self, total: int | None) -> None:
        self.total = total
        self.started: dict[int, float] = {}
        self.worker: int | None = None  # set in each worker process of --workers N
        self.deadline: float | None = None  # --time-budget: the run's end (time.time())

    def _tag(self) -> str:
        return "" if self.worker is None else f"[dim]w{self.worker}[/] "

    def _left(self) -> str:
        if self.deadline is None:
            return ""
        return f"  [dim]{max(0.0, self.deadline - time.time()):.0f}s left[/]"

    def trial_started(self, number: int, backbone: str, params: dict[str, Any]) -> None:
        self.started[number] = time.perf_counter()
        # numbers go past the total when trials did not count (interrupted, retried): no "of"
        of = f" of {self.total}" if self.total and number < self.total else ""
        console.print(
            f"{self._tag()}[bold]trial #{number}{of}[/] {escape(backbone)}  "
            f"{params.get('method', 'finetune')} freeze={params['freeze_fraction']:.2f} "
            f"lr={params['lr']:.2e} head_x={params['head_lr_multiplier']:.3g} "
            f"decay={params['layer_decay']:.2f} bs={params['batch_size']}{self._left()}"
        )

    def epoch_done(self, number: int, result, epochs: int) -> None:
        console.print(
            f"{self._tag()}  epoch {result.epoch}/{epochs}  loss {result.train_loss:.4f}  "
            f"acc {result.accuracy:.4f}  f1 {result.macro_f1:.4f}  "
            f"{result.seconds:.1f}s  {result.samples_per_second:.0f} samples/s{self._left()}"
        )

    def note(self, number: int, message: str) -> None:
        console.print(f"  [yellow]{escape(message)}[/]")

    def trial_done(self, number: int, state: str, value: float | None, reason: str) -> None:
        seconds = time.perf_counter() - self.started.get(number, time.perf_counter())
        colour = {"complete": "green", "pruned": "yellow", "fail": "red"}.get(state, "white")
        shown = f" {value:.4f}" if value is not None else ""
        tail = f" ({escape(reason)})" if reason and state != "complete" else ""
        which = "" if self.worker is None else f"#{number} "
        console.print(f"{self._tag()}  {which}[{colour}]{state}[/]{shown} in {seconds:.1f}s{tail}")


def _prescreen_table(ranking, by: str) -> Table:
    table = Table(title=f"Pre-screen, ranked by {by}", title_justify="left")
    for column in ("#", "backbone", "params", "logme", "knn", "imagenet top-1", "seconds"):
        table.add_column(column, justify="left" if column == "backbone" else "right")

    for place, s in enumerate(ranking, start=1):
        table.add_row(
            str(place), escape(s.label) + (f" [red]({escape(s.error)})[/]" if s.error else ""),
            f"{s.parameters / 1e6:.2f}M", fmt(s.scores.get("logme"), ".4f"),
            fmt(s.scores.get("knn"), ".4f"), fmt(s.scores.get("imagenet"), ".1f"),
            f"{s.seconds:.1f}",
        )
    return table


def _outcome_lines(best: dict[str, Any]) -> list[str]:
    """Macro-F1, the worst class (when its recall is below half the metric), the references
    and the transfer effect of ``best.yaml``'s mapping."""
    from autotransfer.study.results.scores import worst_class

    lines = [f"  {escape(training_summary(best))}"] if best.get("epochs") else []
    if best.get("val_score_ci95"):
        test = (f", test {_ci(best['test_score_ci95'])}" if best.get("test_score_ci95") else
                "")
        honest = ("the test score is the honest one" if best.get("test_score_ci95") else
                  "give a test split for an estimate that no choice of the search saw")
        lines.append(f"  95% intervals: val {_ci(best['val_score_ci95'])}{test} (the best val of "
                     f"many trials is optimistic; {honest})")
    if best.get("macro_f1") is not None:
        lines.append(f"  macro-F1 (val) {best['macro_f1']:.4f}")
    worst = worst_class(best.get("per_class") or {})
    if worst is not None and worst[1] < best["val_score"] / 2:
        lines.append(f"  [yellow]worst class[/]: {escape(worst[0])} recall {worst[1]:.4f} (val)")
    references = best.get("references") or {}
    for kind, ref in references.items():
        test = f", test {ref['test_score']:.4f}" if ref["test_score"] is not None else ""
        lines.append(f"  best {reference_name(kind)}: {escape(ref['backbone'])} val "
                     f"{ref['val_score']:.4f}{test} (trial {ref['trial']})")
    if references:
        lines.append(f"  gain of the search over the best reference: {_gain_text(best)}")
    effect = best.get("transfer_effect")
    if effect:
        test = f", test {effect['test']:+.4f}" if effect["test"] is not None else ""
        scratch = effect.get("scratch_test_score")
        scratch = f", test {scratch:.4f}" if scratch is not None else ""
        lines.append(f"  transfer effect: val {effect['val']:+.4f}{test} (from scratch: val "
                     f"{effect['scratch_val_score']:.4f}{scratch})")
    return lines


def _gain_text(best: dict[str, Any]) -> str:
    """The pick's gain over the best reference: val (and test), each with its paired 95%
    interval when best.yaml has ``search_gain``."""
    references = best.get("references") or {}
    top = max(references.values(), key=lambda ref: ref["val_score"])
    gain = best.get("search_gain")
    if not gain:
        return f"{best['val_score'] - top['val_score']:+.4f} val"

    def one(split: str) -> str:
        interval = gain.get(f"{split}_ci95")
        return (f"{gain[split]:+.4f} {split}"
                + (f" [{interval[0]:+.4f}, {interval[1]:+.4f}]" if interval else ""))

    return (", ".join(one(s) for s in ("val", "test") if gain.get(s) is not None)
            + " (paired 95% intervals; the val gain is optimistic, the search chose on val)")


def ensemble_table(section: dict[str, Any]) -> Table:
    """The single pick beside the ensemble of an ``ensemble`` section: members and weights,
    validation held-out (cross-fitted) and as selected, test, each with its 95% interval, and
    the combined latency."""
    table = Table(title=f"Single pick vs ensemble ({section.get('metric', 'score')})",
                  title_justify="left", show_edge=False,
                  caption="val held-out: cross-fitted over two halves of the validation split "
                          "(selected on one, scored on the other); the pick's own val is "
                          "optimistic (it chose the pick)", caption_justify="left")
    for column in ("", "trials (weight)", "val held-out", "95%", "val as selected", "test",
                   "test 95%", "ms"):
        table.add_column(column, justify="left" if column in ("", "trials (weight)")
                         else "right")
    single = section["single"]
    members = " ".join(f"{m['trial']} ({m['weight']:.2f})" for m in section["members"])
    table.add_row("single pick", str(single["trial"]), fmt(section["single_val_score"]),
                  _ci(section.get("single_val_score_ci95")), fmt(single["val_score"]),
                  fmt(single.get("test_score")), _ci(single.get("test_score_ci95")),
                  fmt(single.get("latency_ms"), ".2f"))
    table.add_row("ensemble", members, fmt(section["val_score"]),
                  _ci(section.get("val_score_ci95")), fmt(section["val_score_in_sample"]),
                  fmt(section.get("test_score")), _ci(section.get("test_score_ci95")),
                  fmt(section.get("latency_ms"), ".2f"))
    return table
