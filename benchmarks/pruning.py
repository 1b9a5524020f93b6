"""The same search with the Hyperband pruner against without pruning, in one run.

Both searches use the same data, space, seed and trial count; only ``pruner`` differs. Compute
is counted in epochs trained (the pruner's resource) and in trial wall seconds. The figure of
merit: the compute the pruned search spent until its best score first reached the unpruned
search's best, as a fraction of the unpruned search's total compute. A pruned search that never
reaches it is reported as such, with its own best.

    python benchmarks/pruning.py [--trials 16] [--epochs 9] [--per-class 40] [--image-size 64]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import optuna  # noqa: E402

from autotransfer import demo  # noqa: E402
from autotransfer.space.schema import parse_space
from autotransfer.study.study import search

SPACE = {
    "backbones": ["packaged/mobilenetv2_100", "packaged/tf_efficientnet_lite0"],
    "params": {
        "freeze_fraction": {"type": "float", "low": 0.5, "high": 1.0},
        "lr": {"type": "float", "low": 1.0e-5, "high": 3.0e-2, "log": True},
        "head_lr_multiplier": {"type": "float", "low": 1.0, "high": 30.0, "log": True},
        "layer_decay": {"type": "float", "low": 0.6, "high": 1.0},
        "batch_size": 32,
        "augment": "none",
    },
}


def run(data: Path, pruner: str, args, folder: Path) -> list[dict]:
    space = parse_space({**SPACE, "epochs": args.epochs, "pruner": pruner,
                         "params": {**SPACE["params"], "image_size": args.image_size}})
    start = time.perf_counter()
    result = search(data, space, trials=args.trials, seed=args.seed,
                    storage=f"sqlite:///{folder / 'studies.db'}", study_name=pruner,
                    out=folder / pruner)
    print(f"{pruner}: {time.perf_counter() - start:.0f} s")
    trials = []
    for t in result.study.get_trials(deepcopy=False):
        if t.state not in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED):
            continue
        scores = [t.intermediate_values[e] for e in sorted(t.intermediate_values)]
        trials.append({
            "number": t.number, "state": t.state.name.lower(), "epochs": len(scores),
            "seconds": (t.datetime_complete - t.datetime_start).total_seconds(),
            "best": max(scores) if t.state.name == "PRUNED" else t.value,
            "value": t.value,
        })
    return trials


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=9)
    parser.add_argument("--per-class", type=int, default=40)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp())
    data = demo.export_fashion_mnist(folder / "fashion-mnist", per_class=args.per_class,
                                     test_per_class=0)
    print(f"Fashion-MNIST {args.per_class} per class at {args.image_size} px; "
          f"{args.trials} trials of up to {args.epochs} epochs; seed {args.seed}")
    plain = run(data, "none", args, folder)
    pruned = run(data, "hyperband", args, folder)

    target = max(t["value"] for t in plain)
    total_epochs = sum(t["epochs"] for t in plain)
    total_seconds = sum(t["seconds"] for t in plain)
    # a pruned trial's value is its last reported score, which also counts as found
    spent_epochs = spent_seconds = 0.0
    reached = None
    for t in sorted(pruned, key=lambda t: t["number"]):
        spent_epochs += t["epochs"]
        spent_seconds += t["seconds"]
        if t["state"] == "complete" and t["value"] >= target:
            reached = t
            break
    pruned_best = max((t["value"] for t in pruned if t["state"] == "complete"), default=None)
    n_pruned = sum(t["state"] == "pruned" for t in pruned)
    print(f"\nunpruned: best {target:.4f}, {total_epochs} epochs, {total_seconds:.0f} s")
    print(f"hyperband: best {pruned_best:.4f}, {sum(t['epochs'] for t in pruned)} epochs, "
          f"{sum(t['seconds'] for t in pruned):.0f} s, {n_pruned} of {len(pruned)} trials pruned")
    print(f"whole hyperband search: {sum(t['epochs'] for t in pruned) / total_epochs:.2f} of "
          f"the unpruned epochs, {sum(t['seconds'] for t in pruned) / total_seconds:.2f} of its "
          "seconds")
    if reached is None:
        print("hyperband never reached the unpruned best "
              f"({pruned_best:.4f} < {target:.4f}); compute ratio not defined")
    else:
        print(f"hyperband reached {reached['value']:.4f} >= {target:.4f} at trial "
              f"{reached['number']}, after {spent_epochs:.0f} epochs / {spent_seconds:.0f} s")
        print(f"compute to reach the unpruned best: {spent_epochs / total_epochs:.2f} of the "
              f"unpruned epochs, {spent_seconds / total_seconds:.2f} of its seconds")


if __name__ == "__main__":
    main()
