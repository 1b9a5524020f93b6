"""Trials with the frozen-prefix cache against without, side by side in one run.

A linear probe (``freeze_fraction`` 1) and a half-frozen fine-tune of a packaged ImageNet
backbone on real Fashion-MNIST images, each as a short series of trials that differ only in
training settings (learning rate), the way a search samples them. Without the cache every
epoch of every trial runs the frozen groups; with it the first trial computes their outputs
once and the others reuse them. Rounds alternate (without, with, without, ...) so that machine
noise hits both; each round starts a fresh cache. A trial's time is its wall time: loading the
backbone, building the trainer, every epoch and every evaluation.

    python benchmarks/cache.py [--backbone packaged/mobilenetv2_100] [--trials 3] [--epochs 4]
        [--per-class 50] [--image-size 96] [--rounds 2] [--only series]

Under augmentation (``--only augment``), as whole ``autotransfer search`` processes of one
trial each (start-up, data, model, training, report: what a user waits for): the shipped
spaces' augmentations ``flip`` and ``crop_flip`` for a linear probe and a half-frozen trial,
with the cache against ``--no-cache`` (live augmentation), val scores side by side; crop_flip
over ``--seeds`` seeds, which measures the bank of K views against live crops.

    python benchmarks/cache.py --only augment [--backbone packaged/tf_efficientnet_lite0]
        [--aug-epochs 8] [--per-class 60] [--image-size 64] [--seeds 3] [--val-fraction 0.2]
"""

from __future__ import annotations

import argparse
import csv
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from autotransfer import demo  # noqa: E402
from autotransfer.contract.collect import get_backbone
from autotransfer.data import load_data  # noqa: E402
from autotransfer.finetune.cache import ActivationCache
from autotransfer.finetune.trainer import Trainer
from autotransfer.space.hyperparameters import defaults

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


AUG_SPACE = """
backbones: [{backbone}]
epochs: {epochs}
pruner: none
val_fraction: {val_fraction}
params:
  freeze_fraction: {fraction}
  lr: 3.0e-3
  head_lr_multiplier: 10.0
  batch_size: 32
  augment: {augment}
  image_size: {image_size}
"""


def search_process(data: Path, space: Path, work: Path, seed: int, cache: bool,
                   views: int | None) -> tuple[float, float, str, float]:
    """One whole ``autotransfer search`` of one trial: wall seconds, val score, cache status
    and CPU seconds (user + system of the process; steadier than wall time on a shared
    machine)."""
    name = f"{space.stem}-{seed}-{'cache' if cache else 'live'}"
    flags = ([] if views is None else ["--cache-views", str(views)]) if cache else ["--no-cache"]
    command = [sys.executable, "-m", "autotransfer.cli", "search", str(data), "--space",
               str(space), "--trials", "1", "--seed", str(seed), "--storage",
               f"sqlite:///{work / name}.db", "--study", name, "--out", str(work / name),
               *flags]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    run = subprocess.run(command, capture_output=True, text=True, cwd=work)
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if run.returncode:
        raise SystemExit(f"{' '.join(command)}: {run.stderr.strip()}")
    with open(work / name / "leaderboard.csv", newline="") as handle:
        (row,) = list(csv.DictReader(handle))
    import optuna

    from autotransfer.finetune.records import TrialRecord

    trial = optuna.load_study(study_name=name, storage=f"sqlite:///{work / name}.db").trials[0]
    return (seconds, float(row["val_score"]), TrialRecord.from_frozen(trial).activation_cache
            or "?", cpu)


def augmented(args) -> None:
    """flip and crop_flip, probe and half-frozen, cache vs live, as whole processes."""
    work = Path(tempfile.mkdtemp())
    data = demo.export_fashion_mnist(work / "fashion-mnist", per_class=args.per_class)
    load = os.getloadavg()
    print(f"{args.backbone}, Fashion-MNIST {10 * args.per_class} images (val fraction "
          f"{args.val_fraction}) at {args.image_size} px, 1 trial x {args.aug_epochs} epochs "
          f"per process; load average {load[0]:.2f} on {os.cpu_count()} CPUs")
    rows = []
    for augment in ("flip", "crop_flip"):
        for label, fraction in (("linear probe", 1.0), ("half-frozen", 0.5)):
            space = work / f"{augment}-{int(fraction * 100)}.yaml"
            space.write_text(AUG_SPACE.format(
                backbone=args.backbone, epochs=args.aug_epochs, augment=augment,
                fraction=fraction, image_size=args.image_size, val_fraction=args.val_fraction))
            seeds = range(args.seeds if augment == "crop_flip" else 1)
            for seed in seeds:  # alternate live and cached so that machine noise hits both
                live = search_process(data, space, work, seed, cache=False, views=None)
                cached = search_process(data, space, work, seed, cache=True, views=args.views)
                rows.append((augment, label, seed, live, cached))
                print(f"{augment:9} {label:13} seed {seed}: --no-cache {live[0]:6.1f} s "
                      f"({live[3]:.1f} s CPU) val {live[1]:.4f} | cache {cached[0]:6.1f} s "
                      f"({cached[3]:.1f} s CPU) val {cached[1]:.4f} ({cached[2]}) | "
                      f"{live[0] / cached[0]:.2f}x wall, {live[3] / cached[3]:.2f}x CPU",
                      flush=True)
    print("\nwhole process, --no-cache / cache (median over seeds), wall and CPU time; "
          "val: cache - live")
    for augment in ("flip", "crop_flip"):
        for label in ("linear probe", "half-frozen"):
            mine = [r for r in rows if r[:2] == (augment, label)]
            ratio = statistics.median(r[3][0] / r[4][0] for r in mine)
            cpu = statistics.median(r[3][3] / r[4][3] for r in mine)
            diffs = [r[4][1] - r[3][1] for r in mine]
            print(f"  {augment:9} {label:13} {ratio:5.2f}x wall {cpu:5.2f}x CPU   val "
                  f"difference mean {statistics.mean(diffs):+.4f} over {len(mine)} seed(s) "
                  f"({', '.join(f'{d:+.4f}' for d in diffs)})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=("series", "augment"), default=None,
                        help="run one part (default: both)")
    parser.add_argument("--aug-epochs", type=int, default=8)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--val-fraction", type=float, default=0.2)
    parser.add_argument("--views", type=int, default=None, help="--cache-views (default 8)")
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
    if args.only != "series":
        augmented(args)
    if args.only == "augment":
        return

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
