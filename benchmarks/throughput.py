"""Trial training throughput against a hand-written PyTorch loop, side by side in one run.

Both train the same packaged backbone (same weights, same linear head, same AdamW settings,
same uint8 batches normalised on the fly, channels_last for CNNs) on the same Fashion-MNIST
images; rounds alternate A/B so that machine noise hits both. Evaluation is not timed.

    python benchmarks/throughput.py [--backbone packaged/mobilenetv2_100] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from autotransfer.backbones import get_backbone  # noqa: E402
from autotransfer.data import image_tensors, load_data  # noqa: E402
from autotransfer.demo import export_fashion_mnist  # noqa: E402
from autotransfer.space import HYPERPARAMETERS  # noqa: E402
from autotransfer.training import Trainer  # noqa: E402


def hand_loop(backbone_id: str, data, params: dict, epochs: int) -> float:
    """What a practitioner writes by hand; returns training samples per second."""
    torch.manual_seed(0)
    backbone = get_backbone(backbone_id).load()
    pre = backbone.preprocess.with_size(params["image_size"])
    model = torch.nn.Sequential(backbone.model, torch.nn.Linear(backbone.dim, data.n_classes))
    fmt = torch.channels_last if backbone.channels_last else torch.contiguous_format
    model.to(memory_format=fmt).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=params["lr"], weight_decay=0.01)
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=params["label_smoothing"])
    x, y = image_tensors(data, "train", pre)
    bs = params["batch_size"]
    seen, seconds = 0, 0.0
    for _ in range(epochs):
        start = time.perf_counter()
        order = torch.randperm(len(y))
        for i in range(0, len(y) - 1, bs):
            idx = order[i : i + bs]
            if len(idx) < 2:
                continue
            inputs = pre.normalize(x[idx]).contiguous(memory_format=fmt)
            loss = loss_fn(model(inputs), y[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            seen += len(idx)
        seconds += time.perf_counter() - start
    return seen / seconds


def autotransfer_loop(backbone_id: str, data, params: dict, epochs: int) -> float:
    """The trial's own loop (Trainer.fit); returns training samples per second."""
    backbone = get_backbone(backbone_id).load()
    trainer = Trainer(backbone, data, params, device=torch.device("cpu"), seed=0)
    result = trainer.fit(epochs)
    seen = sum(r.samples_per_second * r.seconds for r in result.history)
    return seen / sum(r.seconds for r in result.history)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="packaged/mobilenetv2_100")
    parser.add_argument("--per-class", type=int, default=50)
    parser.add_argument("--image-size", type=int, default=96)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    folder = export_fashion_mnist(tempfile.mkdtemp() + "/fm", per_class=args.per_class)
    data = load_data(folder, seed=0)
    params = {name: h.default for name, h in HYPERPARAMETERS.items()}
    params.update(
        freeze_fraction=0.0, lr=1e-3, head_lr_multiplier=1.0, batch_size=args.batch_size,
        image_size=args.image_size, augment="none", dropout=0.0,
    )
    image_tensors(data, "train", get_backbone(args.backbone).load().preprocess.with_size(
        args.image_size))  # decode once, outside the timings

    print(f"{args.backbone}, {len(data.train)} images at {args.image_size}px, "
          f"batch {args.batch_size}, torch threads {torch.get_num_threads()}, "
          f"LD_PRELOAD={os.environ.get('LD_PRELOAD', '')!r}")
    hand_loop(args.backbone, data, params, 1)  # warm-up: kernels and allocator caches
    hand, ours = [], []
    for round_ in range(args.rounds):
        hand.append(hand_loop(args.backbone, data, params, args.epochs))
        ours.append(autotransfer_loop(args.backbone, data, params, args.epochs))
        print(f"round {round_ + 1}: hand loop {hand[-1]:.1f} img/s, "
              f"autotransfer trial {ours[-1]:.1f} img/s, ratio {ours[-1] / hand[-1]:.3f}")
    ratio = statistics.median(o / h for o, h in zip(ours, hand, strict=True))
    print(f"median: hand loop {statistics.median(hand):.1f} img/s, autotransfer "
          f"{statistics.median(ours):.1f} img/s, ratio {ratio:.3f}x")


if __name__ == "__main__":
    main()
