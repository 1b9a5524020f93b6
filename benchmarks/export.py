"""What shipping through ONNX Runtime costs and buys, per packaged backbone: latency of PyTorch
eager, ONNX Runtime fp32 and ONNX Runtime int8 at batch 1 and at the evaluation batch, the
accuracy of each, and the top-1 agreement of each ONNX model with PyTorch.

Per backbone and seed: a linear probe (``freeze_fraction`` 1, the activation cache) trained on
the demo data of its modality (Fashion-MNIST images with a test split, Rotten Tomatoes texts,
espeak keywords; the last two are scored on their validation split), then exported exactly as
``autotransfer train --export onnx --quantize int8`` does
(:func:`autotransfer.model.onnx_export.export_onnx`: static QDQ int8 calibrated on 128 training
samples for the CNNs, dynamic int8 for the transformers); the figures are read back from the
export's ``manifest.json``. Latency is the median pass of the quietest block
(:func:`autotransfer.finetune.cost.latency_seconds`) with ``--threads`` threads for both
runtimes, ``--budget`` seconds of timed passes per figure.

    python benchmarks/export.py [--seeds 3] [--epochs 3] [--image-size 128] [--threads 1]
        [--eval-batch 16] [--budget 0.5] [--backbones packaged/mobilenetv2_100 ...]
        [--out benchmarks/results/export.json]
    python benchmarks/export.py --table benchmarks/results/export.json   # its table again

Prints a markdown table (mean over seeds, min-max in brackets where seeds differ).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from autotransfer import demo  # noqa: E402
from autotransfer.contract.collect import get_backbone  # noqa: E402
from autotransfer.data import load_data  # noqa: E402
from autotransfer.finetune.methods import merge_method  # noqa: E402
from autotransfer.finetune.trainer import Trainer  # noqa: E402
from autotransfer.model.onnx_export import export_onnx  # noqa: E402
from autotransfer.space.hyperparameters import defaults  # noqa: E402

BACKBONES = ("packaged/mobilenetv2_100", "packaged/tf_efficientnet_lite0",
             "packaged/tf_efficientnet_lite1", "packaged/tf_efficientnet_lite2",
             "packaged/all-MiniLM-L6-v2", "packaged/whisper-tiny.en", "packaged/whisper-base")
RUNTIMES = (("PyTorch eager", "pytorch_fp32", "pytorch"), ("ORT fp32", "onnxruntime_fp32", None),
            ("ORT int8", "onnxruntime_int8", None))


def make_data(root: Path, modality: str):
    folder = root / modality
    if not folder.exists():
        if modality == "image":
            demo.export_fashion_mnist(folder, per_class=30, test_per_class=10)
        elif modality == "text":
            demo.export_rotten_tomatoes(folder, per_class=60, val_per_class=50)
        else:
            demo.export_keywords(folder)
    return load_data(folder, val_fraction=0.2, seed=0)


def one(backbone_id: str, data, seed: int, args, out: Path) -> dict:
    """Train a linear probe, export it with int8, and return its manifest."""
    params = {**defaults(), "freeze_fraction": 1.0, "lr": 3e-3, "batch_size": 32,
              "image_size": args.image_size, "max_length": 64, "clip_seconds": 1.0}
    backbone = get_backbone(backbone_id).load()
    trainer = Trainer(backbone, data, params, device=torch.device("cpu"), seed=seed)
    trainer.fit(args.epochs)
    model = merge_method(trainer.model.cpu().float().eval(), params)
    summary = export_onnx(model, trainer.preprocess, out, classes=data.classes,
                          modality=data.modality, data=data, quantize="int8",
                          batch_size=args.eval_batch, latency_budget_s=args.budget)
    if "error" in summary:
        raise SystemExit(f"{backbone_id}: {summary['error']}")
    return json.loads((out / "onnx" / "manifest.json").read_text())


def spread(values: list[float], digits: int) -> str:
    mean = statistics.fmean(values)
    if len(values) < 2 or max(values) - min(values) < 10 ** -digits:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} [{min(values):.{digits}f}-{max(values):.{digits}f}]"


def table(rows: dict[str, list[dict]]) -> str:
    lines = ["| backbone | runtime | latency ms, batch 1 | latency ms, batch B | accuracy "
             "(split) | top-1 agreement with PyTorch |", "|---|---|---|---|---|---|"]
    for backbone_id, manifests in rows.items():
        first = manifests[0]
        batch = next(k for k in first["latency_ms"] if k.startswith("batch_") and k != "batch_1")
        split = "test" if "test" in first["check"]["accuracy"] else first["check"]["split"]
        for label, key, torch_side in RUNTIMES:
            checks = [m["int8"]["check"] if "int8" in key else m["check"] for m in manifests]
            accuracy = [c["accuracy"][split][torch_side or "onnxruntime"] for c in checks]
            agreement = ("-" if torch_side else
                         spread([100 * c["agreement"] for c in checks], 1) + " %")
            method = f" ({manifests[0]['int8']['method']})" if "int8" in key else ""
            lines.append(
                f"| {backbone_id if key == 'pytorch_fp32' else ''} | {label}{method} | "
                f"{spread([m['latency_ms']['batch_1'][key] for m in manifests], 2)} | "
                f"{spread([m['latency_ms'][batch][key] for m in manifests], 1)} "
                f"(B={batch.removeprefix('batch_')}) | {spread(accuracy, 3)} ({split}) | "
                f"{agreement} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbones", nargs="+", default=list(BACKBONES))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--eval-batch", type=int, default=16)
    parser.add_argument("--budget", type=float, default=0.5)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/export.json"))
    parser.add_argument("--table", type=Path, help="print the table of a saved run and stop")
    args = parser.parse_args()
    if args.table:
        print(table(json.loads(args.table.read_text())["manifests"]))
        return
    torch.set_num_threads(args.threads)
    rows: dict[str, list[dict]] = {}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="autotransfer-export-") as tmp:
        root = Path(tmp)
        for backbone_id in args.backbones:
            modality = get_backbone(backbone_id).modality
            data = make_data(root, modality)
            for seed in range(args.seeds):
                manifest = one(backbone_id, data, seed, args, root / f"{modality}-{seed}")
                rows.setdefault(backbone_id, []).append(manifest)
                print(f"{backbone_id} seed {seed}: {time.perf_counter() - started:.0f}s",
                      file=sys.stderr, flush=True)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()},
                                            "manifests": rows}, indent=1) + "\n")
    print(f"torch threads {args.threads}, ONNX Runtime intra-op threads {args.threads}; "
          f"{args.seeds} seeds; {time.perf_counter() - started:.0f}s")
    print(table(rows))


if __name__ == "__main__":
    main()
