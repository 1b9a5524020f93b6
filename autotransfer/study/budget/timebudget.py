"""A time budget the whole run keeps (``search --time-budget S``).

``--timeout S`` is Optuna's: no trial starts after S seconds, and the one running then finishes.
``--time-budget S`` bounds the whole run, start-up, data preparation and the final writes
included:

- the deadline is an absolute wall-clock time stored with the study (``StudyRecord.deadline``
  in :mod:`autotransfer.finetune.records`), so that every worker of the study, local
  (``--workers N``) or on another machine sharing the storage, stops by the same time;
- a few seconds before it are kept for writing ``best.yaml``, the leaderboard and the report
  (the reserve: the measured time of the last write, 1.5x, plus 2 s; a default until measured);
- a trial stops at an epoch boundary when its next epoch cannot end in time, and at a batch
  boundary (training, or computing the activation cache) when its next batch cannot. After an
  epoch was scored it completes with the model of its last epoch end (a stop inside an epoch
  rewinds to it) and that epoch's score, its reason ``time budget: ...`` and the epochs it
  trained recorded (``train`` replays them: the planned length's schedule, stopped there): a
  search keeps the best model it has seen. Before its first score it is pruned;
- a trial does not start when its configuration cannot reach its first report (load, cache,
  one epoch, validation) in the time left, estimated from the study's trials that did, or
  before any did, from its backbone's measured cost (:mod:`autotransfer.study.budget.backbone_cost`;
  the space's ``budget.cost_aware``);
- the references take at most a share of the budget (:mod:`autotransfer.study.references.share`);
- a search with nothing completed yet is never left empty-handed by its own rule: a linear
  probe that does not fit may still start when it can end within the reserve plus
  :data:`FLOOR_GRACE` seconds past the deadline (then the writes), and the console says so.
  At an eighth of a 123 s grid's compute (15 s) on text, start-up and the timed step left 2 s
  and every search ended with ``no trial completed``;
- the best-ranked default configuration, the other half of the floor, may finish in the same
  grace when what it has left to run ends within it (:func:`floor_grace`).

:func:`now` is the one clock of all this (tests replace it with a fake one).
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from typing import Any

from autotransfer.finetune.records import StudyRecord, TrialRecord, set_deadline, trial_records
from autotransfer.study.budget.backbone_cost import estimate_for

MAX_SKIPS = 3  # consecutive configurations too slow to start before a worker stops
FLOOR_GRACE = 3.0  # seconds past the deadline a first linear probe may end (see above)
# Seconds a budget must still hold once the process has started (its interpreter and imports,
# :func:`process_age`); less is refused at once in one line: on a busy machine a 3 s budget
# was spent by start-up, and the run went on to read the data and ended 11 s late; with 2 s
# here, a quiet 2-core machine passed a 3 s budget after 1.2 s of start-up, then prepared
# the study (the data, each backbone loaded once) and ended at 7.8 s.
STARTUP_FLOOR = 8.0


def now() -> float:
    """Wall-clock seconds (``time.time()``); the clock of every budget decision."""
    return time.time()


class TimeBudgetSpent(Exception):  # noqa: N818 - a signal, like StopIteration, not an error
    """Raised at a batch boundary when the time for trials is spent."""


def process_age() -> float:
    """Seconds since this process started (Linux ``/proc``; 0.0 elsewhere), so that the
    interpreter's start-up and imports count against a budget given on the command line."""
    try:
        with open("/proc/self/stat", encoding="ascii") as handle:
            # the command name (field 2) may hold spaces: fields after its closing ")"
            start_ticks = int(handle.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime", encoding="ascii") as handle:
            uptime = float(handle.read().split()[0])
        return max(0.0, uptime - start_ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return 0.0


def budget_spent_line(budget: float, startup: float) -> str:
    """The one line for a budget that start-up (``startup`` seconds: the interpreter and its
    imports, :func:`process_age`) left less than :data:`STARTUP_FLOOR` seconds of."""
    return (f"--time-budget {budget:g} s is too short to start a search: start-up (Python "
            f"and its imports) took {startup:.1f} s on this machine, and a trial needs that "
            "plus reading the data, loading its backbone and one epoch of a linear probe; give "
            "--time-budget "
            f"{max(30, 10 * math.ceil(3 * startup / 10))} or more")


def nothing_completed_line(study, started_at: float, budget: float | None,
                           elapsed: float) -> str:
    """Why a run ended with no completed trial, always with a reason: the reasons of this
    run's trials (since ``started_at``, wall clock), else, under a time budget, the time the
    run took before a trial could start (``elapsed``: seconds since the process started)."""
    name = study.study_name
    reasons = list(dict.fromkeys(
        TrialRecord.from_frozen(t).reason for t in study.get_trials(deepcopy=False)
        if t.datetime_start is None or t.datetime_start.timestamp() >= started_at))
    reasons = [r for r in reasons if r]
    if reasons:
        more = f" (and {len(reasons) - 2} other reasons)" if len(reasons) > 2 else ""
        return f"no trial completed in study {name!r}: {'; '.join(reasons[:2])}{more}"
    if budget is not None:
        return (f"no trial completed in study {name!r}: none could start within --time-budget "
                f"{budget:g} s (start-up, the data and the study's preparation took {elapsed:.0f}"
                f" s); give --time-budget {max(30, 10 * math.ceil(3 * elapsed / 10))} or more")
    return f"no trial completed in study {name!r}; none ran"


def default_reserve(budget: float) -> float:
    """Seconds kept for the final writes before any has been measured: 10% of the budget,
    between 5 and 15 s (the report's plots take seconds on a loaded machine)."""
    return min(15.0, max(5.0, 0.1 * budget))


def reserve_for(write_seconds: float) -> float:
    """The reserve for a write measured at ``write_seconds``: 1.5x plus 2 s (the batch that
    is running at the stop, and the bookkeeping of the stopped trial)."""
    return 1.5 * write_seconds + 2.0


@dataclass
class Deadline:
    """The end of the run (``at``, wall-clock seconds) and the seconds kept before it for the
    final writes (``reserve``); trials use the time up to ``at - reserve``."""

    at: float
    reserve: float
    skipped: int = 0  # consecutive trials not started by the start rule (this worker)
    measured: bool = False  # the reserve is sized by a write of this process
    _last: float | None = None  # the running trial's last batch check
    _steps: list[float] = field(default_factory=list)  # its last seconds between checks
    _checks: int = 0  # the running trial's batch checks so far
    grace: float = 0.0  # extra seconds the running trial may use (the floor: see below)
    probe_floor: bool = False  # the running trial is a linear probe and nothing has completed

    def left(self) -> float:
        """Seconds left for trials (negative once spent)."""
        return self.at + self.grace - self.reserve - now()

    def floor_left(self) -> float:
        """Seconds a first linear probe may use: up to :data:`FLOOR_GRACE` past the end."""
        return self.at + FLOOR_GRACE - now()

    def trial_started(self) -> None:
        """Forget the batch times and the grace of the previous trial."""
        self._last, self._steps, self._checks, self.grace = None, [], 0, 0.0
        self.probe_floor = False

    def check(self) -> None:
        """Run at every batch boundary: raise :class:`TimeBudgetSpent` when the next batch,
        as long as the longest of the last three, would end after the time for trials. (The
        time between a trial's first two checks is not a batch: it encodes the training split.)
        """
        t = now()
        self._checks += 1
        if self._last is not None and self._checks > 2:
            self._steps = [*self._steps[-2:], t - self._last]
        self._last = t
        step = max(self._steps, default=0.0)
        if self.at + self.grace - self.reserve - t > step:
            return
        if self.probe_floor and self.grace == 0:  # a first probe goes on into the grace
            self.grant_grace()
            if self.at + self.grace - self.reserve - t > step:
                return
        raise TimeBudgetSpent

    def grant_grace(self) -> None:
        """Let the running trial end up to :data:`FLOOR_GRACE` seconds past the deadline (its
        writes after that, in what was the reserve)."""
        self.grace = self.reserve + FLOOR_GRACE

    def epoch_ended(self) -> None:
        """Forget the last batch check: what runs between one epoch's last batch and the
        next one's first (validation, the epoch's records) is not a batch."""
        self._last = None

    def can_start(self, study) -> bool:
        """Whether this worker may take another trial: time is left, the fastest configuration
        measured so far can reach its first report in it, and the last :data:`MAX_SKIPS`
        sampled configurations were not all too slow."""
        left = self.left()
        if left <= 0 and not completed(study) and self.floor_left() > 0:
            return self.skipped < MAX_SKIPS  # a first linear probe may still fit
        if left <= 0 or self.skipped >= MAX_SKIPS:
            return False
        fastest = min((r.seconds for r in _records(study)), default=None)
        return fastest is None or fastest <= left

    def measured_write(self, seconds: float) -> None:
        """Size the reserve by a write of the results that took ``seconds`` (a first write,
        which also imports the plotting libraries, is the slowest)."""
        self.reserve = reserve_for(seconds)
        self.measured = True


@dataclass
class _Record:
    backbone: str
    size: Any  # image_size or max_length, None when the space does not set one
    freeze: float
    batch_size: int
    seconds: float  # trial start to its first report
    method: str = "finetune"  # the tuning method (a LoRA step costs unlike a full one)


def _size(params: dict[str, Any]) -> Any:
    return params.get("image_size", params.get("max_length"))


def _records(study) -> list[_Record]:
    return [
        _Record(r.backbone or "?", _size(r.params), float(r.params.get("freeze_fraction", 0.0)),
                int(r.params.get("batch_size", 1)), float(r.first_report_seconds),
                str(r.params.get("method", "finetune")))
        for r in trial_records(study) if r.first_report_seconds is not None and r.params
    ]


def estimate_first_report(study, backbone: str, params: dict[str, Any], *,
                          costs: bool = True) -> float | None:
    """Seconds from a trial's start to its first report for this configuration, from the
    study's trials that reached one: those with the same backbone and input size, the nearest
    in freezing depth, tuning method and batch size (the slowest of equally near ones; the
    activation cache's cost is part of what they measured). Without such a trial, with
    ``costs``: the backbone's measured cost (its timed step,
    :func:`autotransfer.study.budget.backbone_cost.estimate`). None when neither is known."""
    same = [r for r in _records(study) if r.backbone == backbone and r.size == _size(params)]
    if not same:
        return estimate_for(study, backbone, params, 1) if costs else None
    freeze = float(params.get("freeze_fraction", 0.0))
    batch = math.log2(max(1, int(params.get("batch_size", 1))))
    method = str(params.get("method", "finetune"))

    def distance(r: _Record) -> float:  # another tuning method counts as far as another depth
        return round(abs(r.freeze - freeze) + 0.25 * abs(math.log2(r.batch_size) - batch)
                     + (r.method != method), 6)

    nearest = min(distance(r) for r in same)
    return max(r.seconds for r in same if distance(r) == nearest)


def share(study, lock, own_at: float | None) -> float | None:
    """The study's deadline for this worker: the earlier of its own (``own_at``, None without
    ``--time-budget``) and one stored by another run of the study that has not passed yet;
    stored for the other workers. None: no budget applies."""
    with lock.held():
        stored = StudyRecord.of(study).deadline
        current = stored if stored is not None and stored > now() else None
        if own_at is not None and (current is None or own_at < current):
            set_deadline(study, own_at)
            current = own_at
    return current


def make_deadline(study, lock, own_at: float | None, budget: float | None) -> Deadline | None:
    """The :class:`Deadline` of this process (see :func:`share`), with the reserve measured by
    earlier writes of this study's results or :func:`default_reserve`."""
    at = share(study, lock, own_at)
    if at is None:
        return None
    written = StudyRecord.of(study).write_seconds
    if written is not None:
        return Deadline(at, reserve_for(float(written)))
    return Deadline(at, default_reserve(budget if budget is not None else max(0.0, at - now())))


def completed(study) -> bool:
    """Whether any trial of ``study`` has completed."""
    from optuna.trial import TrialState

    return any(t.state == TrialState.COMPLETE for t in study.get_trials(deepcopy=False))


def not_starting(deadline: Deadline | None, study, backbone: str,
                 params: dict[str, Any], *, costs: bool = True,
                 probe: bool = False) -> str | None:
    """Why a sampled configuration must not start (its reason, ``time budget: ...``), or None:
    it cannot reach its first report (:func:`estimate_first_report`; ``costs``: also from the
    backbone's measured cost) in the time left. A configuration whose cost is not known
    starts while time is left. A linear probe (``probe``) of a study with no completed trial
    that does not fit starts anyway when it fits in :meth:`Deadline.floor_left`; it then has
    that grace while it runs (the caller says so: ``deadline.grace > 0``). One that starts in
    time is marked ``deadline.probe_floor``: should its batches run out of time, it gets the
    same grace (:meth:`Deadline.check`)."""
    if deadline is None:
        return None
    left = deadline.left()
    need = estimate_first_report(study, backbone, params, costs=costs)
    first_probe = probe and not completed(study)
    if left > 0 and (need is None or need <= left):
        deadline.skipped = 0
        deadline.probe_floor = first_probe
        return None
    if first_probe and (need or 0.0) <= deadline.floor_left():
        deadline.skipped = 0
        deadline.grant_grace()
        return None
    deadline.skipped += 1
    if left <= 0:
        return "time budget: not started, the time for trials is spent"
    return (f"time budget: not started, {backbone} needs ~{need:.0f}s to its first report and "
            f"{left:.0f}s are left")


def floor_grace(deadline: Deadline | None, need: float | None) -> bool:
    """Give the running trial, the study's best-ranked default configuration (the floor,
    which always starts: :mod:`autotransfer.study.references.share`), the grace of
    :data:`FLOOR_GRACE` seconds past the deadline when the ``need`` seconds it has left to
    run (at its start: its epochs at the backbone's measured cost; after an epoch: the epochs
    left at that epoch's pace) do not fit in the time left but end within the grace. Returns
    whether it did (``deadline.grace`` is then set until the trial ends). At a quarter of the
    oracle's image grid (37 s) MobileNetV2's default, the grid's best, started with 16 s left
    and was stopped after 2 of its 3 epochs by a 5 s epoch; the search returned a linear
    probe's score."""
    if deadline is None or need is None or deadline.grace > 0:
        return False
    if need <= deadline.left() or need > deadline.floor_left():
        return False
    deadline.grant_grace()
    return True


def stopping_after(deadline: Deadline | None, epoch: int, epochs: int,
                   epoch_seconds: float) -> str | None:
    """Why a trial stops at the end of ``epoch`` (``time budget: ...``), or None: the time is
    spent, or its next epoch (as long as this one, ``epoch_seconds`` with validation) cannot
    end in the time left."""
    if deadline is None or epoch >= epochs:
        return None
    left = deadline.left()
    if left >= epoch_seconds:
        return None
    return (f"time budget: stopped after epoch {epoch}/{epochs}, the next needs "
            f"~{epoch_seconds:.0f}s and {max(0.0, left):.0f}s are left")


def transfer_effect_fits(deadline: Deadline | None, study, wanted: bool | None,
                         progress=None) -> bool | None:
    """Whether the end-of-search transfer-effect run (the best configuration once more from
    random weights) may run: ``wanted`` as asked when there is no budget; under a budget, only
    when the best trial's duration fits in the time left (it is skipped, with a note, when not).

    Returns:
        ``wanted`` (``None`` keeps the default rule of
        :func:`autotransfer.study.references.trials.conclude`) or ``False`` when the budget leaves
        too little time.
    """
    if deadline is None or wanted is False:
        return wanted
    durations = [r.duration_seconds for r in trial_records(study, ("complete",))
                 if r.duration_seconds]
    if not durations:
        return wanted
    needs, left = max(durations), deadline.left()
    if needs <= left:
        return wanted
    if progress:
        progress.note(-1, f"transfer effect not measured: the time budget leaves "
                          f"{max(0.0, left):.0f}s and a trial takes ~{needs:.0f}s")
    return False
