"""Trials per hour with 1, 2 and 4 workers, on PostgreSQL and on SQLite, side by side in one run.

The workload is fixed: ``--trials`` trials (default 8) of a random-init ``timm/test_efficientnet``
at 48 px for 2 epochs on 300 Fashion-MNIST images (Debian's ``dataset-fashion-mnist``), no
pruning. Each cell is one real ``autotransfer search --workers N`` run on a fresh study, timed
from the command's start to its end (worker start-up included). PostgreSQL is a throwaway
cluster on 127.0.0.1 (``apt-get install postgresql``).

    python benchmarks/workers.py [--trials 8] [--workers 1 2 4] [--rounds 1]
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
    args = parser.parse_args()
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


if __name__ == "__main__":
    main()
