"""One fixed configuration as a whole ``autotransfer search --trials 1`` process against a plain
hand-written loop doing the same epochs and evaluations, side by side in one run.

Both arms are fresh processes on the demo's Fashion-MNIST export (``python -m autotransfer.demo
fashion-mnist DIR --per-class 100 --test-per-class 30``: 800 train, 200 val, 300 test images) with
the same backbone (``packaged/mobilenetv2_100``), image size, batch size, epochs, lr, weight
decay, label smoothing and warmup: the hand loop is ``benchmarks/hand_loop.py`` (torch + timm +
Pillow); the search runs a space that fixes every hyperparameter, with ``--no-references`` so
that its one trial trains that configuration, on a fresh storage and a fresh (cold)
``--data-store``, so that it decodes the images as the hand loop does. Everything else is as a
user gets it: start-up, checks, the transfer history, the dashboard note, the measurement of the
trial, leaderboard.csv, best.yaml, report.md and its plots. The arms alternate (the first of a
repeat changes every time) so that load on the machine hits both; the ratio is of the medians.

Then one more autotransfer process runs with timers around the steps of a search (no profiler:
each step's wall seconds, nested steps subtracted from their parent) and prints where the extra
seconds go, set against the hand loop's own phases. First batch: the wall clock when the first
training batch ended, against the process's launch.

    python benchmarks/overhead.py [--repeats 3] [--epochs 3] [--json results.json]

Target (issue 29): autotransfer / hand loop <= 1.3x (wall, median); first batch <= 5 s.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
TARGET_RATIO, TARGET_FIRST_BATCH = 1.3, 5.0

SPACE = """\
backbones: [packaged/mobilenetv2_100]
epochs: {epochs}
metric: accuracy
pruner: none
params:
  freeze_fraction: 0.0
  lr: {lr}
  head_lr_multiplier: 1.0
  layer_decay: 1.0
  weight_decay: 0.01
  batch_size: {batch_size}
  augment: none
  label_smoothing: 0.1
  warmup_fraction: 0.1
  dropout: 0.0
  image_size: {image_size}
"""

# (where, attribute, label, absorbs): a step of the search and the phase its seconds count
# towards. ``absorbs``: what runs inside it (a backbone load, an encoding) counts as this step.
STEPS = [
    ("autotransfer.study.checks", "check_space", "checks", False),
    ("autotransfer.study.study", "search", "other (search)", False),
    ("autotransfer.study.study", "prepare", "other (prepare)", False),
    ("autotransfer.study.study", "check_backbones", "checks", False),
    ("autotransfer.study.study", "check_out_dir", "checks", False),
    ("autotransfer.study.study", "check_source", "checks", False),
    ("autotransfer.study.study", "load_data", "data: list and split", False),
    ("autotransfer.study.study", "check_data", "checks", False),
    ("autotransfer.study.study", "warn_cross_split_duplicates", "checks", False),
    ("autotransfer.study.study", "check_modality", "checks", False),
    ("autotransfer.study.study", "check_same_origin", "checks", False),
    ("autotransfer.study.study", "make_storage", "storage and study", False),
    ("optuna", "create_study", "storage and study", False),
    ("autotransfer.study.results.dashboard.StudyNote", "save", "dashboard note", False),
    ("autotransfer.study.warm_start", "prepare_study", "history meta-features", True),
    ("autotransfer.study.study", "run", "other (trial loop)", False),
    ("autotransfer.study.objective", "_release_memory", "other (gc)", False),
    ("autotransfer.contract.backbone.BackboneEntry", "load", "model build", False),
    ("autotransfer.finetune.trainer.Trainer", "__init__", "model build", False),
    ("autotransfer.data.store", "encode_split", "data: encode and store", False),
    ("autotransfer.data._images", "encode_split", "data: encode and store", False),
    ("autotransfer.finetune.trainer.Trainer", "fit", "training", False),
    ("autotransfer.finetune.trainer.Trainer", "evaluate", "evaluation", False),
    ("autotransfer.study.objective", "measure_trial", "measurement", False),
    ("autotransfer.study.references.trials", "conclude", "other (conclude)", False),
    ("autotransfer.study.study", "write_results", "writes: leaderboard, best.yaml", False),
    ("autotransfer.study.study", "write_report", "writes: report and plots", False),
]
#: the order of the breakdown table, and the hand loop's phase for each (None: it has none)
PHASES = {
    "import": "import", "checks": None, "data: list and split": "data",
    "data: encode and store": None, "storage and study": None, "dashboard note": None,
    "history meta-features": None, "model build": "model", "training": "training",
    "evaluation": "evaluation", "measurement": None,
    "writes: leaderboard, best.yaml": "writes", "writes: report and plots": None,
    "other (search)": None, "other (prepare)": None, "other (trial loop)": None,
    "other (gc)": None, "other (conclude)": None, "console output": None,
    "interpreter exit": "exit",
}


def process_start() -> float:
    """This process's start on the ``time.perf_counter`` clock (Linux ``/proc``)."""
    with open("/proc/self/stat", encoding="ascii") as handle:
        ticks = int(handle.read().rsplit(")", 1)[1].split()[19])
    with open("/proc/uptime", encoding="ascii") as handle:
        age = float(handle.read().split()[0]) - ticks / os.sysconf("SC_CLK_TCK")
    return time.perf_counter() - age


def phases_main(out: Path, argv: list[str]) -> None:
    """Run ``autotransfer`` with ``argv`` in this process, timing the steps of :data:`STEPS`."""
    import importlib
    import threading

    started = process_start()
    seconds: dict[str, float] = {}
    stack: list[list] = []  # [label, absorbs, child seconds]
    main_thread = threading.main_thread()

    def timed(function, label: str, absorbs: bool):
        def wrapper(*args, **kwargs):
            if (threading.current_thread() is not main_thread or depth[0]
                    or any(f[1] for f in stack)):
                return function(*args, **kwargs)  # inside an absorbing step: counts there
            frame = [label, absorbs, 0.0]
            stack.append(frame)
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                took = time.perf_counter() - start
                stack.pop()
                seconds[label] = seconds.get(label, 0.0) + took - frame[2]
                if stack:
                    stack[-1][2] += took
        wrapper.__wrapped__ = function
        return wrapper

    import importlib._bootstrap as bootstrap

    find_and_load = bootstrap._find_and_load
    depth = [0]  # of the main thread's nested imports (other threads' imports are not timed)

    def timed_import(*args, **kwargs):  # every import's seconds count as "import", wherever
        if depth[0] or threading.current_thread() is not main_thread:
            if threading.current_thread() is not main_thread:
                return find_and_load(*args, **kwargs)
            depth[0] += 1
            try:
                return find_and_load(*args, **kwargs)
            finally:
                depth[0] -= 1
        depth[0] += 1
        start = time.perf_counter()
        try:
            return find_and_load(*args, **kwargs)
        finally:
            depth[0] -= 1
            took = time.perf_counter() - start
            seconds["import"] = seconds.get("import", 0.0) + took
            if stack:
                stack[-1][2] += took

    bootstrap._find_and_load = timed_import
    for where, name, label, absorbs in STEPS:
        try:
            owner = importlib.import_module(where)
        except ModuleNotFoundError:  # a class: import its module, then take the attribute
            module_name, _, owner_name = where.rpartition(".")
            owner = getattr(importlib.import_module(module_name), owner_name)
        if hasattr(owner, name):
            setattr(owner, name, timed(getattr(owner, name), label, absorbs))
    import atexit

    from autotransfer.cli.main import main

    entered = time.perf_counter()
    seconds["import"] = 0.0  # what the patching imported is in ``entered - started``

    def write() -> None:  # at exit: the console command may end with os._exit after these
        ended = time.perf_counter()
        inside = sum(seconds.values())
        # the interpreter's start-up and every import (the patching itself takes milliseconds)
        seconds["import"] += entered - started
        seconds["console output"] = ended - entered - inside  # options, leaderboard, lines
        out.write_text(json.dumps({"seconds": seconds, "ended_after": ended - started}))

    atexit.register(write)
    sys.argv = ["autotransfer", *argv]
    main()  # as the console command runs it (its exit included)


def export_demo(folder: Path) -> Path:
    subprocess.run([sys.executable, "-m", "autotransfer.demo", "fashion-mnist", str(folder),
                    "--per-class", "100", "--test-per-class", "30"], check=True,
                   capture_output=True)
    return folder


def timed_process(command: list[str], env: dict, cwd: Path) -> tuple[float, float, float]:
    """``(wall s, CPU s, launch time.time())`` of one process run to its end."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    launched, start = time.time(), time.perf_counter()
    done = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command[:4])} ... exit {done.returncode}:\n"
                         f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return wall, cpu, launched


def first_batch_at(database: Path) -> float:
    with contextlib.closing(sqlite3.connect(database)) as connection:
        (value,) = connection.execute(
            "SELECT value_json FROM trial_user_attributes WHERE key = 'first_batch_at'"
        ).fetchone()
    return float(json.loads(value))


def search_command(data: Path, space: Path, work: Path, tag: str) -> tuple[list[str], Path]:
    database = work / f"{tag}.db"
    return [sys.executable, "-m", "autotransfer.cli", "search", str(data), "--space", str(space),
            "--trials", "1", "--no-references", "--storage", f"sqlite:///{database}",
            "--study", tag, "--out", str(work / f"{tag}-out"),
            "--data-store", str(work / f"{tag}-store")], database


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--image-size", type=int, default=96)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--data", type=Path, default=None,
                        help="the demo export (default: exported into a temporary folder)")
    parser.add_argument("--no-breakdown", action="store_true")
    parser.add_argument("--json", type=Path, default=None, help="append the figures here")
    args = parser.parse_args()
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    work = Path(tempfile.mkdtemp(prefix="overhead-"))
    data = args.data or export_demo(work / "fashion-mnist")
    space = work / "fixed.yaml"
    space.write_text(SPACE.format(epochs=args.epochs, lr=args.lr, batch_size=args.batch_size,
                                  image_size=args.image_size))
    hand = [sys.executable, str(HERE / "hand_loop.py"), str(data), "--epochs", str(args.epochs),
            "--image-size", str(args.image_size), "--batch-size", str(args.batch_size),
            "--lr", str(args.lr)]
    load_before = os.getloadavg()
    print(f"Fashion-MNIST demo export {data}, packaged/mobilenetv2_100 at {args.image_size} px, "
          f"batch {args.batch_size}, {args.epochs} epochs, lr {args.lr}; "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '(unset)')}, "
          f"{os.cpu_count()} CPUs, load {load_before[0]:.2f} {load_before[1]:.2f}", flush=True)
    runs: dict[str, list[dict]] = {"hand loop": [], "autotransfer": []}
    for repeat in range(args.repeats):
        order = ["hand loop", "autotransfer"][:: 1 if repeat % 2 == 0 else -1]
        for arm in order:
            tag = f"{'hand' if arm == 'hand loop' else 'at'}{repeat}"
            if arm == "hand loop":
                result = work / f"{tag}.json"
                wall, cpu, launched = timed_process([*hand, "--out", str(result)], env, work)
                report = json.loads(result.read_text())
                first, score = report["first_batch_at"] - launched, report["val"][-1]
                phases = report["phases"]
            else:
                command, database = search_command(data, space, work, tag)
                wall, cpu, launched = timed_process(command, env, work)
                first = first_batch_at(database) - launched
                score, phases = None, None
            runs[arm].append({"wall": wall, "cpu": cpu, "first_batch": first, "val": score,
                              "phases": phases, "load": os.getloadavg()[0]})
            print(f"  repeat {repeat + 1} {arm:12} {wall:6.1f} s wall {cpu:6.1f} s CPU, first "
                  f"batch after {first:4.1f} s (load {os.getloadavg()[0]:.2f})", flush=True)
    median = {arm: {k: statistics.median(r[k] for r in rs) for k in ("wall", "cpu",
                                                                     "first_batch")}
              for arm, rs in runs.items()}
    ratio = median["autotransfer"]["wall"] / median["hand loop"]["wall"]
    cpu_ratio = median["autotransfer"]["cpu"] / median["hand loop"]["cpu"]
    first = median["autotransfer"]["first_batch"]
    print(f"\nmedian of {args.repeats}      wall s   CPU s  first batch s")
    for arm, m in median.items():
        print(f"{arm:18}{m['wall']:8.1f}{m['cpu']:8.1f}{m['first_batch']:11.1f}")
    print(f"autotransfer / hand loop: {ratio:.2f}x wall, {cpu_ratio:.2f}x CPU "
          f"(target <= {TARGET_RATIO}x: {'met' if ratio <= TARGET_RATIO else 'NOT met'}); "
          f"first batch {first:.1f} s after launch (target <= {TARGET_FIRST_BATCH:.0f} s: "
          f"{'met' if first <= TARGET_FIRST_BATCH else 'NOT met'})")
    figures = {"when": time.strftime("%Y-%m-%dT%H:%M:%S"), "load_before": load_before,
               "load_after": os.getloadavg(), "args": {k: str(v) for k, v in vars(args).items()},
               "runs": runs, "ratio": ratio, "cpu_ratio": cpu_ratio, "first_batch": first}
    if not args.no_breakdown:
        figures["breakdown"] = breakdown(data, space, work, env, runs["hand loop"])
    if args.json is not None:
        with args.json.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(figures) + "\n")


def breakdown(data: Path, space: Path, work: Path, env: dict, hand_runs: list[dict]) -> dict:
    """One more autotransfer process with each step timed; the table of where seconds go."""
    command, _ = search_command(data, space, work, "phases")
    out = work / "phases.json"
    phased = [sys.executable, str(HERE / "overhead.py"), "phases", str(out), "--",
              *command[3:]]
    wall, _, _ = timed_process(phased, {**env, "AUTOTRANSFER_TCMALLOC": "0"}, work)
    ours = json.loads(out.read_text())["seconds"]
    ours["interpreter exit"] = wall - json.loads(out.read_text())["ended_after"]
    hand = {name: statistics.median(r["phases"][name] for r in hand_runs)
            for name in hand_runs[0]["phases"]}
    hand_wall = statistics.median(r["wall"] for r in hand_runs)
    hand["exit"] = hand_wall - sum(hand.values())  # interpreter start-up and exit
    print(f"\nwhere the seconds go (one timed autotransfer process, {wall:.1f} s; the hand "
          f"loop's medians, {hand_wall:.1f} s)")
    print(f"{'phase':32}{'hand loop':>10}{'autotransfer':>13}{'extra':>8}")
    rows = {}
    for phase, hand_phase in PHASES.items():
        mine = ours.get(phase, 0.0)
        theirs = hand.get(hand_phase, 0.0) if hand_phase else 0.0
        rows[phase] = (theirs, mine)
        print(f"{phase:32}{theirs:10.2f}{mine:13.2f}{mine - theirs:+8.2f}")
    print(f"{'total':32}{hand_wall:10.2f}{wall:13.2f}{wall - hand_wall:+8.2f}")
    return {"wall": wall, "rows": rows}


if __name__ == "__main__":
    if len(sys.argv) > 3 and sys.argv[1] == "phases":
        phases_main(Path(sys.argv[2]), sys.argv[4:])
    else:
        main()
