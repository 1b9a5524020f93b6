"""What pretraining is worth: the quick search of a modality against the same search with
random-init weights (same data, budget and seed), side by side in one run.

    python benchmarks/pretrained_vs_random.py image|text|audio [--trials 6]

Data comes from `python -m autotransfer.demo` (Fashion-MNIST, Rotten Tomatoes, espeak-ng
keywords with held-out accents).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from autotransfer import demo  # noqa: E402
from autotransfer.study.study import search

REPO = Path(__file__).resolve().parents[1]
DATA = {
    "image": lambda out: demo.export_fashion_mnist(out, per_class=100, test_per_class=30),
    "text": lambda out: demo.export_rotten_tomatoes(out, per_class=150, val_per_class=75),
    "audio": lambda out: demo.export_keywords(out),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("modality", choices=sorted(DATA))
    parser.add_argument("--trials", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp())
    data = DATA[args.modality](work / "data")
    rows = []
    for variant in ("quick", "quick-scratch"):
        space = REPO / "search_spaces" / f"{args.modality}-{variant}.yaml"
        start = time.perf_counter()
        result = search(data, space, trials=args.trials, seed=args.seed,
                        storage=f"sqlite:///{work}/{variant}.db", out=work / variant)
        seconds = time.perf_counter() - start
        best = result.best or {}
        rows.append((variant, best.get("val_score"), best.get("test_score"), seconds))
        print(f"{space.name}: best val {best.get('val_score')}, test {best.get('test_score')}, "
              f"{seconds:.0f} s for {args.trials} trials", flush=True)
    (_, pre_val, _, pre_s), (_, rnd_val, _, rnd_s) = rows
    print(f"{args.modality}: pretrained best val {pre_val:.4f} ({pre_s:.0f} s) vs random init "
          f"{rnd_val:.4f} ({rnd_s:.0f} s): +{pre_val - rnd_val:.4f}")


if __name__ == "__main__":
    main()
