"""How much of the machine's CPU a search receives: CPU% of its whole process tree, sampled.

Runs ``autotransfer search`` on the demo's Fashion-MNIST export with the shipped quick space and
a time budget (default 300 s), once per variant, and samples the CPU seconds (user + system) of
the command's process tree from ``/proc`` every ``--every`` seconds (worker processes included;
a worker that ended is counted through its parent). Prints the mean CPU% over the run (100% is
one core; a 2-core machine gives 200%), over the trials (from the first training batch to the
end) and the trials completed. Variants: ``threads`` sets ``OMP_NUM_THREADS`` (unset: torch's
default, one per core) and ``workers`` the ``--workers`` option; they alternate by round.

    python benchmarks/cpu_use.py [--budget 300] [--variants 1x2 2x1 1x1] [--rounds 1]

A variant is ``WORKERSxTHREADS`` (``1x2``: one worker, two torch threads; ``2x1``: two workers
with one thread each; threads ``0``: OMP_NUM_THREADS unset). Target (issue 29): the search keeps
both cores busy (AutoGluon MultiModal received 186% of 200% in the same test).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(root: int) -> float:
    """User + system seconds of ``root`` and its live descendants, and of their reaped
    children (``cutime``/``cstime``)."""
    parents, cpu = {}, {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", encoding="ascii", errors="replace") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid = int(entry.name)
        parents[pid] = int(fields[1])
        cpu[pid] = sum(int(v) for v in fields[11:15]) / TICK  # utime stime cutime cstime
    total, todo = 0.0, [root]
    while todo:
        pid = todo.pop()
        total += cpu.get(pid, 0.0)
        todo += [child for child, parent in parents.items() if parent == pid]
    return total


def first_batches(database: Path) -> list[float]:
    with contextlib.closing(sqlite3.connect(database)) as connection:
        return [float(json.loads(v)) for (v,) in connection.execute(
            "SELECT value_json FROM trial_user_attributes WHERE key = 'first_batch_at'")]


def states(database: Path) -> dict[str, int]:
    with contextlib.closing(sqlite3.connect(database)) as connection:
        return dict(connection.execute("SELECT state, COUNT(*) FROM trials GROUP BY state"))


def run_variant(data: Path, space: Path, work: Path, tag: str, workers: int, threads: int,
                budget: float, every: float) -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    env.pop("OMP_NUM_THREADS", None)
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    database = work / f"{tag}.db"
    command = [sys.executable, "-m", "autotransfer.cli", "search", str(data), "--space",
               str(space), "--time-budget", str(budget), "--workers", str(workers),
               "--storage", f"sqlite:///{database}", "--study", tag,
               "--out", str(work / f"{tag}-out"), "--data-store", str(work / f"{tag}-store")]
    launched, start = time.time(), time.perf_counter()
    process = subprocess.Popen(command, env=env, cwd=work, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    samples = []  # (seconds since launch, CPU seconds of the tree)
    while process.poll() is None:
        samples.append((time.perf_counter() - start, tree_cpu_seconds(process.pid)))
        time.sleep(every)
    output = process.stdout.read() if process.stdout else ""
    wall = time.perf_counter() - start
    if process.returncode not in (0, 1):  # 1: no trial completed in the budget (reported)
        raise SystemExit(f"{tag}: exit {process.returncode}\n{output[-3000:]}")
    first = min(first_batches(database), default=float("nan")) - launched
    total = samples[-1][1] if samples else 0.0
    during = [(t, c) for t, c in samples if t >= first]
    trials_cpu = (during[-1][1] - during[0][1]) / (during[-1][0] - during[0][0]) if len(
        during) > 1 else float("nan")
    return {"variant": tag, "workers": workers, "threads": threads, "wall": wall,
            "cpu_seconds": total, "cpu_percent": 100 * total / wall,
            "trials_cpu_percent": 100 * trials_cpu, "first_batch": first,
            "states": states(database), "load": os.getloadavg()[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=300.0)
    parser.add_argument("--variants", nargs="+", default=["1x0"])
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--every", type=float, default=1.0)
    parser.add_argument("--space", type=Path,
                        default=Path(__file__).resolve().parents[1] / "search_spaces"
                        / "image-quick.yaml")
    parser.add_argument("--data", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None, help="append the figures here")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="cpu-use-"))
    data = args.data
    if data is None:
        data = work / "fashion-mnist"
        subprocess.run([sys.executable, "-m", "autotransfer.demo", "fashion-mnist", str(data),
                        "--per-class", "100", "--test-per-class", "30"], check=True,
                       capture_output=True)
    print(f"{args.space.name} on {data}, --time-budget {args.budget:.0f}, {os.cpu_count()} "
          f"CPUs (200% = two cores busy), load {os.getloadavg()[0]:.2f}", flush=True)
    print(f"{'variant':>8} {'wall s':>7} {'CPU%':>6} {'CPU% trials':>12} {'first batch s':>14}"
          f"  trials (state: count)", flush=True)
    results = []
    for round_ in range(args.rounds):
        for variant in args.variants:
            workers, threads = (int(v) for v in variant.split("x"))
            result = run_variant(data, args.space, work, f"v{variant}-r{round_}", workers,
                                 threads, args.budget, args.every)
            results.append(result)
            named = {"1": "running", "2": "complete", "3": "pruned", "4": "fail"}
            counts = ", ".join(f"{named.get(str(k), k)} {v}" for k, v in result["states"].items())
            print(f"{variant:>8} {result['wall']:7.1f} {result['cpu_percent']:6.0f} "
                  f"{result['trials_cpu_percent']:12.0f} {result['first_batch']:14.1f}  "
                  f"{counts} (load {result['load']:.2f})", flush=True)
    if args.json is not None:
        with args.json.open("a", encoding="utf-8") as handle:
            for result in results:
                handle.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
