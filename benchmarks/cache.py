"""Trials with the frozen-prefix cache against without, side by side in one run.

A linear probe (``freeze_fraction`` 1) and a half-frozen fine-tune of a packaged ImageNet
backbone on real Fashion-MNIST images, each as a short series of trials that differ only in
training settings (learning rate), the way a search samples them. Without the cache every
epoch of every trial runs the frozen groups; with it the first trial computes their outputs
once and the others reuse them. Rounds alternate (without, with, without, ...) so that machine
noise hits both; each round starts a fresh cache. A trial's time is its wall time: loading the
backbone, building the trainer, every epoch and every evaluation.

    python benchmarks/cache.py [--backbone packaged/mobilenetv2_100] [--trials 3] [--epochs 4]
        [--per-class 50] [--image-size 96] [--rounds 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from autotransfer import demo  # noqa: E402
from autotransfer.contract.hyperparameters import defaults
from autotransfer.contract.registry import get_backbone
from autotransfer.data import load_data  # noqa: E402
from autotransfer.train.cache import ActivationCache
from autotransfer.train.trainer import Trainer

LRS = (1e-3, 3e-3, 3e-4, 2e-3, 5e-4, 1e-2)


def series(backbone_id: str, data, params: dict, *, trials: int, epochs: int,
           cache: bool) -> tuple[list[float], list[float], list[str]]:
    """``trials`` trials in a row; their wall seconds, val scores and cache statuses."""
    shared = ActivationCache() if cache else False
    seconds, scores, statuses = [], [], []
    for i in range(trials):
        start = time.perf_counter()
        backbone = get_backbone(backbone_id).load()
        trainer = Trainer(backbone, data, {**params, "lr": LRS[i % len(LRS)]},
                          device=torch.device("cpu"), seed=i, cache=shared)
        result = trainer.fit(epochs)
        seconds.append(time.perf_counter() - start)
        scores.append(result.score)
        statuses.append(trainer.cache_status)
    return seconds, scores, statuses


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="packaged/mobilenetv2_100")
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--per-class", type=int, default=50)
    parser.add_argument("--image-size", type=int, default=96)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    folder = Path(tempfile.mkdtemp()) / "fashion-mnist"
    data = load_data(demo.export_fashion_mnist(folder, per_class=args.per_class,
                                               test_per_class=args.per_class // 2), seed=0)
    base = defaults()
    base.update(augment="none", image_size=args.image_size, batch_size=32, layer_decay=0.8)
    print(f"{args.backbone}, Fashion-MNIST {len(data.train)} train / {len(data.val)} val / "
          f"{len(data.test or [])} test images at {args.image_size} px, {args.trials} trials x "
          f"{args.epochs} epochs per series, torch threads {torch.get_num_threads()}, "
          f"LD_PRELOAD={os.environ.get('LD_PRELOAD', '')!r}")
    series(args.backbone, data, {**base, "freeze_fraction": 1.0}, trials=1, epochs=1,
           cache=False)  # warm-up: decode the images once, kernels, allocator

    rows = []
    for label, fraction in (("linear probe", 1.0), ("half-frozen", 0.5)):
        params = {**base, "freeze_fraction": fraction}
        plain_runs, cached_runs = [], []
        for round_ in range(args.rounds):
            plain = series(args.backbone, data, params, trials=args.trials, epochs=args.epochs,
                           cache=False)
            cached = series(args.backbone, data, params, trials=args.trials,
                            epochs=args.epochs, cache=True)
            plain_runs.append(plain)
            cached_runs.append(cached)
            worst = max(abs(a - b) for a, b in zip(plain[1], cached[1], strict=True))
            print(f"{label} round {round_ + 1}: without cache "
                  f"{' '.join(f'{s:.1f}' for s in plain[0])} s, with cache "
                  f"{' '.join(f'{s:.1f}' for s in cached[0])} s ({', '.join(cached[2])}); "
                  f"largest val score difference {worst:.2g}")

        def med(runs, pick):
            return statistics.median(pick(r[0]) for r in runs)

        first = med(plain_runs, lambda s: s[0]) / med(cached_runs, lambda s: s[0])
        later = (med(plain_runs, lambda s: statistics.mean(s[1:]))
                 / med(cached_runs, lambda s: statistics.mean(s[1:]))) if args.trials > 1 else None
        total = med(plain_runs, sum) / med(cached_runs, sum)
        rows.append((label, first, later, total))

    print(f"\nspeed-up with the cache (median of {args.rounds} rounds; without / with):")
    print(f"{'':14}{'first trial':>13}{'later trials':>14}{f'all {args.trials} trials':>14}")
    for label, first, later, total in rows:
        shown = f"{later:.1f}x" if later is not None else "-"
        print(f"{label:14}{first:>12.1f}x{shown:>14}{total:>13.1f}x")


if __name__ == "__main__":
    main()
