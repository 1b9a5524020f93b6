"""Best-so-far curves: a search with pre-screen + warm start against one without, same budget,
on a dataset that the transfer history does not contain.

    python benchmarks/warm_start.py [--trials 6] [--history-trials 4] [--per-class 30]

The history holds two earlier studies: UCI optical digits (scikit-learn's copy, upscaled) and
the six clothing classes of Fashion-MNIST. The new dataset is the four other Fashion-MNIST
classes (sandal, sneaker, bag, ankle-boot), other images, which no study has seen. Both
searches on it use the same space, seed and number of trials; one adds ``--prescreen K
--warm-start N``. Prints the best validation accuracy after each trial (and seconds), and saves
a PNG when matplotlib is installed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from prescreen import export_digits  # noqa: E402

from autotransfer import demo  # noqa: E402
from autotransfer.finetune.records import StudyRecord, TrialRecord
from autotransfer.space.schema import parse_space
from autotransfer.study.study import search

CLOTHES = ("t-shirt", "trouser", "pullover", "dress", "coat", "shirt")
ACCESSORIES = ("sandal", "sneaker", "bag", "ankle-boot")


def fashion_subset(out: Path, classes, *, per_class: int, seed: int) -> Path:
    demo.export_fashion_mnist(out, per_class=per_class, seed=seed)
    for folder in out.iterdir():
        if folder.name not in classes:
            shutil.rmtree(folder)
    return out


def curve(study) -> list[tuple[float, float]]:
    """(best so far, seconds since the first trial started) after each finished trial."""
    trials = sorted((t for t in study.trials if t.datetime_complete), key=lambda t: t.number)
    if not trials:
        return []
    start, best, points = trials[0].datetime_start, float("-inf"), []
    for t in trials:
        if t.state.name == "COMPLETE":
            best = max(best, t.value)
        points.append((best, (t.datetime_complete - start).total_seconds()))
    return points


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=6)
    parser.add_argument("--history-trials", type=int, default=4)
    parser.add_argument("--per-class", type=int, default=30)
    parser.add_argument("--prescreen", type=int, default=2)
    parser.add_argument("--warm-start", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--png", type=Path, default=Path("warm_start.png"))
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp())
    space = parse_space({
        "backbones": ["packaged/mobilenetv2_100", "packaged/tf_efficientnet_lite0",
                      {"id": "packaged/mobilenetv2_100", "pretrained": False},
                      {"id": "packaged/tf_efficientnet_lite0", "pretrained": False}],
        "epochs": 2,
        "params": {
            "image_size": 48, "batch_size": 32,
            "freeze_fraction": {"type": "float", "low": 0.0, "high": 1.0},
            "lr": {"type": "float", "low": 1.0e-4, "high": 1.0e-2, "log": True},
            "head_lr_multiplier": {"type": "float", "low": 1.0, "high": 30.0, "log": True},
        },
    })
    storage = f"sqlite:///{work}/history.db"
    history = {
        "digits": export_digits(work / "digits", per_class=args.per_class, seed=args.seed),
        "clothes": fashion_subset(work / "clothes", CLOTHES, per_class=args.per_class,
                                  seed=args.seed),
    }
    # each study samples with its own seed: a warm start must not win by replaying the very
    # trials that the same seed would sample anyway
    for offset, (name, data) in enumerate(history.items(), start=1):
        start = time.perf_counter()
        result = search(data, space, trials=args.history_trials, storage=storage,
                        study_name=name, out=work / f"{name}-out", seed=args.seed + 100 * offset)
        print(f"history study {name!r}: best {result.best and result.best['val_score']:.4f} "
              f"({result.best and result.best['backbone']}), "
              f"{time.perf_counter() - start:.0f}s", flush=True)

    target = fashion_subset(work / "accessories", ACCESSORIES, per_class=args.per_class,
                            seed=args.seed + 1)
    curves = {}
    for label, extra in (
        ("plain", {"history": False}),
        (f"prescreen {args.prescreen} + warm start {args.warm_start}",
         {"prescreen": args.prescreen, "warm_start": args.warm_start}),
    ):
        start = time.perf_counter()
        result = search(target, space, trials=args.trials, storage=storage,
                        study_name=f"accessories-{extra.get('prescreen', 0)}",
                        out=work / "target-out", seed=args.seed, **extra)
        total = time.perf_counter() - start
        curves[label] = curve(result.study)
        kept = (StudyRecord.of(result.study).prescreen or {}).get("kept")
        print(f"{label}: {total:.0f}s in all" + (f"; kept {kept}" if kept else ""), flush=True)
        for t in result.study.trials:
            source = TrialRecord.from_frozen(t).warm_start
            print(f"  trial {t.number} {t.params['backbone']:42s} {t.state.name:8s} "
                  f"{t.value if t.value is not None else float('nan'):.4f}"
                  + (f"  (warm start from {source['study']!r} trial {source['trial']})"
                     if source else ""), flush=True)

    print("\nbest validation accuracy so far, after each trial:")
    print("| trial | " + " | ".join(curves) + " |")
    print("|---|" + "---|" * len(curves))
    for i in range(args.trials):
        cells = [f"{c[i][0]:.4f} ({c[i][1]:.0f}s)" if i < len(c) else "-"
                 for c in curves.values()]
        print(f"| {i + 1} | " + " | ".join(cells) + " |")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    figure, axis = plt.subplots(figsize=(5, 3.2))
    for label, points in curves.items():
        axis.step(range(1, len(points) + 1), [p[0] for p in points], where="post", label=label)
    axis.set_xlabel("trial")
    axis.set_ylabel("best val accuracy so far")
    axis.legend()
    figure.tight_layout()
    figure.savefig(args.png, dpi=120)
    print(f"saved {args.png}")


if __name__ == "__main__":
    main()
