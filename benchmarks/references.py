"""What the search bought: the quick search of a modality with reference trials (and the
transfer effect) against the same search without them (today's search), same data, budget and
seeds, side by side in one run.

    python benchmarks/references.py image|text [--trials 10] [--seeds 0 1 2] [--variants on off]

Prints one row per seed and variant: the best, the best linear probe and default
configuration, the best trained from scratch, the gain of the search over the best reference,
the seconds until the best trial completed, and the wall time. Data comes from
``python -m autotransfer.demo`` (Fashion-MNIST 100 per class + 30 test per class; Rotten
Tomatoes 100 + 50 per class).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("AUTOTRANSFER_HISTORY", "0")

from autotransfer import demo  # noqa: E402
from autotransfer.search.scores import best_so_far  # noqa: E402
from autotransfer.search.study import search  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DATA = {
    "image": lambda out: demo.export_fashion_mnist(out, per_class=100, test_per_class=30),
    "text": lambda out: demo.export_rotten_tomatoes(out, per_class=100, val_per_class=50),
}


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.4f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("modality", choices=sorted(DATA))
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--variants", nargs="+", choices=["on", "off"], default=["on", "off"],
                        help="with references (and the transfer effect), without, or both")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp())
    data = DATA[args.modality](work / "data")
    space = REPO / "search_spaces" / f"{args.modality}-quick.yaml"
    print("| data | seed | references | best val (test) | best linear probe val | best default "
          "val | scratch val (test) | gain over best reference | best reached at s | wall s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for seed in args.seeds:
        for references in [v == "on" for v in args.variants]:
            name = f"{'on' if references else 'off'}-{seed}"
            start = time.perf_counter()
            result = search(data, space, trials=args.trials, seed=seed,
                            storage=f"sqlite:///{work}/{name}.db", out=work / name,
                            references=references, transfer_effect=references)
            wall = time.perf_counter() - start
            best = result.best or {}
            refs = best.get("references", {})
            effect = best.get("transfer_effect") or {}
            seconds, curve = best_so_far(result.study)
            reached = seconds[curve.index(max(curve))] if curve else None
            top = max((r["val_score"] for r in refs.values()), default=None)
            gain = None if top is None else best["val_score"] - top
            print(f"| {args.modality} | {seed} | {'on' if references else 'off'} | "
                  f"{_fmt(best.get('val_score'))} ({_fmt(best.get('test_score'))}) | "
                  f"{_fmt(refs.get('linear_probe', {}).get('val_score'))} | "
                  f"{_fmt(refs.get('default', {}).get('val_score'))} | "
                  f"{_fmt(effect.get('scratch_val_score'))} "
                  f"({_fmt(effect.get('scratch_test_score'))}) | "
                  f"{'-' if gain is None else f'{gain:+.4f}'} | "
                  f"{'-' if reached is None else f'{reached:.0f}'} | {wall:.0f} |", flush=True)


if __name__ == "__main__":
    main()
