"""What combining the trials already paid for buys (#37): the single pick, the greedy weight
soup and the ensemble of one search's own trials, per data set and seed.

For each data set (the demo data of each modality: Fashion-MNIST images, Rotten Tomatoes
texts, espeak keywords) and seed, one search with a fixed number of trials (``--trials``, not a
time budget, so that machine load does not change what is searched) over the modality's
default space (its packaged backbones, made small: ``--epochs``, ``--image-size``, no pruner)
with ``ensemble: {max_members: M}`` and ``soup: {max_ingredients: K}`` on. Then, from the stored
study, ``autotransfer ensemble`` is run again (both sections rebuilt from the kept predictions
and weights, the data read again) and timed: that is the "combining seconds", reported against
the search's seconds.

Per data set x seed the table shows, for the single pick, the soup and the ensemble: the
validation score held out by cross-fitting (the pick's: one trial chosen on one half of the
validation split, scored on the other; see docs/guides/ensembles.md), the test score with its
95% interval, the members and the latency (the ensemble's is its members' summed). A summary
row per data set gives the mean over seeds (min-max in brackets), and the last lines the median
over data sets of (ensemble test - single test) and (soup test - single test), in points. Text
and audio have no test split in the demo: half of their validation examples (stratified; for
the keywords, one of the two held-out accents) become the test split.

    python benchmarks/ensembles.py [--datasets image text audio] [--seeds 3] [--trials 12]
        [--epochs 2] [--image-size 64] [--per-class 100] [--max-members 5]
        [--max-ingredients 5] [--device auto] [--out benchmarks/results/ensembles.json]
    python benchmarks/ensembles.py --table benchmarks/results/ensembles.json   # reprint

The smallest run that shows it works: ``--seeds 1 --trials 3 --epochs 1 --per-class 10``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("AUTOTRANSFER_HISTORY", "0")

import yaml  # noqa: E402

from autotransfer import demo  # noqa: E402
from autotransfer.space.defaults import default_space  # noqa: E402
from autotransfer.space.schema import parse_space  # noqa: E402
from autotransfer.study.results.report import ensemble_study, soup_study  # noqa: E402
from autotransfer.study.study import search  # noqa: E402

DATASETS = ("image", "text", "audio")
NAMES = {"image": "fashion-mnist", "text": "rotten-tomatoes", "audio": "keywords"}


def make_data(root: Path, modality: str, per_class: int) -> Path:
    """The demo data of ``modality`` under ``root``, with a test split."""
    folder = root / NAMES[modality]
    if folder.exists():
        return folder
    if modality == "image":
        return demo.export_fashion_mnist(folder, per_class=per_class,
                                         test_per_class=max(2, per_class // 3))
    if modality == "text":
        demo.export_rotten_tomatoes(folder, per_class=per_class,
                                    val_per_class=max(4, per_class))
        rows = [json.loads(line) for line in (folder / "val.jsonl").read_text().splitlines()]
        val, test = [], []
        for label in sorted({r["label"] for r in rows}):
            mine = [r for r in rows if r["label"] == label]
            val += mine[: len(mine) // 2]
            test += mine[len(mine) // 2:]
        for name, items in (("val", val), ("test", test)):
            (folder / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in items))
        return folder
    demo.export_keywords(folder)
    held = demo.VAL_VOICES[-1]  # one held-out accent becomes the test split
    for wav in sorted((folder / "val").rglob(f"{held}+*.wav")):
        target = folder / "test" / wav.parent.name / wav.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(wav, target)
    return folder


def space_for(modality: str, args) -> dict:
    """The modality's default space, made small, with the ensemble and the soup on."""
    space = yaml.safe_load(default_space(modality).read_text())
    space.update(epochs=args.epochs, pruner="none",
                 ensemble={"max_members": args.max_members},
                 soup={"max_ingredients": args.max_ingredients})
    space.pop("max_epochs", None)
    if modality == "image":
        space["params"]["image_size"] = args.image_size
    parse_space(space)  # a bad setting fails before any search
    return space


def one(modality: str, data: Path, seed: int, args, work: Path) -> dict:
    """One search and the combinations rebuilt from its stored study."""
    work.mkdir(parents=True, exist_ok=True)
    storage = f"sqlite:///{work}/study.db"
    out = work / "out"
    started = time.perf_counter()
    result = search(data, parse_space(space_for(modality, args)), trials=args.trials,
                    seed=seed, storage=storage, study_name="s", out=out, device=args.device,
                    transfer_effect=False)
    search_seconds = time.perf_counter() - started
    best = result.best or {}
    started = time.perf_counter()
    ensemble, _ = ensemble_study("s", storage=storage, out=out)
    soup, _ = soup_study("s", storage=storage, out=out, device=args.device)
    combine_seconds = time.perf_counter() - started
    soup = soup or {}
    return {
        "dataset": NAMES[modality], "seed": seed,
        "trials": len(result.leaderboard),
        "complete": sum(r["state"] == "complete" for r in result.leaderboard),
        "single": {"trial": best.get("source", {}).get("trial"),
                   "backbone": best.get("backbone"),
                   "val_score": best.get("val_score"),
                   "val_held_out": ensemble.get("single_val_score"),
                   "test_score": best.get("test_score"),
                   "test_score_ci95": best.get("test_score_ci95"),
                   "latency_ms": best.get("latency_ms")},
        "soup": _combination(soup, "soup"),
        "ensemble": _combination(ensemble, "ensemble"),
        "search_seconds": round(search_seconds, 2),
        "combine_seconds": round(combine_seconds, 2),
        "in_search_seconds": {
            k: (best.get(k) or {}).get("selection", {}).get("seconds")
            for k in ("ensemble", "soup")},
    }


def _combination(section: dict, kind: str) -> dict:
    return {"members": [m["trial"] for m in section.get("members") or []],
            "weights": [m.get("weight") for m in section.get("members") or []],
            "val_held_out": section.get("val_score"),
            "val_held_out_ci95": section.get("val_score_ci95"),
            "single_val_held_out": section.get("single_val_score"),
            "test_score": section.get("test_score"),
            "test_score_ci95": section.get("test_score_ci95"),
            "latency_ms": section.get("latency_ms"), "note": section.get("note"),
            "kind": kind}


# --- the table ----------------------------------------------------------------------------

def _f(value, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _ci(interval) -> str:
    return "" if not interval else f" [{interval[0]:.3f}, {interval[1]:.3f}]"


def _members(c: dict) -> str:
    return "+".join(str(m) for m in c["members"]) or "-"


def _spread(values: list[float | None], digits: int = 3, scale: float = 1.0) -> str:
    found = [v * scale for v in values if v is not None]
    if not found:
        return "-"
    mean = statistics.fmean(found)
    if len(found) < 2:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} [{min(found):.{digits}f}-{max(found):.{digits}f}]"


def _gain(run: dict, kind: str) -> float | None:
    test, single = run[kind]["test_score"], run["single"]["test_score"]
    if test is None or single is None or not run[kind]["members"]:
        return None
    return test - single


def table(runs: list[dict]) -> str:
    lines = [
        "| data set | seed | trials | single val (held-out) | single test | soup val "
        "(held-out) | soup test | soup trials | ensemble val (held-out) | ensemble test | "
        "ensemble trials | latency ms single / soup / ens | search s | combine s (%) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for run in runs:
        s, soup, ens = run["single"], run["soup"], run["ensemble"]
        ratio = 100 * run["combine_seconds"] / max(run["search_seconds"], 1e-9)
        lines.append(
            f"| {run['dataset']} | {run['seed']} | {run['complete']}/{run['trials']} | "
            f"{_f(s['val_held_out'])} | {_f(s['test_score'])}{_ci(s['test_score_ci95'])} | "
            f"{_f(soup['val_held_out'])} | {_f(soup['test_score'])}"
            f"{_ci(soup['test_score_ci95'])} | {_members(soup)} | {_f(ens['val_held_out'])} | "
            f"{_f(ens['test_score'])}{_ci(ens['test_score_ci95'])} | {_members(ens)} | "
            f"{_f(s['latency_ms'], 1)} / {_f(soup['latency_ms'], 1)} / "
            f"{_f(ens['latency_ms'], 1)} | {run['search_seconds']:.0f} | "
            f"{run['combine_seconds']:.1f} ({ratio:.1f}%) |")
    lines += ["", "Mean over seeds [min-max]; gains in points of test score over the single "
              "pick:", "", "| data set | seeds | single test | soup test | ensemble test | "
              "soup gain | ensemble gain | combine % of search |",
              "|---|---|---|---|---|---|---|---|"]
    medians: dict[str, list[float]] = {"soup": [], "ensemble": []}
    for name in dict.fromkeys(r["dataset"] for r in runs):
        mine = [r for r in runs if r["dataset"] == name]
        gains = {k: [_gain(r, k) for r in mine] for k in medians}
        for k, values in gains.items():
            found = [v for v in values if v is not None]
            if found:
                medians[k].append(100 * statistics.fmean(found))
        lines.append(
            f"| {name} | {len(mine)} | {_spread([r['single']['test_score'] for r in mine])} | "
            f"{_spread([r['soup']['test_score'] for r in mine])} | "
            f"{_spread([r['ensemble']['test_score'] for r in mine])} | "
            f"{_spread(gains['soup'], 1, 100)} | {_spread(gains['ensemble'], 1, 100)} | "
            f"{_spread([100 * r['combine_seconds'] / r['search_seconds'] for r in mine], 1)} |")
    lines.append("")
    for kind, values in medians.items():
        lines.append(f"Median over data sets of ({kind} test - single test): "
                     + (f"{statistics.median(values):+.2f} points ({len(values)} data sets)"
                        if values else "- (never built)"))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", choices=DATASETS, default=list(DATASETS))
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0..S-1")
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--per-class", type=int, default=100,
                        help="training examples per class (images, texts; the keywords are "
                             "fixed: 32 per word)")
    parser.add_argument("--max-members", type=int, default=5)
    parser.add_argument("--max-ingredients", type=int, default=5)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/ensembles.json"))
    parser.add_argument("--table", type=Path, help="print the table of a saved run and stop")
    args = parser.parse_args()
    if args.table:
        print(table(json.loads(args.table.read_text())["runs"]))
        return
    runs: list[dict] = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="autotransfer-ensembles-") as tmp:
        root = Path(tmp)
        for modality in args.datasets:
            data = make_data(root / "data", modality, args.per_class)
            for seed in range(args.seeds):
                work = root / f"{modality}-{seed}"
                runs.append(one(modality, data, seed, args, work))
                print(f"{NAMES[modality]} seed {seed}: search {runs[-1]['search_seconds']:.0f}s, "
                      f"combine {runs[-1]['combine_seconds']:.1f}s "
                      f"({time.perf_counter() - started:.0f}s so far)", file=sys.stderr,
                      flush=True)
                args.out.parent.mkdir(parents=True, exist_ok=True)
                args.out.write_text(json.dumps(
                    {"args": {k: str(v) for k, v in vars(args).items()}, "runs": runs},
                    indent=1) + "\n")
    print(table(runs))


if __name__ == "__main__":
    main()
