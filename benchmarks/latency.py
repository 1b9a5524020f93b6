"""Can the recorded latency be trusted? A two-objective search, then its exported models timed
in a plain loop.

A search with ``objectives: [accuracy, latency_ms]`` over the packaged image backbones on real
Fashion-MNIST images records each trial's ``latency_ms`` (:mod:`autotransfer.finetune.cost`,
on the search's device). Then the models of the front are exported
(:func:`autotransfer.model.export.export_model` through ``autotransfer.train(..., trial=N)``;
the picked one is the search's own ``--keep-best`` model), each is loaded with timm alone
(``timm.create_model("local-dir:DIR", pretrained=True)``) and timed at batch 1 in a plain
``for`` loop on the same device, in a fresh process per round: median of ``--repeats`` passes
after 5 warm-up passes, the quietest of ``--rounds`` rounds (as the recorded figure is). The
figures: the front's size, recorded / plain per model (target within 10%), the recorded
``size_mb`` against the exported ``model.safetensors``, and the share of each completed trial's
time spent measuring (target under 5%).

    python benchmarks/latency.py [--trials 20] [--per-class 20] [--image-size 64] [--epochs 1]
        [--device cpu] [--repeats 50] [--rounds 5] [--backbones packaged/mobilenetv2_100,...]
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

PACKAGED = ["packaged/mobilenetv2_100", "packaged/tf_efficientnet_lite0",
            "packaged/tf_efficientnet_lite1", "packaged/tf_efficientnet_lite2"]


def plain_latency_ms(model_dir: Path, image_size: int, device: torch.device,
                     repeats: int) -> float:
    """Median milliseconds of a batch-1 forward pass of the exported model, timm alone."""
    import timm

    model = timm.create_model(f"local-dir:{model_dir}", pretrained=True).eval().to(device)
    x = torch.randn(1, 3, image_size, image_size, device=device)
    times = []
    with torch.inference_mode():
        for _ in range(5):
            model(x)
        for _ in range(repeats):
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start = time.perf_counter()
            model(x)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def _plain_in_fresh_process(model_dir: Path, args) -> float:
    """:func:`plain_latency_ms` in a new Python process (what a user's own script sees)."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, __file__, "--plain", str(model_dir),
                          "--image-size", str(args.image_size), "--device", args.device,
                          "--repeats", str(args.repeats)],
                         check=True, capture_output=True, text=True).stdout
    return float(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--per-class", type=int, default=20)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--backbones", default=",".join(PACKAGED))
    parser.add_argument("--max-models", type=int, default=3, help="front members timed")
    parser.add_argument("--rounds", type=int, default=5, help="plain-loop rounds per model")
    parser.add_argument("--plain", type=Path, help="only time this exported model (one round)")
    args = parser.parse_args()
    if args.plain is not None:
        print(plain_latency_ms(args.plain, args.image_size, torch.device(args.device),
                               args.repeats))
        return

    import autotransfer
    from autotransfer.contract.space import parse_space
    from autotransfer.demo import export_fashion_mnist

    work = Path(tempfile.mkdtemp(prefix="latency-bench-"))
    data = export_fashion_mnist(work / "fmnist", per_class=args.per_class, test_per_class=0,
                                seed=0)
    space = parse_space({
        "backbones": args.backbones.split(","), "epochs": args.epochs,
        "objectives": ["accuracy", "latency_ms"],
        "params": {"image_size": args.image_size, "batch_size": 32,
                   "freeze_fraction": {"type": "float", "low": 0.0, "high": 1.0},
                   "lr": {"type": "float", "low": 1.0e-4, "high": 1.0e-2, "log": True}},
    })
    started = time.perf_counter()
    result = autotransfer.search(data, space, trials=args.trials, device=args.device,
                                 storage=f"sqlite:///{work}/bench.db", out=work / "out",
                                 keep_best=True, history=False, transfer_effect=False)
    seconds = time.perf_counter() - started
    study, best = result.study, result.best
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    shares = [t.user_attrs["measure_seconds"] / t.duration.total_seconds() for t in complete]
    front = best["pareto_front"]
    print(f"search: {len(study.trials)} trials ({len(complete)} complete) in {seconds:.0f}s "
          f"on {args.device}, image_size {args.image_size}, {args.per_class} images per class")
    print(f"front: {len(front)} members: " + ", ".join(
        f"#{m['trial']} {m['backbone'] if isinstance(m['backbone'], str) else m['backbone']['id']}"
        f" {m['val_score']:.3f} / {m['latency_ms']:.2f} ms" for m in front))
    total = (sum(t.user_attrs["measure_seconds"] for t in complete)
             / sum(t.duration.total_seconds() for t in complete))
    print(f"measuring share of a trial: median {statistics.median(shares):.2%}, "
          f"max {max(shares):.2%} (the first trial of a backbone); of all trials' time "
          f"{total:.2%} (target < 5%)")
    picked = best["source"]["trial"]
    for member in front[:args.max_models]:
        number = member["trial"]
        if number == picked:
            model_dir = work / "out" / "best-model"
        else:
            model_dir = work / f"model-{number}"
            autotransfer.train(result.best_path, out=model_dir, trial=number, epochs=1,
                               refit_on="train", device=args.device)
        rounds = [_plain_in_fresh_process(model_dir, args) for _ in range(args.rounds)]
        plain = min(rounds)  # the quietest round, the estimator the recorded figure uses
        recorded = study.trials[number].user_attrs["latency_ms"]
        size = (model_dir / "model.safetensors").stat().st_size / 1e6
        print(f"trial {number}: size_mb recorded {study.trials[number].user_attrs['size_mb']:.3f}"
              f", model.safetensors {size:.3f} MB")
        print(f"trial {number}: recorded {recorded:.3f} ms, plain loop on the exported model "
              f"{plain:.3f} ms (quietest of {args.rounds} rounds of {args.repeats}; rounds "
              f"{min(rounds):.3f}-{max(rounds):.3f}), recorded/plain {recorded / plain:.3f} "
              f"(target 0.90-1.10; against the median round "
              f"{recorded / statistics.median(rounds):.3f})")
    print(f"(load average {os.getloadavg()[0]:.2f}; work folder {work})")


if __name__ == "__main__":
    main()
