"""Is the pre-screen honest? Its rankings against fine-tuned accuracy, on real datasets.

    python benchmarks/prescreen.py [--per-class 30] [--val-per-class 20] [--epochs 3]

For each dataset, every candidate backbone (the 4 packaged ImageNet networks, and the same 4
with random weights) is fine-tuned with one fixed setting and budget; its validation accuracy
is the ground truth. The pre-screen scores (LogME, k-NN) are computed on frozen features of the
same training images, and the baselines rank by parameter count and by published ImageNet
top-1 (both put pretrained weights before random ones). Kendall's tau-b of each ranking
against fine-tuned accuracy is printed over all 8 candidates and over the 4 pretrained ones,
with whether the ranking's first pick was the best fine-tuned backbone.

Datasets: Fashion-MNIST (Debian dataset-fashion-mnist) and the UCI optical digits that ship
in scikit-learn (8x8 images upscaled; pip install --no-deps scikit-learn, not imported).
"""

from __future__ import annotations

import argparse
import gzip
import importlib.metadata
import json
import math
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402

from autotransfer import demo  # noqa: E402
from autotransfer.contract.collect import get_registry
from autotransfer.data import load_data  # noqa: E402
from autotransfer.space.schema import parse_space
from autotransfer.study.options import PRESCREEN_METHODS
from autotransfer.study.prescreen import prescreen

IMAGE_BACKBONES = ["packaged/mobilenetv2_100", "packaged/tf_efficientnet_lite0",
                   "packaged/tf_efficientnet_lite1", "packaged/tf_efficientnet_lite2"]


def export_digits(out: Path, *, per_class: int, seed: int = 0) -> Path:
    """UCI optical digits (scikit-learn's copy) as 8x8 grayscale PNGs in class folders."""
    from PIL import Image

    try:
        path = importlib.metadata.distribution("scikit-learn").locate_file(
            "sklearn/datasets/data/digits.csv.gz")
    except importlib.metadata.PackageNotFoundError:
        raise SystemExit("pip install --no-deps scikit-learn (for its digits data)") from None
    with gzip.open(path, "rt") as handle:
        table = np.loadtxt(handle, delimiter=",")
    pixels, labels = table[:, :-1].reshape(-1, 8, 8), table[:, -1].astype(int)
    rng = np.random.default_rng(seed)
    for cls in range(10):
        folder = out / f"digit-{cls}"
        folder.mkdir(parents=True, exist_ok=True)
        for i in rng.choice(np.flatnonzero(labels == cls), size=per_class, replace=False):
            image = (pixels[i] * (255 / 16)).round().astype(np.uint8)
            Image.fromarray(image).save(folder / f"{i:04d}.png")
    return out


def kendall_tau(a, b) -> float:
    """Kendall's tau-b of two score lists (ties allowed; ``None`` counts as lowest)."""
    a = [-math.inf if x is None else x for x in a]
    b = [-math.inf if x is None else x for x in b]
    concordant = discordant = ties_a = ties_b = 0
    for i in range(len(a)):
        for j in range(i + 1, len(a)):
            da, db = np.sign(a[i] - a[j]), np.sign(b[i] - b[j])
            if da == 0 and db == 0:
                continue
            if da == 0:
                ties_a += 1
            elif db == 0:
                ties_b += 1
            elif da == db:
                concordant += 1
            else:
                discordant += 1
    denominator = math.sqrt((concordant + discordant + ties_a) * (concordant + discordant + ties_b))
    return (concordant - discordant) / denominator if denominator else 0.0


def fine_tune(spec, data, params, epochs: int, seed: int) -> tuple[float, float]:
    """Validation accuracy of ``spec`` after ``epochs`` epochs with ``params``; seconds."""
    import torch

    from autotransfer.finetune.trainer import Trainer

    start = time.perf_counter()
    torch.manual_seed(seed)
    backbone = get_registry().get(spec.id).load(pretrained=spec.pretrained)
    trainer = Trainer(backbone, data, params, device=torch.device("cpu"), seed=seed)
    result = trainer.fit(epochs)
    return result.history[-1].accuracy, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-class", type=int, default=30, help="training images per class")
    parser.add_argument("--val-per-class", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--datasets", default="fashion-mnist,digits")
    parser.add_argument("--json", type=Path, help="also write the measurements here")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp())
    total = args.per_class + args.val_per_class
    exporters = {
        "fashion-mnist": lambda out: demo.export_fashion_mnist(out, per_class=total,
                                                                seed=args.seed),
        "digits": lambda out: export_digits(out, per_class=total, seed=args.seed),
    }
    space = parse_space({
        "backbones": IMAGE_BACKBONES + [{"id": b, "pretrained": False} for b in IMAGE_BACKBONES],
        "epochs": args.epochs,
        "params": {
            "image_size": args.image_size, "freeze_fraction": 0.0, "lr": 2e-3,
            "head_lr_multiplier": 10.0, "layer_decay": 0.9, "weight_decay": 1e-4,
            "batch_size": 32, "augment": "none", "label_smoothing": 0.1,
        },
    })
    params = space.resolve({})
    report = {}
    for name in args.datasets.split(","):
        data = load_data(exporters[name](work / name), seed=args.seed,
                         val_fraction=args.val_per_class / total)
        print(f"== {name}: {len(data.train)} train / {len(data.val)} val images, "
              f"{args.image_size} px, {args.epochs} epochs of full fine-tuning", flush=True)
        ranking = prescreen(data, space, samples=len(data.train), seed=args.seed)
        scores = {s.label: s for s in ranking}
        rows = []
        for spec in space.backbones:
            accuracy, seconds = fine_tune(spec, data, params, args.epochs, args.seed)
            s = scores[spec.label]
            rows.append({"backbone": spec.label, "pretrained": spec.pretrained,
                         "fine_tuned": accuracy, "fine_tune_s": round(seconds, 1),
                         "prescreen_s": round(s.seconds, 1), **s.scores})
            print(f"  {spec.label:44s} fine-tuned {accuracy:.4f} ({seconds:.0f}s)  "
                  f"logme {s.scores['logme']:.4f}  knn {s.scores['knn']:.4f}  "
                  f"prescreen {s.seconds:.1f}s", flush=True)
        taus = {}
        for pool, members in (("all 8", rows), ("pretrained 4", [r for r in rows
                                                                 if r["pretrained"]])):
            truth = [r["fine_tuned"] for r in members]
            best = max(range(len(members)), key=lambda i: truth[i])
            for method in PRESCREEN_METHODS:
                values = [r[method] for r in members]
                pick = max(range(len(members)),
                           key=lambda i: -math.inf if values[i] is None else values[i])
                taus[(pool, method)] = (kendall_tau(values, truth), pick == best)
        report[name] = {"rows": rows, "tau": {f"{p}/{m}": t for (p, m), t in taus.items()}}
        print(f"  Kendall's tau-b against fine-tuned accuracy ({name}):")
        for (pool, method), (tau, hit) in taus.items():
            print(f"    {pool:13s} {method:9s} tau {tau:+.3f}  first pick best: "
                  f"{'yes' if hit else 'no'}", flush=True)
    print("\n| ranking | " + " | ".join(f"{n} (all 8) | {n} (pretrained 4)" for n in report)
          + " | mean |")
    print("|---|" + "---|" * (2 * len(report) + 1))
    for method in PRESCREEN_METHODS:
        cells = [report[n]["tau"][f"{p}/{method}"][0] for n in report
                 for p in ("all 8", "pretrained 4")]
        print(f"| {method} | " + " | ".join(f"{c:+.2f}" for c in cells)
              + f" | {np.mean(cells):+.2f} |")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
