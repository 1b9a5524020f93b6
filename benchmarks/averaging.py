"""What checkpoint averaging (``average_checkpoints``, the greedy soup) buys on real data.

One training per seed gives both arms: averaging changes only the end of a trial (the epochs
are the same, bit for bit), so the model of the last epoch (the trial without averaging) is
scored on val and test before the soup replaces it. Prints one JSON line per seed, then the mean
and standard deviation of each arm and of the gain.

    python -m autotransfer.demo fashion-mnist /tmp/fm --per-class 40 --test-per-class 20
    python benchmarks/averaging.py /tmp/fm --seeds 0 1 2 --epochs 5 --k 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from autotransfer.contract.collect import get_backbone
from autotransfer.data import load_data
from autotransfer.finetune.averaging import GreedySoup
from autotransfer.finetune.recipe import Supervised
from autotransfer.finetune.trainer import Trainer
from autotransfer.space.hyperparameters import defaults


class _ScoreLastEpoch:
    """An epoch step placed before the soup: scores the last epoch's model on test."""

    def __init__(self) -> None:
        self.test: float | None = None

    def after_epoch(self, trainer, result) -> None:
        pass

    def after_fit(self, trainer, result) -> None:
        if trainer.data.test is not None:
            self.test = trainer.evaluate("test")[trainer.metric]

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


def run(data, backbone_id: str, params: dict, epochs: int, k: int, seed: int) -> dict:
    torch.manual_seed(seed)
    backbone = get_backbone(backbone_id).load(pretrained=True)
    last = _ScoreLastEpoch()
    recipe = Supervised(steps=[last, GreedySoup(k)],
                        label_smoothing=float(params["label_smoothing"]))
    start = time.perf_counter()
    trainer = Trainer(backbone, data, params, device=torch.device("cpu"), seed=seed,
                      recipe=recipe)
    result = trainer.fit(epochs)
    info = result.averaging or {}
    return {"seed": seed, "val_without": result.history[-1].score, "val_with": result.score,
            "test_without": last.test, "test_with": None if result.test is None
            else result.test["accuracy"], "epochs_averaged": info.get("epochs"),
            "val_per_epoch": [h.score for h in result.history],
            "seconds": round(time.perf_counter() - start, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("data")
    parser.add_argument("--backbone", default="packaged/mobilenetv2_100")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--k", type=int, default=3)
    parser.add_argument("--image-size", type=int, default=96)
    parser.add_argument("--freeze", type=float, default=0.5)
    parser.add_argument("--lr", type=float, default=1e-3)
    args = parser.parse_args()
    data = load_data(args.data, seed=0)
    params = {**defaults(), "image_size": args.image_size, "freeze_fraction": args.freeze,
              "lr": args.lr}
    rows = []
    for seed in args.seeds:
        rows.append(run(data, args.backbone, params, args.epochs, args.k, seed))
        print(json.dumps(rows[-1]), flush=True)
    summary = {}
    for key in ("val_without", "val_with", "test_without", "test_with"):
        values = [r[key] for r in rows]
        summary[key] = (statistics.mean(values),
                        statistics.stdev(values) if len(values) > 1 else 0.0)
    for split in ("val", "test"):
        gains = [r[f"{split}_with"] - r[f"{split}_without"] for r in rows]
        summary[f"{split}_gain"] = (statistics.mean(gains),
                                    statistics.stdev(gains) if len(gains) > 1 else 0.0)
    print(json.dumps({"summary (mean, stdev)": summary, "args": vars(args),
                      "n_train": len(data.train), "n_val": len(data.val),
                      "n_test": len(data.test) if data.test is not None else 0}))


if __name__ == "__main__":
    main()
