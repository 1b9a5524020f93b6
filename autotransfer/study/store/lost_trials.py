"""Trials left RUNNING by a worker that is gone: failed at once, with a reason, and said so.

A worker killed without a chance to record its trial (``kill -9``, a crash, a machine that went
down) leaves the trial RUNNING. Optuna's heartbeat (``RDBStorage(heartbeat_interval=...)``) fails
such a trial once it has been silent for the grace period, and
``RetryHeartbeatStaleTrialCallback`` queues its retry. That alone means a resumed search waits
in silence, and the failed trial has no reason. :func:`fail_lost_trials` adds what the storage
knows: a trial whose worker ran on this machine (its ``worker`` and ``worker_pid`` user attrs)
with a process id that no longer exists is failed now, without waiting for the heartbeat. Every
trial failed either way gets a reason and a warning.
"""

from __future__ import annotations

import copy
import os
import socket
import warnings

from autotransfer.finetune.records import FAIL_REASON, INTERRUPTED, TrialRecord
from autotransfer.study.store.storage import MAX_RETRY


def process_gone(worker: str | None, pid: int | None) -> bool:
    """True when ``worker`` (``host:pid``) ran on this machine and its process no longer exists.

    A process id may be reused by an unrelated process: then the trial is taken for alive, and
    the heartbeat fails it later (never the other way round).
    """
    if not worker or not pid:
        return False
    host = worker.rsplit(":", 1)[0]
    if host != socket.gethostname() or pid == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except (PermissionError, OverflowError, ValueError):
        return False
    return False


def fail_lost_trials(study) -> list[int]:
    """Fail the study's RUNNING trials whose worker is gone; returns their numbers.

    Gone: the worker process on this machine no longer exists, or (with heartbeats on) the
    trial's heartbeat is older than the storage's grace period. Each failed trial records why
    (``fail_reason``), is named in a warning, and goes to the storage's stale-trial callback
    (the retry of :data:`autotransfer.study.store.storage.MAX_RETRY`), as Optuna's own
    ``optuna.storages.fail_stale_trials`` does; this replaces that call.

    Uses Optuna's private ``study._storage``, ``FrozenTrial._trial_id`` and
    ``RDBStorage._get_stale_trial_ids`` (as ``fail_stale_trials`` itself does): check them on
    an Optuna upgrade.
    """
    import optuna
    from optuna.storages._heartbeat import is_heartbeat_enabled
    from optuna.trial import TrialState

    storage = study._storage
    running = {t._trial_id: t for t in study.get_trials(deepcopy=False,
                                                         states=(TrialState.RUNNING,))}
    if not running:
        return []
    lost: dict[int, str] = {}
    for trial_id, trial in running.items():
        record = TrialRecord.from_frozen(trial)
        worker = record.worker
        if process_gone(worker, record.worker_pid):
            lost[trial_id] = f"its worker {worker} is no longer running"
    heartbeat = is_heartbeat_enabled(storage)
    if heartbeat:
        grace = _grace(storage)
        for trial_id in storage._get_stale_trial_ids(study._study_id):
            if trial_id in running and trial_id not in lost:
                worker = TrialRecord.from_frozen(running[trial_id]).worker or "unknown"
                lost[trial_id] = (f"no heartbeat from its worker {worker} for over "
                                  f"{grace} s")
    failed = [t for t, why in lost.items() if _fail(storage, t, {FAIL_REASON: f"lost: {why}"})]
    callback = storage.get_heartbeat_stale_trial_callback() if heartbeat else None
    for trial_id in failed:
        number = running[trial_id].number
        retry = (f"; retried unless it was already retried {MAX_RETRY} times"
                 if callback is not None else "")
        warnings.warn(f"trial {number} was left RUNNING: {lost[trial_id]}; marked failed{retry}",
                      RuntimeWarning, stacklevel=2)
        if callback is not None:
            with warnings.catch_warnings():  # Optuna's retry callback is "experimental"
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                callback(study, copy.deepcopy(storage.get_trial(trial_id)))
    return [running[t].number for t in failed]


def fail_stopped_trials(study, reason: str) -> list[int]:
    """After a stop signal ended this machine's worker processes: fail the trials they left
    RUNNING (a worker killed after its grace, or one stopped before it could record its
    trial) as interrupted, with ``reason`` (``interrupted by SIGTERM``), so that none is left
    RUNNING once the search says the study is saved. Like the trials the workers failed
    themselves, they do not count towards the total and are not retried. Returns their
    numbers."""
    from optuna.trial import TrialState

    failed = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        record = TrialRecord.from_frozen(trial)
        if not process_gone(record.worker, record.worker_pid):
            continue
        if _fail(study._storage, trial._trial_id, {FAIL_REASON: reason, INTERRUPTED: True}):
            failed.append(trial.number)
    return failed


def _fail(storage, trial_id: int, attrs: dict) -> bool:
    """Set ``attrs`` and the state FAIL; False when the trial finished meanwhile (another
    worker failed it first, or it completed after all)."""
    import optuna
    from optuna.trial import TrialState

    try:
        for key, value in attrs.items():
            storage.set_trial_user_attr(trial_id, key, value)
        return storage.set_trial_state_values(trial_id, state=TrialState.FAIL)
    except optuna.exceptions.UpdateFinishedTrialError:
        return False


def _grace(storage) -> int | None:
    """Seconds without a heartbeat before a trial is failed (``RDBStorage.grace_period``,
    behind Optuna's cache wrapper ``_CachedStorage._backend``, or
    :mod:`autotransfer.study.store.journal`'s own)."""
    own = getattr(storage, "grace_period", None)  # the journal storage's
    return own if own is not None else getattr(getattr(storage, "_backend", storage),
                                               "grace_period", None)


def say_waiting(study, said: set[int]) -> None:
    """Warn once per trial when this worker waits for a RUNNING trial of another machine (it
    cannot tell whether that worker lives: the trial's heartbeat decides). Trials of this
    machine's live workers are waited for silently; those of dead ones were failed already."""
    from optuna.trial import TrialState

    grace = _grace(study._storage)
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker = TrialRecord.from_frozen(trial).worker
        if trial.number in said or not worker or worker.rsplit(":", 1)[0] == socket.gethostname():
            continue
        said.add(trial.number)
        after = f"; it is failed and retried after {grace} s without a heartbeat" if grace else ""
        warnings.warn(f"waiting for trial {trial.number}, running on {worker}{after}",
                      RuntimeWarning, stacklevel=2)
