"""Trial training throughput against a hand-written PyTorch loop, side by side in one run.

Both train the same packaged backbone (same weights, same linear head, same AdamW settings)
on the same encoded batches (images: uint8 normalised on the fly, channels_last for CNNs;
text: token ids cut to the longest text; audio: extractor features); rounds alternate A/B so
that machine noise hits both. Evaluation is not timed.

    python benchmarks/throughput.py [--modality image|text|audio] [--backbone ID] [--rounds 3]
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
from autotransfer.contract.collect import get_backbone
from autotransfer.data import load_data, take  # noqa: E402
from autotransfer.finetune.trainer import Trainer
from autotransfer.space.hyperparameters import defaults

SETUPS = {  # modality: (default backbone, data export, hyperparameters)
    "image": ("packaged/mobilenetv2_100",
              lambda out: demo.export_fashion_mnist(out, per_class=50),
              {"image_size": 96, "batch_size": 32}),
    "text": ("packaged/all-MiniLM-L6-v2",
             lambda out: demo.export_rotten_tomatoes(out, per_class=100, val_per_class=20),
             {"max_length": 64, "batch_size": 16}),
    "audio": ("packaged/whisper-tiny.en", lambda out: demo.export_keywords(out),
              {"clip_seconds": 1.0, "batch_size": 16}),
}


def _configured(backbone, params):
    pre = backbone.preprocess.configure(params)
    if backbone.configure is not None:
        backbone.configure(params)
    return pre


def hand_loop(backbone_id: str, data, params: dict, epochs: int) -> float:
    """What a practitioner writes by hand; returns training samples per second."""
    torch.manual_seed(0)
    backbone = get_backbone(backbone_id).load()
    pre = _configured(backbone, params)
    model = torch.nn.Sequential(backbone.model, torch.nn.Linear(backbone.dim, data.n_classes))
    fmt = torch.channels_last if backbone.channels_last else torch.contiguous_format
    model.to(memory_format=fmt).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=params["lr"], weight_decay=0.01)
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=params["label_smoothing"])
    x, y = pre.encode(data, "train")
    bs = params["batch_size"]
    seen, seconds = 0, 0.0
    for _ in range(epochs):
        start = time.perf_counter()
        order = torch.randperm(len(y))
        for i in range(0, len(y) - 1, bs):
            idx = order[i : i + bs]
            if len(idx) < 2:
                continue
            inputs = pre.to_input(take(x, idx), device=torch.device("cpu"))
            if isinstance(inputs, torch.Tensor):
                inputs = inputs.contiguous(memory_format=fmt)
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
    parser.add_argument("--modality", choices=sorted(SETUPS), default="image")
    parser.add_argument("--backbone", default=None)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    default_backbone, export, overrides = SETUPS[args.modality]
    backbone_id = args.backbone or default_backbone
    data = load_data(export(Path(tempfile.mkdtemp()) / "data"), seed=0)
    params = defaults()
    params.update(freeze_fraction=0.0, lr=1e-4, head_lr_multiplier=1.0, augment="none",
                  dropout=0.0, **overrides)
    _configured(get_backbone(backbone_id).load(), params).encode(data, "train")  # encode once

    print(f"{backbone_id} ({args.modality}), {len(data.train)} samples, batch "
          f"{params['batch_size']}, torch threads {torch.get_num_threads()}, "
          f"LD_PRELOAD={os.environ.get('LD_PRELOAD', '')!r}")
    hand_loop(backbone_id, data, params, 1)  # warm-up: kernels and allocator caches
    hand, ours = [], []
    for round_ in range(args.rounds):
        hand.append(hand_loop(backbone_id, data, params, args.epochs))
        ours.append(autotransfer_loop(backbone_id, data, params, args.epochs))
        print(f"round {round_ + 1}: hand loop {hand[-1]:.1f} samples/s, autotransfer trial "
              f"{ours[-1]:.1f} samples/s, ratio {ours[-1] / hand[-1]:.3f}")
    ratio = statistics.median(o / h for o, h in zip(ours, hand, strict=True))
    print(f"median: hand loop {statistics.median(hand):.1f} samples/s, autotransfer "
          f"{statistics.median(ours):.1f} samples/s, ratio {ratio:.3f}x")


if __name__ == "__main__":
    main()
