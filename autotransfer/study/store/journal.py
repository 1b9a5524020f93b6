"""Journal storage: a study in one append-only file on a shared file system (NFS, Lustre, a
cluster's home), for clusters without a database server.

``journal:///shared/study.log`` opens Optuna's ``JournalStorage`` with its file backend
(``optuna.storages.journal.JournalFileBackend``, optuna>=4.0) and ``JournalFileOpenLock``, the
lock Optuna recommends on network file systems (an ``open(O_CREAT|O_EXCL)`` file, which NFS makes
atomic, unlike the symlink lock). Optuna's journal storage has no heartbeat of its own (optuna 5.1
included); :class:`HeartbeatJournalStorage` adds one, so that a trial of a killed worker on any
machine is failed and retried as with an SQL database. Heartbeats are wall-clock times written by
the workers themselves: the machines' clocks must agree to well under the grace period
(``GRACE_FACTOR`` heartbeats, 60 s by default), which NTP gives.
"""

from __future__ import annotations

import contextlib
import json
import time
import warnings
from pathlib import Path

from autotransfer.errors import StorageError, first_line

SCHEME = "journal://"
# The trial system attribute holding a trial's last heartbeat (seconds since the epoch).
HEARTBEAT_ATTR = "autotransfer:heartbeat"
# Seconds after which Optuna's file lock is taken for stale (a worker killed while writing).
LOCK_GRACE = 30


def is_journal(url: str) -> bool:
    """Whether ``url`` names a journal file (``journal:///path/study.log``)."""
    return url.startswith(SCHEME)


def journal_path(url: str) -> Path:
    """The file of ``journal:///path`` (``journal:///~/x`` is in the home folder).

    Raises:
        StorageError: no path after ``journal://``.
    """
    path = url[len(SCHEME):]
    if path.startswith("/~"):
        path = path[1:]
    elif path.startswith("//"):  # journal:///{an absolute path}
        path = "/" + path.lstrip("/")
    if path in ("", "/"):
        raise StorageError(f"bad storage URL {url!r}: expected journal:///path/to/study.log")
    return Path(path).expanduser().resolve()


def make_journal_storage(url: str, *, heartbeat_interval: int | None, grace_factor: int,
                         max_retry: int, must_exist: bool = False):
    """A :class:`HeartbeatJournalStorage` on the file of ``url``.

    Raises:
        StorageError: the folder does not exist, the file does not exist (``must_exist``), or
            the file is not an Optuna journal.
    """
    import optuna
    from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock

    path = journal_path(url)
    if not path.parent.is_dir():
        raise StorageError(f"storage {url}: folder {path.parent} does not exist")
    if must_exist and not path.is_file():
        raise StorageError(f"storage {url}: no such journal file {path}")
    created = not path.exists()
    if not created:
        _check_journal(path, url)
    try:
        with warnings.catch_warnings():  # the file lock is "experimental" in some versions
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            backend = JournalFileBackend(
                str(path), lock_obj=JournalFileOpenLock(str(path), grace_period=LOCK_GRACE))
            callback = None
            if heartbeat_interval is not None:
                callback = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=max_retry)
            return HeartbeatJournalStorage(
                backend, path=path, heartbeat_interval=heartbeat_interval,
                grace_period=None if heartbeat_interval is None
                else grace_factor * heartbeat_interval, callback=callback)
    except Exception as exc:  # e.g. a record Optuna cannot replay
        if created:
            path.unlink(missing_ok=True)
        raise StorageError(f"cannot open storage {url}: {first_line(exc) or type(exc).__name__}"
                           ) from None


def _check_journal(path: Path, url: str) -> None:
    """Raise a StorageError unless ``path`` is empty or starts with an Optuna journal record
    (a JSON object with an ``op_code``), so that another application's file stays as it is."""
    try:
        with path.open("rb") as handle:
            first = handle.readline()
    except OSError as exc:
        raise StorageError(f"cannot open storage {url}: {exc.strerror or exc}") from None
    if not first:
        return
    try:
        record = json.loads(first)
    except ValueError:
        record = None
    if not isinstance(record, dict) or "op_code" not in record:
        raise StorageError(f"storage {url}: {path} is not an Optuna journal file (its first line "
                           "is not a journal record); left unchanged")


def _storage_class():
    from optuna.storages import JournalStorage
    from optuna.storages._heartbeat import BaseHeartbeat

    class _HeartbeatJournalStorage(JournalStorage, BaseHeartbeat):
        """Optuna's ``JournalStorage`` with heartbeats kept as a trial system attribute."""

        engine = None  # no SQL: the transfer history is not kept (it needs tables)

        def __init__(self, backend, *, path: Path, heartbeat_interval, grace_period,
                     callback) -> None:
            super().__init__(backend)
            self.path = path
            self.lock_path = Path(f"{path}.study-lock")  # the study-wide lock's file
            self.heartbeat_interval = heartbeat_interval
            self.grace_period = grace_period
            self._callback = callback

        def record_heartbeat(self, trial_id: int) -> None:
            # the trial may finish between two beats: a late beat is no error
            with contextlib.suppress(RuntimeError, ValueError):
                self.set_trial_system_attr(trial_id, HEARTBEAT_ATTR, time.time())

        def _get_stale_trial_ids(self, study_id: int) -> list[int]:
            from optuna.trial import TrialState

            if self.grace_period is None:
                return []
            now = time.time()
            stale = []
            for trial in self.get_all_trials(study_id, deepcopy=False,
                                             states=(TrialState.RUNNING,)):
                beat = trial.system_attrs.get(HEARTBEAT_ATTR)
                if beat is None and trial.datetime_start is not None:
                    beat = trial.datetime_start.timestamp()
                if beat is not None and now - beat > self.grace_period:
                    stale.append(trial._trial_id)
            return stale

        def get_heartbeat_interval(self) -> int | None:
            return self.heartbeat_interval

        def get_heartbeat_stale_trial_callback(self):
            return self._callback

        def get_failed_trial_callback(self):  # its name before optuna 4.9
            return self._callback

    return _HeartbeatJournalStorage


def HeartbeatJournalStorage(backend, **kwargs):  # noqa: N802 (a class, built lazily)
    """Optuna's ``JournalStorage`` plus Optuna's heartbeat interface (``BaseHeartbeat``):
    ``record_heartbeat`` writes the time to the trial, ``_get_stale_trial_ids`` lists RUNNING
    trials silent for over ``grace_period`` seconds. Built on first use, so that importing this
    module does not import Optuna."""
    global _CLASS
    if _CLASS is None:
        _CLASS = _storage_class()
    return _CLASS(backend, **kwargs)


_CLASS = None
