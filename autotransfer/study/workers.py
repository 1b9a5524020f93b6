"""Many workers, one study: the trial loop every worker runs, and local worker processes.

Every worker, in this process or another one on any machine, runs :func:`run_trials` on the same
storage. The study's total (``--trials``) is kept exact by a study-wide lock
(:class:`autotransfer.study.store.storage.StudyLock`) around "count, then take the next trial". A
trial that counts is any trial of the study (running and queued ones included) except a failed
one that was retried, whose retry (a copy queued by Optuna's ``RetryHeartbeatStaleTrialCallback``)
takes its place, one interrupted by Ctrl-C, which the next run makes up for, and one that a
time budget did not let start (:mod:`autotransfer.study.budget.timebudget`).
"""

from __future__ import annotations

import contextlib
import gc
import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from autotransfer.errors import AutotransferError
from autotransfer.finetune.records import TrialRecord, TrialWriter, next_worker_number
from autotransfer.study.references.queue import release_pending
from autotransfer.study.store.lost_trials import fail_lost_trials, say_waiting
from autotransfer.study.store.storage import StudyLock, worker_name

THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
# Seconds a stopped worker has to record its trial as failed before it is killed.
STOP_GRACE = 10
# Seconds between looks while a linear probe runs elsewhere and the references wait for its score:
# a probe takes seconds, and the waiting worker is idle until it ends (at the heartbeat-scale
# poll, a second worker sat out 5 s of a 7-trial search that took 6 s).
PROBE_POLL = 0.2
# Set when this worker process is told to stop: it starts no further trial.
_STOP = threading.Event()
# The signals that stop a search like Ctrl-C: the running trial fails with a reason, the
# results are written, and the exit status is 128 + the signal's number (130, 143, 129).
STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP")
                     if hasattr(signal, name))
_STOPPED_BY: list[int] = []  # the last stop signal this process received (kept until read)


@dataclass
class Tally:
    counted: int  # trials that count towards --trials (retried, interrupted, not started: not)
    running: int
    waiting: int
    retried: int  # failed trials replaced by a retry


def tally(study) -> Tally:
    """Count the study's trials the way ``--trials`` counts them."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    retried = {n for t in trials for n in t.system_attrs.get("retry_history", ())}
    records = [TrialRecord.from_frozen(t) for t in trials]
    return Tally(
        counted=sum(r.number not in retried and not r.interrupted and not r.not_started
                    for r in records),
        running=sum(t.state == TrialState.RUNNING for t in trials),
        waiting=sum(t.state == TrialState.WAITING for t in trials),
        retried=len(retried),
    )


def _retry_of(trial) -> int | None:
    """The failed trial that ``trial`` retries (None for a new trial).

    Optuna's ``RetryHeartbeatStaleTrialCallback`` records it as the system attribute
    ``failed_trial``, which a running ``optuna.Trial`` does not expose; this reads it through
    the private ``trial._trial_id``, the one such access here (check it on an Optuna upgrade).
    """
    return trial.storage.get_trial_system_attrs(trial._trial_id).get("failed_trial")


def join_study(study, lock: StudyLock) -> int:
    """Give this worker the study's next worker number (0 for the first worker ever)."""
    with lock.held():
        return next_worker_number(study)


@contextlib.contextmanager
def frozen_heap():
    """What exists before the trials (modules, the data, the storage) is left out of the
    garbage collector's passes while they run (``gc.freeze``), then put back: the full
    collection before and after each trial took 0.5 s on a 2-core machine with torch and
    timm loaded, and now scans only what the trials allocated."""
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


@frozen_heap()
def run_trials(
    study,
    objective: Callable,
    *,
    lock: StudyLock,
    trials: int | None,
    timeout: float | None,
    callbacks: list[Callable] = (),  # type: ignore[assignment]
    poll: float = 1.0,
    deadline=None,
) -> None:
    """Run trials until the study holds ``trials`` counted trials, none of them running.

    Each step, under the study lock: fail the trials of dead workers (which queues their
    retries), count, and take a queued retry or a new trial when there is room. When the study
    is full but other workers' trials still run, wait for them: one of them may die and need a
    retry. ``timeout`` stops starting trials (and waiting) after that many seconds; a
    ``deadline`` (:class:`autotransfer.study.budget.timebudget.Deadline`) when no trial can
    reach its first report before it.
    """
    import optuna

    started = time.monotonic()
    me = worker_name()
    said: set[int] = set()  # the trials of other machines this worker said it waits for

    def locked_objective(trial: optuna.Trial) -> float:
        # The trial exists and its heartbeat runs: the next worker may count it now. What this
        # worker records on its own trial needs no lock (it held it 0.05 s a trial longer).
        lock.release()
        TrialWriter(trial).worker(me, os.getpid(), _retry_of(trial))
        return objective(trial)

    while ((timeout is None or time.monotonic() - started < timeout) and not _STOP.is_set()
           and (deadline is None or deadline.can_start(study))):
        lock.acquire()
        try:
            fail_lost_trials(study)  # dead workers' trials: failed now, with a reason
            now = tally(study)
            # the references held for the probes' scores (autotransfer.study.references.queue)
            probe_runs = release_pending(study, None if trials is None else trials - now.counted)
            if not probe_runs and (trials is None or now.counted < trials or now.waiting):
                remaining = None if timeout is None else timeout - (time.monotonic() - started)
                with storage_outage():
                    study.optimize(locked_objective, n_trials=1, timeout=remaining,
                                   catch=(Exception,), callbacks=list(callbacks))
                continue
        finally:
            lock.release()
        if probe_runs:  # the references wait for a probe that runs elsewhere
            time.sleep(min(poll, PROBE_POLL))
            continue
        if not now.running:
            return
        say_waiting(study, said)  # a trial of another machine: say that this worker waits
        time.sleep(poll)  # full, but another worker's trial may still fail and come back


@contextlib.contextmanager
def storage_outage():
    """A database outage longer than the storage waits
    (:class:`autotransfer.study.store.outage.StorageUnreachable`) ends Optuna's trial loop in
    whatever its cleanup raised next (an ``UnboundLocalError``): raise the outage's one line."""
    from autotransfer.study.store.outage import StorageUnreachable

    try:
        yield
    except Exception as exc:
        cause: BaseException | None = exc
        while cause is not None and not isinstance(cause, StorageUnreachable):
            cause = cause.__cause__ or cause.__context__
        if cause is None or cause is exc:
            raise
        raise cause from None


def cpu_threads(workers: int) -> int:
    """Torch threads per worker so that the workers together use each core once."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return max(1, cores // workers)


def worker_device(device: str, index: int) -> str:
    """``auto`` and ``cuda`` spread workers over the GPUs: worker i gets ``cuda:(i % n)``."""
    if device not in ("auto", "cuda"):
        return device
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count == 0:
        return device  # resolve_device says what is wrong with "cuda"
    return f"cuda:{index % count}"


@dataclass
class WorkerSpec:
    """What a worker process needs to rebuild the search (everything picklable).

    ``options`` are the search's (``SearchOptions``, with the study's name and the parsed,
    pre-screened space); ``device`` is this worker's (``cuda:i`` spreads workers over GPUs).
    """

    options: Any  # SearchOptions
    index: int
    device: str
    threads: int
    progress: Any = None
    reserve: float = 0.0  # --time-budget: the seconds the search keeps for its final writes


def stop_requested() -> bool:
    """True in a worker process that was told to stop (its trial ends at the next epoch)."""
    return _STOP.is_set()


def stopped_by(*, forget: bool = False) -> int | None:
    """The stop signal (``signal.SIGINT``, ``SIGTERM`` or ``SIGHUP``) this process last
    received, None when none; ``forget`` clears it (the command that saw it has ended)."""
    signum = _STOPPED_BY[-1] if _STOPPED_BY else None
    if forget:
        _STOPPED_BY.clear()
    return signum


def stop_reason() -> str:
    """How the running trial was stopped, for its recorded reason: ``Ctrl-C (SIGINT)``,
    ``SIGTERM``, ``SIGHUP``, or ``a stopped worker``."""
    signum = stopped_by()
    if signum is None:
        return "a stopped worker"
    name = signal.Signals(signum).name
    return "Ctrl-C (SIGINT)" if name == "SIGINT" else name


def _note_signal(signum) -> None:
    _STOPPED_BY[:] = [signum]


def _interrupt(signum, frame):
    _note_signal(signum)
    _STOP.set()
    raise KeyboardInterrupt  # may be swallowed (e.g. inside a gc callback): the flag stays


def _worker_interrupt(signum, frame):
    """A worker's stop handler: the first stop signal interrupts its trial; later ones are
    ignored while that trial records its failure. A process-group SIGTERM (``docker stop``,
    Slurm) is followed by the search's own ``terminate()``: a second KeyboardInterrupt raised
    inside Optuna's ``tell`` left the trial RUNNING, or FAIL without its reason. A worker that
    does not end within ``STOP_GRACE`` seconds is killed by the search."""
    if _STOP.is_set():
        _note_signal(signum)
        return
    _interrupt(signum, frame)


@contextlib.contextmanager
def stop_on_interrupt():
    """Trials run in this (main) thread: Ctrl-C, SIGTERM and SIGHUP (``STOP_SIGNALS``) raise
    KeyboardInterrupt and set the stop flag, so that a KeyboardInterrupt swallowed by a gc
    callback (SQLAlchemy's) still stops the trial at its next epoch. The handlers and the flag
    are reset on the way out (:func:`stopped_by` still tells which signal came)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signum: signal.signal(signum, _interrupt) for signum in STOP_SIGNALS}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        _STOP.clear()


def worker_main(target: Callable[[WorkerSpec], None], spec: WorkerSpec) -> None:
    """Entry point of a worker process: its threads, then ``target(spec)`` (the search's
    ``run_worker``: the shared trial loop)."""
    import torch

    for signum in STOP_SIGNALS:  # a stopped worker fails its trial cleanly
        signal.signal(signum, _worker_interrupt)
    torch.set_num_threads(spec.threads)
    try:
        if spec.progress is not None and hasattr(spec.progress, "worker"):
            spec.progress.worker = spec.index  # tags its lines (the CLI's ConsoleProgress)
        target(spec)
    except AutotransferError as exc:
        print(f"error: worker {spec.index}: {exc}", file=sys.stderr, flush=True)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)


def run_local_workers(specs: list[WorkerSpec], target: Callable[[WorkerSpec], None],
                      stop_at: float | None = None) -> list[int]:
    """Start one process per spec running ``target(spec)`` (a module-level function) and wait
    for all; Ctrl-C stops them, and so does the wall clock (``time.time()``) passing
    ``stop_at`` (a time budget's last resort: the workers stop their trials themselves before
    it). Returns exit codes."""
    context = multiprocessing.get_context("spawn")
    saved = {name: os.environ.get(name) for name in THREAD_VARIABLES}
    processes = []
    try:
        for spec in specs:
            for name in THREAD_VARIABLES:  # read by the child's libraries when they load
                os.environ[name] = str(spec.threads)
            process = context.Process(target=worker_main, args=(target, spec),
                                      name=f"autotransfer-worker-{spec.index}")
            process.start()
            processes.append(process)
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    # Ctrl-C, SIGTERM and SIGHUP only set a flag here: an exception raised from a signal
    # handler can land in a gc callback and be swallowed. The wait below sees the flag.
    stop = threading.Event()
    handlers = {}

    def on_signal(signum, _frame) -> None:
        _note_signal(signum)
        stop.set()

    if threading.current_thread() is threading.main_thread():
        for signum in STOP_SIGNALS:
            handlers[signum] = signal.signal(signum, on_signal)
    try:
        waiting = {p.sentinel: p for p in processes}
        while waiting and not stop.is_set():
            if stop_at is not None and time.time() > stop_at:
                break
            for sentinel in multiprocessing.connection.wait(list(waiting), timeout=0.5):
                waiting.pop(sentinel).join()
    finally:  # interrupted, or an error here: stop the workers (their trials fail), wait for them
        alive = [p for p in processes if p.is_alive()]
        for process in alive:
            process.terminate()
        deadline = time.monotonic() + (STOP_GRACE if stop_at is None else 2.0)
        for process in alive:
            process.join(timeout=max(0.0, deadline - time.monotonic()))
            if process.is_alive():  # its trial turns FAIL with its heartbeat, and is retried
                process.kill()
                process.join()
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
    if stop.is_set():
        raise KeyboardInterrupt
    return [p.exitcode for p in processes]
