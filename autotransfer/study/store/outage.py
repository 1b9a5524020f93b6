"""A database server that goes away for a while, or has too few connections for the workers.

Optuna's ``RDBStorage`` turns a lost connection into ``StorageInternalError`` at the next write;
in the trial loop the trial's own ``tell`` then fails too and Optuna's ``_run_trial`` ends in an
``UnboundLocalError``, with the trial left RUNNING. :class:`RetryingStorage` is an
``RDBStorage`` whose calls wait out an outage instead: a call that fails because the server
cannot be reached (SQLAlchemy's ``OperationalError`` or ``InterfaceError``, or a connection
invalidated under it) is tried again, with pauses from 0.5 s doubling up to 5 s, for
:func:`retry_seconds` (60 s; ``AUTOTRANSFER_STORAGE_RETRY``). The pool pings each connection
before use (SQLAlchemy's ``pool_pre_ping``), so the first call after the server is back opens a
new one (calls after one that waited in vain wait 2 s, so that the trial loop's cleanup
ends soon). The first failure says once that the storage is retried and for how long; a call still
failing after that is a :class:`StorageUnreachable` naming the server and the time waited.
Heartbeats are not retried: one that fails is skipped (the trial's next one records it).

:func:`check_connections` refuses, before any worker starts, a PostgreSQL server whose free
connections (``max_connections`` less the reserved and the used ones) are fewer than the
workers need (:data:`CONNECTIONS_PER_WORKER` each); at run time, "too many clients" is the same
line, never retried.
"""

from __future__ import annotations

import functools
import os
import sys
import time
from typing import Any

import optuna

from autotransfer.errors import StorageError, first_line

DEFAULT_RETRY = 60.0  # seconds a storage call waits for the database server to come back
# What one worker process holds: one connection, which its trial loop, its heartbeat thread
# and the study lock (a PostgreSQL advisory lock lives on it) take turns on
# (autotransfer.study.store.storage.POOL_KEPT).
CONNECTIONS_PER_WORKER = 1
_FULL = ("too many clients", "remaining connection slots", "too many connections")
# The RDBStorage calls that reach the database (the ones Optuna's trial loop and ours make).
_CALLS = (
    "create_new_study", "delete_study", "set_study_user_attr", "set_study_system_attr",
    "get_study_id_from_name", "get_study_name_from_id", "get_study_directions",
    "get_study_user_attrs", "get_study_system_attrs", "get_trial_user_attrs",
    "get_trial_system_attrs", "get_all_studies", "create_new_trial", "set_trial_param",
    "get_trial_param", "set_trial_state_values", "set_trial_intermediate_value",
    "set_trial_user_attr", "set_trial_system_attr", "get_trial_id_from_study_id_trial_number",
    "get_trial", "get_all_trials", "get_best_trial", "_get_stale_trial_ids",
)


class StorageUnreachable(StorageError):
    """The database server did not answer for :func:`retry_seconds`."""


def retry_seconds() -> float:
    """How long a storage call waits out an outage: ``AUTOTRANSFER_STORAGE_RETRY`` seconds
    (default 60).

    Raises:
        StorageError: the variable is not a number >= 0.
    """
    value = os.environ.get("AUTOTRANSFER_STORAGE_RETRY")
    if not value:
        return DEFAULT_RETRY
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not seconds >= 0:
        raise StorageError(f"AUTOTRANSFER_STORAGE_RETRY must be seconds >= 0, got {value!r}")
    return seconds


def _causes(exc: BaseException):
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def is_outage(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) says the server could not be reached."""
    from sqlalchemy import exc as sa

    # sa.TimeoutError: the process's one connection stayed busy with another thread's call
    # that waits for the server
    return any(isinstance(e, sa.OperationalError | sa.InterfaceError | sa.TimeoutError)
               or (isinstance(e, sa.DBAPIError) and e.connection_invalidated)
               for e in _causes(exc))


def cause_line(exc: BaseException) -> str:
    """The first line of the driver's own error under ``exc`` (Optuna wraps it in a
    ``StorageInternalError`` that guesses "invalid data in the commit")."""
    from sqlalchemy import exc as sa

    for e in _causes(exc):
        if isinstance(e, sa.DBAPIError) and e.orig is not None:
            return first_line(e.orig) or type(e.orig).__name__
    return first_line(exc) or type(exc).__name__


def too_many_clients(exc: BaseException) -> bool:
    """Whether ``exc`` is the server refusing a connection for want of free ones."""
    return any(any(s in str(e).lower() for s in _FULL) for e in _causes(exc))


def _full_line(shown: str, detail: str) -> str:
    return (f"storage {shown}: the database server has no free connection ({detail}); raise "
            "its max_connections (PostgreSQL: ALTER SYSTEM SET max_connections = N, then "
            "restart it) or run fewer --workers")


def _retrying(name: str, method):
    @functools.wraps(method)
    def call(self, *args: Any, **kwargs: Any) -> Any:
        give_up, pause = None, 0.5
        while True:
            try:
                value = method(self, *args, **kwargs)
                self.gave_up = False
                return value
            except Exception as exc:
                if not is_outage(exc):
                    raise
                if too_many_clients(exc):
                    raise StorageError(_full_line(self.shown, cause_line(exc))) from None
                if give_up is None:  # after one gave up, the cleanup's calls wait briefly
                    give_up = time.monotonic() + (min(self.retry, 2.0) if self.gave_up
                                                  else self.retry)
                    self.say_outage(exc)
                left = give_up - time.monotonic()
                if left <= 0:
                    self.gave_up = True
                    raise StorageUnreachable(
                        f"storage {self.shown}: the database server did not answer for "
                        f"{self.retry:.0f} s ({cause_line(exc)}); the running trial is failed "
                        "by the next run (its heartbeat stops); set "
                        "AUTOTRANSFER_STORAGE_RETRY to wait longer") from None
                time.sleep(min(pause, left))
                pause = min(2 * pause, 5.0)

    return call


class RetryingStorage(optuna.storages.RDBStorage):
    """Optuna's ``RDBStorage`` whose calls wait out a database outage (module docstring).

    Args:
        url, **kwargs: as ``optuna.storages.RDBStorage``.
        shown: the URL to print (password masked).
        retry: seconds to wait out an outage (None: :func:`retry_seconds`).
    """

    def __init__(self, url: str, *, shown: str, retry: float | None = None,
                 **kwargs: Any) -> None:
        self.shown = shown
        self.retry = retry_seconds() if retry is None else retry
        self._said = False
        self.gave_up = False  # the last call waited its whole time in vain
        super().__init__(url, **kwargs)

    def say_outage(self, exc: BaseException) -> None:
        """One line on stderr, the first time the server cannot be reached."""
        if not self._said:
            self._said = True
            print(f"warning: storage {self.shown} cannot be reached ({cause_line(exc)}); "
                  f"retrying for up to {self.retry:.0f} s", file=sys.stderr, flush=True)

    def record_heartbeat(self, trial_id: int) -> None:
        try:
            super().record_heartbeat(trial_id)
        except Exception as exc:  # a heartbeat missed in an outage: the next one records it
            if not is_outage(exc):
                raise


for _name in _CALLS:
    setattr(RetryingStorage, _name, _retrying(_name, getattr(optuna.storages.RDBStorage, _name)))


def check_connections(storage, workers: int, shown: str) -> None:
    """Refuse, in one line, a PostgreSQL server with fewer free connections than ``workers``
    processes need (:data:`CONNECTIONS_PER_WORKER` each); other servers are not checked.

    Raises:
        StorageError: naming ``max_connections``, the connections in use and the workers.
    """
    engine = getattr(storage, "engine", None)  # None: a journal file
    if engine is None or engine.dialect.name != "postgresql":
        return
    from sqlalchemy import text

    with engine.connect() as connection:
        limit = int(connection.execute(text("SHOW max_connections")).scalar())
        reserved = int(connection.execute(text("SHOW superuser_reserved_connections")).scalar())
        used = int(connection.execute(text(
            "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'"
        )).scalar())
    free = limit - reserved - used  # used: this process's own, which stays open
    needed = workers * CONNECTIONS_PER_WORKER
    if free < needed:
        raise StorageError(
            f"storage {shown}: the server's max_connections is {limit} ({reserved} reserved, "
            f"{used} in use), so {free} are free, and --workers {workers} need up to {needed} "
            f"({CONNECTIONS_PER_WORKER} each); raise max_connections (ALTER SYSTEM SET "
            "max_connections = N, then restart the server) or run fewer --workers")
