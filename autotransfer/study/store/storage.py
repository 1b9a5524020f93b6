"""Storage URLs: validation, password masking, Optuna's RDB storage with heartbeats, and the
study-wide lock that makes ``--trials`` exact across workers."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import socket
import sqlite3
import threading
import time
import warnings
import weakref
from collections.abc import Iterator
from pathlib import Path

from autotransfer.errors import StorageError, first_line
from autotransfer.study.store.journal import is_journal, make_journal_storage
from autotransfer.study.store.sqlite_files import check_sqlite_file

DEFAULT_STORAGE = "sqlite:///autotransfer.db"
_EXAMPLES = ("sqlite:///autotransfer.db, postgresql+psycopg://user@host/dbname or "
             "journal:///shared/study.log")
# Seconds between a running trial's heartbeats.
DEFAULT_HEARTBEAT = 20
# A worker that records no heartbeat for GRACE_FACTOR heartbeat intervals is taken for dead.
GRACE_FACTOR = 3
# How many times a dead worker's trial is retried before it stays failed.
MAX_RETRY = 2
# Connections a worker process opens to a database server: one, kept open (SQLAlchemy's
# pool_size, no overflow); its trial loop, heartbeat thread and the study lock take turns.
POOL_KEPT = 1


def mask_url(url: str) -> str:
    """``url`` with any password replaced by ``***`` (safe to print or save)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    if is_journal(url):  # a file path: no password
        return url
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparseable storage URL>"


def _sqlite_file(parsed) -> Path | None:
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database).expanduser().resolve()


def make_storage(url: str, *, heartbeat_interval: int | None = None, must_exist: bool = False):
    """An ``optuna.storages.RDBStorage`` for ``url``, or for ``journal:///path`` Optuna's
    ``JournalStorage`` on that file (:mod:`autotransfer.study.store.journal`, with heartbeats);
    bad URLs are one-line StorageErrors.

    A leading ``~`` in an SQLite path is the home folder. SQLite files are switched to
    write-ahead logging and wait up to 60 s for a lock, so that a
    few local worker processes share one file (readers no longer block the writer). Other
    servers get one pre-pinged connection per process, kept open (``POOL_KEPT``; the
    threads and the study lock take turns on it), and calls that wait out an outage of the server
    (:class:`autotransfer.study.store.outage.RetryingStorage`, 60 s by default). With
    ``heartbeat_interval`` (seconds), every running trial records a heartbeat; a trial silent
    for ``GRACE_FACTOR`` intervals is failed by the next worker that starts a trial, and
    re-queued up to ``MAX_RETRY`` times.

    Args:
        url: an SQLAlchemy URL, e.g. ``sqlite:///autotransfer.db`` or
            ``postgresql+psycopg://user:password@host/dbname``, or ``journal:///path/study.log``.
        heartbeat_interval: seconds between heartbeats; None turns heartbeats off.
        must_exist: an SQLite file that does not exist is an error instead of being created.

    Raises:
        StorageError: a malformed URL, a missing database driver, an SQLite file that does not
            exist (``must_exist``), is another application's or needs an Optuna schema upgrade
            (:mod:`autotransfer.study.store.sqlite_files`; such a file is left unchanged), or a
            database that cannot be reached. A new SQLite file is removed again on failure.
    """
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    if heartbeat_interval is not None and heartbeat_interval < 1:
        raise StorageError(f"heartbeat interval must be >= 1 second, got {heartbeat_interval}")
    if is_journal(url):
        return make_journal_storage(url, heartbeat_interval=heartbeat_interval,
                                    grace_factor=GRACE_FACTOR, max_retry=MAX_RETRY,
                                    must_exist=must_exist)
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise StorageError(
            f"bad storage URL {url!r}: expected an SQLAlchemy URL such as {_EXAMPLES}"
        ) from None
    shown = parsed.render_as_string(hide_password=True)
    engine_kwargs: dict = {}
    sqlite_file = _sqlite_file(parsed)
    if parsed.get_backend_name() == "sqlite":
        engine_kwargs = {"connect_args": {"timeout": 60}}
        if sqlite_file is None:  # in memory: one process, and a connection per thread
            heartbeat_interval = None
    else:
        engine_kwargs = {"pool_pre_ping": True}
    created = False
    if sqlite_file is not None:
        if not sqlite_file.parent.is_dir():
            raise StorageError(f"storage {shown}: folder {sqlite_file.parent} does not exist")
        if must_exist and not sqlite_file.is_file():
            raise StorageError(f"storage {shown}: no such database file {sqlite_file}")
        check_sqlite_file(sqlite_file, shown)  # another application's file stays as it is
        url = _expand_home(url, parsed.database)
        created = not sqlite_file.exists()
    try:
        if sqlite_file is not None:
            _use_wal(sqlite_file, shown)
        return _rdb_storage(url, engine_kwargs, heartbeat_interval, parsed, shown)
    except StorageError:
        if created:  # no half-made database left behind
            for suffix in ("", "-wal", "-shm", "-journal"):
                Path(f"{sqlite_file}{suffix}").unlink(missing_ok=True)
        raise


def _expand_home(url: str, database: str) -> str:
    """``url`` with a leading ``~`` of its SQLite file expanded, as in every other path
    (SQLite itself would open a folder literally named ``~``)."""
    if not database.startswith("~"):
        return url
    head, sep, tail = url.partition(":///")
    path, query, rest = tail.partition("?")
    return f"{head}{sep}{os.path.expanduser(path)}{query}{rest}"


def _rdb_storage(url: str, engine_kwargs: dict, heartbeat_interval: int | None, parsed,
                 shown: str):
    import optuna
    from sqlalchemy.exc import NoSuchModuleError

    try:
        with warnings.catch_warnings():  # heartbeats are "experimental" since optuna 2.8
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            heartbeat = {}
            if heartbeat_interval is not None:
                heartbeat = {
                    "heartbeat_interval": heartbeat_interval,
                    "grace_period": GRACE_FACTOR * heartbeat_interval,
                    "heartbeat_stale_trial_callback":
                        optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY),
                }
            if parsed.get_backend_name() == "sqlite":  # a local file: no server to wait for
                return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs, **heartbeat)
            from autotransfer.study.store.outage import RetryingStorage

            # One connection per worker process, shared by its trial loop, its heartbeat
            # thread and the study lock (which lives on it, StudyLock): SQLAlchemy's default
            # pool kept 3 open for a worker's life, and an overflow connection opened for
            # every locked section churned 1.6 per worker at the server's peak (#40).
            # Optuna's first start on a new database nests a second connection: one is allowed
            # until the storage is made, none after.
            engine_kwargs = {**engine_kwargs, "pool_size": POOL_KEPT, "max_overflow": 1}
            storage = RetryingStorage(url, shown=shown, engine_kwargs=engine_kwargs, **heartbeat)
            _no_overflow(storage.engine.pool)
            return storage
    except (NoSuchModuleError, ModuleNotFoundError, ImportError):
        hint = ""
        if parsed.get_backend_name() == "postgresql":
            hint = "; pip install 'psycopg[binary]' and use postgresql+psycopg://"
        raise StorageError(
            f"storage {shown}: no database driver for {parsed.drivername!r}{hint}"
        ) from None
    except StorageError:
        raise
    except Exception as exc:
        from autotransfer.study.store.outage import too_many_clients

        detail = first_line(exc) or type(exc).__name__
        if too_many_clients(exc):
            detail += ("; raise the server's max_connections (ALTER SYSTEM SET max_connections"
                       " = N, then restart it) or run fewer --workers")
        raise StorageError(f"cannot open storage {shown}: {detail}") from None


def _no_overflow(pool) -> None:
    """No connection past ``pool_size`` from now on: a thread that needs one while another
    uses it waits for it (SQLAlchemy's private ``QueuePool._max_overflow``, which its
    ``max_overflow`` argument sets; check it on an SQLAlchemy upgrade: a test counts the
    connections a worker opens)."""
    if hasattr(pool, "_max_overflow"):
        pool._max_overflow = 0


def _use_wal(path: Path, shown: str) -> None:
    """Switch an SQLite file to write-ahead logging (a setting the file keeps)."""
    try:
        connection = sqlite3.connect(path, timeout=60)
        try:
            connection.execute("PRAGMA journal_mode=WAL").fetchall()
        finally:
            connection.close()
    except sqlite3.Error as exc:
        raise StorageError(f"cannot open storage {shown}: {exc}") from None


class StudyLock:
    """A lock held by one worker at a time, on every machine that shares the storage.

    PostgreSQL: a session-level advisory lock; MySQL: ``GET_LOCK``; an SQLite file: ``flock``
    on a file next to it (SQLite is shared by processes of one machine only); a journal file:
    ``flock`` on ``<file>.study-lock`` beside it (Linux's NFS client turns it into an NFS
    byte-range lock, which the server drops when the holder's machine dies: no stale lock).
    Other backends: no lock, and the study may overshoot ``--trials`` by a trial when workers
    start trials at the same instant.

    On a server the lock lives on the worker's one pooled connection (``make_storage``: one
    per process, :data:`POOL_KEPT`), which it does not keep checked out: the storage calls made
    under the lock, and the heartbeat thread's, use the same connection, so that taking the
    lock opens none. A worker waiting for it asks again (``pg_try_advisory_lock``) after
    :data:`LOCK_POLL` seconds at first, doubling up to :data:`LOCK_POLL_MAX`; threads of one
    process take it in turn (a server's lock is re-entrant within one connection).
    ``release`` may be called more than once.
    """

    def __init__(self, storage, study_name: str) -> None:
        self._storage = storage
        digest = hashlib.sha256(study_name.encode()).digest()
        self._key = int.from_bytes(digest[:8], "big", signed=True)
        self._name = "autotransfer-" + digest[:16].hex()
        self._release = None

    def acquire(self) -> None:
        if self._release is not None:  # already held by this object
            return
        lock_path = getattr(self._storage, "lock_path", None)  # a journal file's
        engine = getattr(self._storage, "engine", None)
        backend = engine.dialect.name if engine is not None else None
        if lock_path is not None or backend == "sqlite":
            if lock_path is None:
                path = engine.url.database
                if path in (None, "", ":memory:"):
                    return
                lock_path = f"{Path(path).expanduser().resolve()}.lock"
            release = _flock(lock_path)
        elif backend == "postgresql":
            release = _server_lock(engine, "SELECT pg_try_advisory_lock(:k)",
                                   "SELECT pg_advisory_unlock(:k)", {"k": self._key})
        elif backend in ("mysql", "mariadb"):
            release = _server_lock(engine, "SELECT GET_LOCK(:n, 0)", "SELECT RELEASE_LOCK(:n)",
                                   {"n": self._name})
        else:
            return
        self._release = release

    def release(self) -> None:
        release, self._release = self._release, None
        if release is not None:
            release()

    @contextlib.contextmanager
    def held(self) -> Iterator[StudyLock]:
        self.acquire()
        try:
            yield self
        finally:
            self.release()


# Seconds a worker waits before it asks for the study lock again, at first and at most.
LOCK_POLL = 0.005
LOCK_POLL_MAX = 0.05
# One lock per engine and key for the threads of this process (the note's thread, the loop).
_THREAD_LOCKS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_THREAD_LOCKS_GUARD = threading.Lock()


def _server_lock(engine, take: str, give_back: str, args: dict):
    """Take a database server's named lock on ``engine``'s pooled connection, asking again
    until ``take`` (a try-lock statement) says yes; returns its release (``give_back``)."""
    from sqlalchemy import text

    with _THREAD_LOCKS_GUARD:
        mine = _THREAD_LOCKS.setdefault(engine, {}).setdefault(tuple(args.values()),
                                                               threading.Lock())
    mine.acquire()
    try:
        pause = LOCK_POLL
        while True:
            with engine.connect() as connection:  # checked out for one statement only
                taken = connection.execute(text(take), args).scalar()
                connection.commit()
            if taken:
                break
            time.sleep(pause)
            pause = min(2 * pause, LOCK_POLL_MAX)
    except BaseException:
        mine.release()
        raise

    def release() -> None:
        try:
            with engine.connect() as connection:  # the one pooled connection: the lock's
                connection.execute(text(give_back), args)
                connection.commit()
        finally:
            mine.release()

    return release


def _flock(path):
    """Hold an exclusive ``flock`` on ``path`` (created if need be); returns its release."""
    handle = open(path, "a")  # noqa: SIM115
    fcntl.flock(handle, fcntl.LOCK_EX)

    def release() -> None:
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()

    return release


def worker_name() -> str:
    """``host:pid`` of this process, as recorded on each trial it runs."""
    return f"{socket.gethostname()}:{os.getpid()}"
