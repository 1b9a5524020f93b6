"""Tuning methods side by side (#24): val score, trainable parameters, peak memory, s/epoch.

On real pretrained weights: packaged MobileNetV2 on demo Fashion-MNIST images (64 px) and
packaged all-MiniLM-L6-v2 on Rotten Tomatoes snippets; every method at freeze_fraction 0 with
the default hyperparameters (lr per modality below), over seeds (mean and spread). Each trial
runs in a fresh process, so its peak memory is that process's peak resident set (``ru_maxrss``,
on a CPU: weights, gradients, optimizer state and saved activations, plus the interpreter).

    OMP_NUM_THREADS=1 python benchmarks/methods.py --per-class 10 --epochs 2 --seeds 3

Measured once (2 shared CPU cores, load average 0.6-1.4, 3 min in all; val is 20 images / 80
texts, so the spreads are wide): LoRA and BitFit trained 1.34% (BitFit) and 7.20% (LoRA) of
MobileNetV2's full fine-tune and 0.12% / 1.47% of MiniLM's. LoRA's peak resident set was
below the full fine-tune's on MiniLM (1473 vs 1610 MiB) but above it on MobileNetV2 (1143 vs
1079 MiB): a CNN's many narrow 1x1 convolutions make rank 8 relatively large, and peft keeps
the adapters' inputs for the backward pass. No score difference is significant at this size.
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import statistics
import tempfile
import time
from pathlib import Path

import torch

from autotransfer.contract.collect import get_backbone
from autotransfer.contract.hyperparameters import defaults
from autotransfer.data import load_data
from autotransfer.demo import export_fashion_mnist, export_rotten_tomatoes
from autotransfer.finetune.trainer import Trainer

METHODS = ("finetune", "bitfit", "layernorm", "lora")
SETUPS = {
    "image": ("packaged/mobilenetv2_100", {"image_size": 64, "lr": 1e-3, "augment": "none"}),
    "text": ("packaged/all-MiniLM-L6-v2", {"max_length": 32, "lr": 1e-4}),
}


def run_apart(*args) -> dict:
    """:func:`run` in a fresh process (its own peak resident set)."""
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(run, args)


def run(modality: str, data, method: str, seed: int, epochs: int) -> dict:
    backbone_id, extra = SETUPS[modality]
    params = {**defaults(), **extra, "method": method}
    if method != "finetune":  # the adapters and selected parameters start from scratch or
        params["lr"] = params["lr"] * 10  # from pretraining: they take a 10x larger lr
    backbone = get_backbone(backbone_id).load()
    trainer = Trainer(backbone, data, params, device=torch.device("cpu"), seed=seed, cache=False)
    result = trainer.fit(epochs)
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"score": result.score, "trainable": result.n_trainable,
            "peak_mib": peak_kib / 2**10,
            "s_epoch": statistics.mean(e.seconds for e in result.history)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-class", type=int, default=10)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--modalities", default="image,text")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="methods-bench-"))
    datasets = {}
    for modality in args.modalities.split(","):
        if modality == "image":
            folder = export_fashion_mnist(work / "fmnist", per_class=args.per_class,
                                          test_per_class=0, seed=0)
        else:
            folder = export_rotten_tomatoes(work / "rt", per_class=args.per_class * 4,
                                            val_per_class=args.per_class * 2, seed=0)
        datasets[modality] = load_data(folder, seed=0)
    print("| data | method | val accuracy (mean ± sd) | trainable params | % of finetune | "
          "peak RSS MiB | s/epoch |")
    print("|---|---|---|---|---|---|---|")
    for modality, data in datasets.items():
        full = None
        for method in METHODS:
            start = time.perf_counter()
            runs = [run_apart(modality, data, method, seed, args.epochs)
                    for seed in range(args.seeds)]
            scores = [r["score"] for r in runs]
            trainable = runs[0]["trainable"]
            full = trainable if method == "finetune" else full
            print(f"| {modality} | {method} | {statistics.mean(scores):.3f} ± "
                  f"{statistics.stdev(scores) if len(scores) > 1 else 0:.3f} | {trainable:,} | "
                  f"{100 * trainable / full:.2f}% | "
                  f"{statistics.mean(r['peak_mib'] for r in runs):.0f} | "
                  f"{statistics.mean(r['s_epoch'] for r in runs):.2f} |  "
                  f"({time.perf_counter() - start:.0f}s)", flush=True)


if __name__ == "__main__":
    main()
