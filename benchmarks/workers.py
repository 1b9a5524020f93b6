"""Trials per hour with 1, 2 and 4 workers, on PostgreSQL and on SQLite, side by side in one run.

The workload is fixed: ``--trials`` trials (default 8) of a random-init ``timm/test_efficientnet``
at 48 px for 2 epochs on 300 Fashion-MNIST images (Debian's ``dataset-fashion-mnist``), no
pruning. Each cell is one real ``autotransfer search --workers N`` run on a fresh study, timed
from the command's start to its end (worker start-up included). PostgreSQL is a throwaway
cluster on 127.0.0.1 (``apt-get install postgresql``).

    python benchmarks/workers.py [--trials 8] [--workers 1 2 4] [--rounds 1]

``--scale`` is the cluster-sized run (:mod:`workers_scale`): each of N workers its own command on
one study, a fraction killed or stopped and started again, with the figures of #40:

    python benchmarks/workers.py --scale --workers 8 16 32 --trials 96 \
        --storages postgresql journal sqlite [--kill-fraction 0.25]

Memory: each worker is a torch process of about 700 MiB, so 32 workers need about 22 GB.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # tests/services.py
sys.path.insert(0, str(Path(__file__).resolve().parent))  # workers_scale.py

from autotransfer.demo import export_fashion_mnist  # noqa: E402
from services import throwaway_postgres  # noqa: E402

SPACE = """\
backbones:
  - {id: timm/test_efficientnet, pretrained: false}
epochs: 2
pruner: none
params:
  lr: {type: float, low: 1.0e-3, high: 1.0e-2, log: true}
  batch_size: 32
  image_size: 48
"""


def timed_search(data: Path, space: Path, storage: str, study: str, trials: int,
                 workers: int, work: Path) -> float:
    """Seconds of one ``autotransfer search`` run (a fresh study)."""
    command = [sys.executable, "-m", "autotransfer.cli", "search", str(data), "--space",
               str(space), "--trials", str(trials), "--workers", str(workers), "--storage",
               storage, "--study", study, "--out", str(work / study)]
    start = time.perf_counter()
    run = subprocess.run(command, capture_output=True, text=True, cwd=work)
    seconds = time.perf_counter() - start
    if run.returncode != 0:
        raise SystemExit(f"{study} failed:\n{run.stdout[-2000:]}\n{run.stderr[-2000:]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--scale", action="store_true", help="N separate workers, with kills")
    parser.add_argument("--storages", nargs="+", default=["postgresql", "journal", "sqlite"])
    parser.add_argument("--kill-fraction", type=float, default=0.25)
    parser.add_argument("--kill-window", type=float, nargs=2, default=[20.0, 120.0],
                        metavar=("FROM", "TO"),
                        help="seconds after the start between which the workers are stopped")
    args = parser.parse_args()
    if args.scale:
        return scale(args)
    cores = len(os.sched_getaffinity(0))
    with tempfile.TemporaryDirectory() as tmp, throwaway_postgres() as postgres:
        work = Path(tmp)
        data = export_fashion_mnist(work / "fm", per_class=30, test_per_class=10, seed=0)
        space = work / "space.yaml"
        space.write_text(SPACE)
        backends = {"postgresql": postgres, "sqlite": f"sqlite:///{work / 'bench.db'}"}
        seconds: dict[tuple[str, int], list[float]] = {}
        for round_ in range(args.rounds):  # rounds interleave cells so that noise hits all
            for workers in args.workers:
                for backend, url in backends.items():
                    study = f"{backend}-w{workers}-r{round_}"
                    took = timed_search(data, space, url, study, args.trials, workers, work)
                    seconds.setdefault((backend, workers), []).append(took)
                    print(f"  {study}: {took:.1f}s", flush=True)
    print(f"\n{args.trials} trials per run, {cores} cores, median of {args.rounds} round(s)")
    print(f"{'workers':>8} {'threads':>8} | " + " | ".join(f"{b:>22}" for b in backends))
    base = {b: statistics.median(seconds[(b, args.workers[0])]) for b in backends}
    for workers in args.workers:
        cells = []
        for backend in backends:
            took = statistics.median(seconds[(backend, workers)])
            per_hour = args.trials / took * 3600
            cells.append(f"{per_hour:7.0f}/h {took:6.1f}s x{base[backend] / took:4.2f}")
        threads = max(1, cores // workers)
        print(f"{workers:>8} {threads:>8} | " + " | ".join(f"{c:>22}" for c in cells))


def scale(args) -> None:
    """The ``--scale`` run: per storage, one worker for the rate, then each worker count."""
    import contextlib

    from workers_scale import ConnectionPeak, MemoryPeak, run_workers, study_figures, worker_command

    from autotransfer.study.store.storage import make_storage, mask_url

    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        work = Path(tmp)
        data = export_fashion_mnist(work / "fm", per_class=30, test_per_class=10, seed=0)
        space = work / "space.yaml"
        space.write_text(SPACE)
        urls = {"journal": f"journal://{work / 'bench.log'}",
                "sqlite": f"sqlite:///{work / 'bench.db'}"}
        if "postgresql" in args.storages:
            urls["postgresql"] = stack.enter_context(throwaway_postgres())
        print(f"{len(os.sched_getaffinity(0))} cores; kill fraction {args.kill_fraction}, "
              f"stopped between {args.kill_window[0]:.0f} and {args.kill_window[1]:.0f} s",
              flush=True)
        print("storage     workers stopped  trials/min  x1-worker  gap s  trial s  gap/trial  dup"
              "  count/--trials  RUNNING  connections  RSS GiB  wall s", flush=True)
        for backend in args.storages:
            url, base = urls[backend], None
            for workers in [1, *args.workers]:
                study = f"{backend}-w{workers}"
                trials = min(args.trials, 4) if workers == 1 else args.trials
                command = worker_command(data, space, url, study, trials, work)
                if workers == 1:
                    print("  worker: " + " ".join(command).replace(url, mask_url(url)),
                          flush=True)
                peak = ConnectionPeak(url) if backend == "postgresql" else contextlib.nullcontext()
                with peak, MemoryPeak(work) as memory:
                    took, stopped = run_workers(command, workers,
                                                0 if workers == 1 else args.kill_fraction, work,
                                                window=tuple(args.kill_window))
                fig = study_figures(make_storage(url), study)
                rate = fig["complete"] / took * 60
                base = base or rate
                held = peak.peak if backend == "postgresql" else "-"
                print(f"{backend:<11} {workers:>7} {stopped:>7} {rate:>11.2f} {rate / base:>10.2f}"
                      f" {fig['gap']:>6.2f} {fig['trial']:>8.1f} {fig['gap'] / fig['trial']:>10.1%}"
                      f" {fig['duplicates']:>4} {fig['counted']:>7}/{trials:<7} {fig['running']:>8}"
                      f" {held:>12} {memory.peak:>8.1f} {took:>7.0f}", flush=True)


if __name__ == "__main__":
    main()
