"""Memory and time to first trial as the data grows: in-memory splits against the encoded store.

The same search (``--trials 1`` of a random-init ``timm/test_efficientnet`` at 128 px, nothing
frozen, 2 epochs, no pruning) runs on 1x, 4x and 16x the images (Fashion-MNIST exported by
``python -m autotransfer.demo fashion-mnist DIR --per-class N``, N = base, 4 base, 16 base),
once with ``--data-store memory`` (every process decodes every split into its own memory, as
before the store) and once with a fresh store folder. Then ``--workers 2 --trials 2`` at 16x
with each. Each cell is one real ``autotransfer search`` process tree, sampled every 50 ms:

- peak anonymous memory: ``RssAnon`` from ``/proc/PID/status`` (not RSS, which also counts the
  file pages a memory-mapped store shares between processes), per process and summed;
- time to first trial: from the command's start to its ``trial #0`` line (loading, checking and
  encoding the data happen before it);
- steady-state throughput: training samples/s of the last epoch (printed by the search).

    python benchmarks/data_scale.py [--base 50] [--scales 1 4 16] [--size 128]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

SPACE = """\
backbones:
  - {{id: timm/test_efficientnet, pretrained: false}}
epochs: 2
pruner: none
params:
  freeze_fraction: 0.0
  lr: 1.0e-3
  batch_size: 64
  augment: none
  image_size: {size}
"""


def rss_anon(pid: int) -> int:
    """``RssAnon`` of ``pid`` in bytes (0 when it has gone)."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1]) * 1024
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it (via ``/proc/PID/task/*/children``)."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        try:
            for task in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{task}/children") as children:
                    todo += [int(c) for c in children.read().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue
    return found


def is_worker(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            return b"spawn_main" in cmdline.read()
    except FileNotFoundError:
        return False


@dataclass
class Run:
    pid: int = 0
    seconds: float = 0.0
    first_trial: float | None = None
    peak_total: int = 0  # max over samples of the summed RssAnon of the tree
    peaks: dict[int, int] = field(default_factory=dict)  # per pid
    workers: set[int] = field(default_factory=set)
    samples_per_second: float | None = None


def measure(command: list[str], cwd: Path) -> Run:
    """Run ``command``, sampling its process tree's RssAnon; raise when it fails."""
    run = Run()
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "AUTOTRANSFER_HISTORY": "0"}
    start = time.perf_counter()
    process = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    run.pid = process.pid
    lines: list[str] = []

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line)
            if run.first_trial is None and "trial #" in line:
                run.first_trial = time.perf_counter() - start

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    while process.poll() is None:
        total = 0
        for pid in descendants(process.pid):
            anon = rss_anon(pid)
            total += anon
            run.peaks[pid] = max(run.peaks.get(pid, 0), anon)
            if pid not in run.workers and is_worker(pid):
                run.workers.add(pid)
        run.peak_total = max(run.peak_total, total)
        time.sleep(0.05)
    reader.join()
    run.seconds = time.perf_counter() - start
    if process.returncode != 0:
        raise SystemExit(f"failed: {' '.join(command)}\n{''.join(lines[-30:])}")
    speeds = [float(m) for m in re.findall(r"(\d+) samples/s", "".join(lines))]
    run.samples_per_second = speeds[-1] if speeds else None
    return run


def search(data: Path, space: Path, store: str, work: Path, name: str,
           workers: int = 1) -> Run:
    trials = 2 if workers > 1 else 1
    return measure([
        sys.executable, "-m", "autotransfer.cli", "search", str(data), "--space", str(space),
        "--trials", str(trials), "--workers", str(workers), "--device", "cpu",
        "--storage", f"sqlite:///{work / name}.db", "--study", name, "--out", str(work / name),
        "--data-store", store, "--no-cache",
    ], cwd=work)


def mib(value: float) -> str:
    return f"{value / 2**20:7.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", type=int, default=50, help="images per class at 1x")
    parser.add_argument("--scales", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--size", type=int, default=128, help="image side the search uses")
    args = parser.parse_args()
    print(f"load before: {os.getloadavg()[0]:.2f} (1-min), cores: {len(os.sched_getaffinity(0))}")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        space = work / "space.yaml"
        space.write_text(SPACE.format(size=args.size))
        runs: dict[tuple[int, str], Run] = {}
        for scale in args.scales:
            data = work / f"fmnist-{scale}x"
            subprocess.run([sys.executable, "-m", "autotransfer.demo", "fashion-mnist", str(data),
                            "--per-class", str(args.base * scale)], check=True,
                           capture_output=True)
            for mode in ("memory", "store"):
                store = "memory" if mode == "memory" else str(work / f"store-{scale}x")
                runs[scale, mode] = search(data, space, store, work, f"{mode}-{scale}x")
        top = max(args.scales)
        data = work / f"fmnist-{top}x"
        warm = search(data, space, str(work / f"store-{top}x"), work, "store-warm")
        for mode in ("memory", "store"):
            store = "memory" if mode == "memory" else str(work / f"store-{top}x-w2")
            runs[top, f"{mode} w2"] = search(data, space, store, work, f"{mode}-w2", workers=2)

        print(f"\n{args.base * 10} images at 1x, {args.size} px; RssAnon peaks in MiB")
        print(f"{'scale':>5} {'path':>7} {'images':>7} {'peak anon':>9} {'vs 1x':>6} "
              f"{'first trial s':>13} {'samples/s':>9}")
        for mode in ("memory", "store"):
            base = runs[args.scales[0], mode].peak_total
            for scale in args.scales:
                run = runs[scale, mode]
                first = f"{run.first_trial:13.1f}" if run.first_trial else f"{'-':>13}"
                speed = f"{run.samples_per_second:9.0f}" if run.samples_per_second else "-"
                print(f"{scale:>4}x {mode:>7} {args.base * 10 * scale:>7} {mib(run.peak_total):>9}"
                      f" {run.peak_total / base:6.2f} {first} {speed}")
        for mode in ("memory", "store"):
            run, single = runs[top, f"{mode} w2"], runs[top, mode]
            per_worker = [run.peaks[p] for p in sorted(run.workers) if run.peaks.get(p)]
            workers = sorted(per_worker, reverse=True)[:2]
            parent = run.peaks.get(run.pid, 0)
            shown = ", ".join(mib(w).strip() for w in workers)
            print(f"{top}x {mode} --workers 2: per worker {shown} MiB, parent "
                  f"{mib(parent).strip()} MiB; two workers / one-process run "
                  f"{sum(workers) / single.peak_total:.2f}x; whole tree "
                  f"{mib(run.peak_total).strip()} MiB")
        print(f"{top}x store, second search on the same store (warm): first trial after "
              f"{warm.first_trial:.1f} s, peak anon {mib(warm.peak_total).strip()} MiB")
        memory, store = runs[args.scales[0], "memory"], runs[args.scales[0], "store"]
        if memory.samples_per_second and store.samples_per_second:
            print(f"steady-state throughput at {args.scales[0]}x, store / memory: "
                  f"{store.samples_per_second / memory.samples_per_second:.3f}")
        for scale in args.scales[1:]:
            m, s = runs[scale, "memory"], runs[scale, "store"]
            if m.samples_per_second and s.samples_per_second:
                print(f"steady-state throughput at {scale}x, store / memory: "
                      f"{s.samples_per_second / m.samples_per_second:.3f}")
    print(f"load after: {os.getloadavg()[0]:.2f} (1-min)")


if __name__ == "__main__":
    main()
