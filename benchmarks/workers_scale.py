"""The scale run of ``benchmarks/workers.py --scale``: N worker processes on one study, some
killed or stopped at random moments and started again, as on a cluster (#40).

Each worker is its own ``autotransfer search`` command (what a Slurm array task or a Kubernetes
pod runs), all on one storage. While they run, ``--kill-fraction`` of them get SIGKILL or SIGTERM
(alternately) at a random moment, then the same command again (a requeue). Reported per
storage: trials completed per minute against a one-worker run of the same workload, the seconds
a worker spends between two of its trials (the storage, the study-wide lock and the sampler: an
upper bound of the storage time per trial) as a share of a trial, configurations duplicated among
trials that ran at the same time, the count at the end against ``--trials``, trials left RUNNING,
and for PostgreSQL the connections held at the server's peak (``pg_stat_activity``, polled).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import optuna
from optuna.trial import TrialState


def worker_command(data: Path, space: Path, storage: str, study: str, trials: int,
                   work: Path) -> list[str]:
    return [sys.executable, "-m", "autotransfer.cli", "search", str(data), "--space", str(space),
            "--trials", str(trials), "--storage", storage, "--study", study, "--heartbeat", "2",
            "--out", str(work / study)]


def run_workers(command: list[str], workers: int, kill_fraction: float, work: Path,
                seed: int = 0, window: tuple[float, float] = (20.0, 120.0)) -> tuple[float, int]:
    """Start ``workers`` copies of ``command``; stop ``kill_fraction`` of them once each at a
    random moment drawn uniformly from ``window`` (seconds after the start; SIGKILL and SIGTERM
    alternately) and start them again. Returns the seconds until all exited and how many were
    stopped (a victim that had already exited is not)."""
    rng = random.Random(seed)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    logs = [open(work / f"worker{i}.log", "a") for i in range(workers)]  # noqa: SIM115

    def start(i: int) -> subprocess.Popen:
        return subprocess.Popen(command, cwd=work, stdout=logs[i], stderr=subprocess.STDOUT,
                                env=env, start_new_session=True)

    began = time.perf_counter()
    procs = [start(i) for i in range(workers)]
    victims = rng.sample(range(workers), round(workers * kill_fraction))
    moments = sorted(rng.uniform(*window) for _ in victims)
    stopped = 0
    try:
        for n, (i, moment) in enumerate(zip(victims, moments, strict=True)):
            time.sleep(max(0.0, began + moment - time.perf_counter()))
            if procs[i].poll() is not None:
                continue
            os.killpg(procs[i].pid, signal.SIGKILL if n % 2 == 0 else signal.SIGTERM)
            procs[i].wait()
            stopped += 1
            procs[i] = start(i)  # requeued
        for process in procs:
            process.wait()
    finally:
        for process in procs:
            if process.poll() is None:
                process.kill()
                process.wait()
        for log in logs:
            log.close()
    return time.perf_counter() - began, stopped


class MemoryPeak:
    """The most resident memory (RSS, GiB) that the processes under ``work`` (the workers,
    started with ``cwd=work``) held together, polled every 0.5 s."""

    def __init__(self, work: Path) -> None:
        self.work, self.peak = str(work), 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        import psutil

        while not self._stop.wait(0.5):
            total = 0
            for process in psutil.process_iter(["cwd", "memory_info"]):
                if process.info["cwd"] == self.work and process.info["memory_info"]:
                    total += process.info["memory_info"].rss
            self.peak = max(self.peak, total / 2**30)

    def __enter__(self) -> MemoryPeak:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


class ConnectionPeak:
    """The most connections PostgreSQL held to ``url``'s database, polled every 0.2 s."""

    def __init__(self, url: str) -> None:
        from sqlalchemy import create_engine, text

        self._engine = create_engine(url, poolclass=__import__("sqlalchemy.pool").pool.NullPool)
        # client connections only: autovacuum workers also name the database
        self._query = text("SELECT count(*) FROM pg_stat_activity WHERE datname = "
                           "current_database() AND backend_type = 'client backend'")
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        while not self._stop.wait(0.2):
            with self._engine.connect() as connection:
                # minus this poller's own connection
                self.peak = max(self.peak, connection.execute(self._query).scalar() - 1)

    def __enter__(self) -> ConnectionPeak:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._engine.dispose()


def study_figures(storage, study_name: str) -> dict:
    """Count, RUNNING, duplicates among overlapping trials, and the gap between trials."""
    from autotransfer.finetune.records import TrialRecord
    from autotransfer.study.workers import tally

    def retry_of(trial) -> int | None:
        return TrialRecord.from_frozen(trial).retry_of

    study = optuna.load_study(study_name=study_name, storage=storage)
    trials = study.get_trials()
    finished = [t for t in trials if t.datetime_start and t.datetime_complete]
    duplicates = 0
    for i, a in enumerate(finished):
        for b in finished[i + 1:]:
            overlap = (a.datetime_start < b.datetime_complete
                       and b.datetime_start < a.datetime_complete)
            if overlap and a.params == b.params and retry_of(a) != b.number \
                    and retry_of(b) != a.number:
                duplicates += 1
    by_worker: dict = {}
    for t in sorted(finished, key=lambda t: t.datetime_start):
        by_worker.setdefault(TrialRecord.from_frozen(t).worker, []).append(t)
    gaps, lengths = [], []
    for runs in by_worker.values():
        for before, after in zip(runs, runs[1:], strict=False):
            gaps.append((after.datetime_start - before.datetime_complete).total_seconds())
        lengths += [(t.datetime_complete - t.datetime_start).total_seconds() for t in runs]
    complete = sum(t.state == TrialState.COMPLETE for t in trials)
    return {"counted": tally(study).counted, "complete": complete,
            "running": sum(t.state == TrialState.RUNNING for t in trials),
            "duplicates": duplicates,
            "gap": sorted(gaps)[len(gaps) // 2] if gaps else float("nan"),
            "trial": sorted(lengths)[len(lengths) // 2] if lengths else float("nan")}
