"""``--time-budget S`` against ``--timeout S`` at the same S: wall time, best score, trials.

Each cell is one real ``autotransfer search`` process on a fresh study, timed from its launch to
its exit (start-up, data preparation and the final writes included). The data are the demo's:
Fashion-MNIST (Debian's ``dataset-fashion-mnist``; ``python -m autotransfer.demo fashion-mnist
DIR --per-class 100 --test-per-class 30``) with ``search_spaces/image-quick.yaml``, and Rotten
Tomatoes snippets (``python -m autotransfer.demo rotten-tomatoes DIR --per-class 100``) with
``search_spaces/text-quick.yaml``. The target: wall <= 1.05 x budget + 5 s with
``--time-budget``, and a best score no lower than with ``--timeout``.

    python benchmarks/time_budget.py [--budgets 60 180 600] [--data image text]

A run that ends without a completed trial has no best score ("-"); a ``--timeout`` run is
killed after ``--kill-after`` x budget + 60 s (shown as "killed"). Say the machine's load
(``uptime``, printed first) beside the figures: these machines are shared.
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("AUTOTRANSFER_HISTORY", "0")  # no transfer history: fresh studies

from autotransfer.demo import export_fashion_mnist, export_rotten_tomatoes  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SPACES = {"image": REPO / "search_spaces" / "image-quick.yaml",
          "text": REPO / "search_spaces" / "text-quick.yaml"}


def make_data(kind: str, root: Path) -> Path:
    if kind == "image":
        return export_fashion_mnist(root / "fashion-mnist", per_class=100, test_per_class=30,
                                    seed=0)
    return export_rotten_tomatoes(root / "rotten-tomatoes", per_class=100, seed=0)


def run(data: Path, kind: str, option: str, budget: float, work: Path,
        kill_after: float) -> dict:
    """One search; its wall seconds, best validation score and trial counts."""
    name = f"{kind}-{option.strip('-')}-{budget:g}"
    out = work / name
    command = [sys.executable, "-m", "autotransfer.cli", "search", str(data), "--space",
               str(SPACES[kind]), option, f"{budget:g}", "--storage",
               f"sqlite:///{work}/{name}.db", "--study", name, "--out", str(out)]
    start = time.perf_counter()
    try:
        done = subprocess.run(command, capture_output=True, text=True, cwd=work,
                              timeout=kill_after * budget + 60)
        killed, code, log = False, done.returncode, done.stdout + done.stderr
    except subprocess.TimeoutExpired as exc:
        killed, code = True, None
        log = (exc.stdout or b"").decode() + (exc.stderr or b"").decode()
    wall = time.perf_counter() - start
    (work / f"{name}.log").write_text(log)
    best = None
    if (out / "best.yaml").is_file():
        best = yaml.safe_load((out / "best.yaml").read_text()).get("val_score")
    states = []
    if (out / "leaderboard.csv").is_file():
        with (out / "leaderboard.csv").open(newline="") as handle:
            states = [row.get("state") for row in csv.DictReader(handle)]
    return {"data": kind, "option": option, "budget": budget, "wall": wall, "best": best,
            "complete": states.count("complete"), "pruned": states.count("pruned"),
            "killed": killed, "code": code}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budgets", type=float, nargs="+", default=[60, 180])
    parser.add_argument("--data", nargs="+", choices=sorted(SPACES), default=["image", "text"])
    parser.add_argument("--kill-after", type=float, default=4.0)
    args = parser.parse_args()
    print("load:", subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip(),
          flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for kind in args.data:
            data = make_data(kind, work / "data")
            for budget in args.budgets:
                for option in ("--time-budget", "--timeout"):
                    row = run(data, kind, option, budget, work, args.kill_after)
                    rows.append(row)
                    print(f"  {kind} {option} {budget:g}: {row['wall']:.1f}s", flush=True)
    print("load:", subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
    print()
    print("| data | budget (s) | option | wall (s) | target met | best val score | trials "
          "complete | pruned |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        limit = 1.05 * r["budget"] + 5
        wall = f"{r['wall']:.1f}" + (" (killed)" if r["killed"] else "")
        met = "yes" if r["wall"] <= limit else "no"
        best = "-" if r["best"] is None else f"{r['best']:.4f}"
        print(f"| {r['data']} | {r['budget']:g} | `{r['option']}` | {wall} | {met} "
              f"(<= {limit:.0f}) | {best} | {r['complete']} | {r['pruned']} |")


if __name__ == "__main__":
    main()
