"""The tracker contract and the guard that keeps a tracker from ever stopping a search.

A tracker mirrors a search into an experiment tracker (MLflow, Weights & Biases): it is told
when the search starts, after each epoch of a trial, when a trial ends and when the search's
results are written. The study database stays the record: every call goes through
:class:`Guarded`, so a tracker that cannot be reached at the start is one warning and no
tracking, and one that fails later is one warning and no further tracking in that process.
"""

from __future__ import annotations

import hashlib
import importlib
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from autotransfer.errors import first_line


class TrackingWarning(UserWarning):
    """An experiment tracker could not be reached or failed; the search went on."""


@dataclass(frozen=True)
class TrialEnd:
    """How a trial ended, as a tracker logs it.

    ``state`` is ``complete``, ``pruned`` or ``fail``; ``reason`` why it was pruned or failed
    ("" otherwise); ``costs`` its measured cost (``seconds``: wall clock of the trial,
    ``seconds_per_epoch``, ``peak_memory_mib``, ``parameter_count``, ``trainable_parameters``,
    ``samples_per_second``, and each measured cost objective by its key: ``latency_ms``,
    ``throughput``, ``params_count``, ``size_mb``, ``peak_memory_mb``...), each only when the
    trial recorded it; ``started`` and ``ended`` the trial's own start and end (Unix seconds),
    so that a run caught up later shows them.
    """

    number: int
    state: str
    reason: str
    value: float | None
    backbone: str | None
    params: dict[str, Any]
    epochs: dict[int, dict[str, float]]  # epoch -> the scores of that epoch (see epoch_scores)
    costs: dict[str, float]
    started: float | None = None  # when the trial started and ended (Unix seconds), read
    ended: float | None = None    # from the trial's datetime_start/datetime_complete


class Tracker(Protocol):
    """What a tracker implements; each method may raise (the guard catches it)."""

    def start(self, study, options) -> None:
        """Connect, and find or create the search's place (experiment, parent run).

        ``study`` is the Optuna study, ``options`` the search's ``SearchOptions``. Raises
        when the tracker cannot be reached.
        """

    def on_epoch(self, trial, epoch: int, scores: dict[str, float]) -> None:
        """One epoch of a running trial (an ``optuna.Trial``): ``scores`` by name."""

    def on_trial_end(self, trial, end: TrialEnd) -> None:
        """A trial (an Optuna ``FrozenTrial``) ended: its state, reason and costs."""

    def end(self, best: dict[str, Any] | None, artifacts: list[Path]) -> None:
        """The search wrote its results: ``best.yaml``'s mapping (None when no trial
        completed) and the result files."""


def study_key(study_name: str, storage: str) -> str:
    """A short stable id of one study in one storage (the tag that finds its runs again)."""
    return hashlib.sha1(f"{study_name}\n{storage}".encode()).hexdigest()[:16]


def one_line(exc: BaseException, limit: int = 300) -> str:
    """The first line of ``exc``'s message, cut only at a sentence's end (or, for one long
    sentence, at a word's end with "..."), never mid-sentence: a warning the user can act on.
    """
    line = (str(exc).strip().splitlines() or [""])[0].strip()
    if len(line) <= limit:
        return line
    end = line.rfind(". ", 0, limit)
    if end > 0:
        return line[:end + 1]
    return line[:line.rfind(" ", 0, limit)].rstrip(",;:") + "..."


def _clause(exc: BaseException) -> str:
    """:func:`one_line` without its closing full stop (a clause of a longer warning)."""
    line = one_line(exc)
    return line[:-1] if line.endswith(".") and not line.endswith("...") else line


def warn(message: str) -> None:
    warnings.warn(message, TrackingWarning, stacklevel=3)


class Guarded:
    """Calls a tracker so that nothing it raises reaches the search.

    A failing ``start`` turns tracking off with one warning; a later failure warns once and
    turns it off for the rest of this process (trials not logged then are caught up when a
    later run of the search ends, where the tracker supports it).
    """

    def __init__(self, name: str, tracker: Tracker) -> None:
        self.name, self.tracker, self.on = name, tracker, False

    def start(self, study, options) -> Guarded:
        try:
            self.tracker.start(study, options)
            self.on = True
        except Exception as exc:
            warn(f"tracking with {self.name} is off: {_clause(exc)}; the search "
                 f"goes on (the study database keeps every trial)")
        return self

    def _call(self, method: str, *args) -> None:
        if not self.on:
            return
        try:
            getattr(self.tracker, method)(*args)
        except Exception as exc:
            self.on = False
            warn(f"tracking with {self.name} stopped ({method}): {_clause(exc)}; "
                 f"the search goes on (the study database keeps every trial)")

    def on_epoch(self, trial, epoch: int, scores: dict[str, float]) -> None:
        self._call("on_epoch", trial, epoch, scores)

    def on_trial_end(self, trial, end: TrialEnd) -> None:
        self._call("on_trial_end", trial, end)

    def end(self, best: dict[str, Any] | None, artifacts: list[Path]) -> None:
        self._call("end", best, artifacts)


def require(module: str, extra: str):
    """Import an optional tracker library, or say which extra installs it.

    Raises:
        ImportError: ``module`` is not installed; the message names ``autotransfer[extra]``.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(f"{module} is not installed ({first_line(exc)}): "
                          f"pip install 'autotransfer[{extra}]'") from None
