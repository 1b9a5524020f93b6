"""Can the recorded latency be trusted? A two-objective search, then its exported models timed
in a plain loop, interleaved with the recorded-style timing so that a shared machine's load
hits both.

A search with ``objectives: [accuracy, latency_ms]`` over the packaged image backbones on real
Fashion-MNIST images records each trial's ``latency_ms`` (:mod:`autotransfer.finetune.cost`,
on the search's device). Then the models of the front are exported
(:func:`autotransfer.model.export.export_model` through ``autotransfer.train(..., trial=N)``;
the picked one is the search's own ``--keep-best`` model). Each exported model is loaded with
timm alone (``timm.create_model("local-dir:DIR", pretrained=True)``) in a fresh process, with
the search's torch thread count, and timed in ``--rounds`` interleaved rounds: a *plain loop*
(``--repeats`` batch-1 passes after 5 warm-up passes, their median: what a user's script
measures) and the *recorded-style* timing (:func:`autotransfer.finetune.cost.latency_seconds`
with ``--budget`` seconds), alternating which comes first.

Figures, per front member: the recorded ``latency_ms`` against the plain loop's quietest round
(target within 10%: 0.90-1.10) and its median round; the recorded-style timing against the
plain loop of the same round (the median of the per-round ratios: the load hit both); the
recorded ``size_mb`` against the exported ``model.safetensors``; and, for the search, the
front's size (members, distinct points, distinct backbones) and the share of each completed
trial's time spent measuring (target under 5%).

    python benchmarks/latency.py [--trials 20] [--per-class 20] [--image-size 64] [--epochs 1]
        [--device cpu] [--seed 0] [--repeats 30] [--rounds 10] [--budget 0.3]
        [--backbones packaged/mobilenetv2_100,...] [--json results.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

PACKAGED = ["packaged/mobilenetv2_100", "packaged/tf_efficientnet_lite0",
            "packaged/tf_efficientnet_lite1", "packaged/tf_efficientnet_lite2"]


def plain_loop_ms(model, x, device: torch.device, repeats: int) -> float:
    """Median milliseconds of ``repeats`` batch-1 forward passes after 5 warm-up passes."""
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


def interleaved(model_dir: Path, args) -> dict[str, list[float]]:
    """In this (fresh) process: the exported model loaded with timm alone, timed in
    ``args.rounds`` rounds of plain loop and recorded-style timing, alternating the order."""
    import timm

    from autotransfer.finetune.cost import latency_seconds

    device = torch.device(args.device)
    torch.set_num_threads(args.threads)
    model = timm.create_model(f"local-dir:{model_dir}", pretrained=True).eval().to(device)
    x = torch.randn(1, 3, args.image_size, args.image_size, device=device)
    plain, recorded = [], []
    for i in range(args.rounds):
        for arm in ((0, 1) if i % 2 == 0 else (1, 0)):
            if arm == 0:
                plain.append(plain_loop_ms(model, x, device, args.repeats))
            else:
                recorded.append(1000 * latency_seconds(model, x, device, budget_s=args.budget))
    return {"plain_ms": plain, "recorded_style_ms": recorded,
            "threads": torch.get_num_threads()}


def _interleaved_in_fresh_process(model_dir: Path, args, threads: int,
                                  image_size: int) -> dict[str, list[float]]:
    out = subprocess.run([sys.executable, __file__, "--interleave", str(model_dir),
                          "--image-size", str(image_size), "--device", args.device,
                          "--repeats", str(args.repeats), "--rounds", str(args.rounds),
                          "--budget", str(args.budget), "--threads", str(threads)],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def _uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return f"load average {os.getloadavg()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--per-class", type=int, default=20)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--image-sizes", help="search the input size among these (e.g. "
                        "64,96,128) instead of fixing --image-size: a user's main latency knob")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0, help="the search's seed")
    parser.add_argument("--repeats", type=int, default=30, help="plain-loop passes per round")
    parser.add_argument("--rounds", type=int, default=10, help="interleaved rounds per model")
    parser.add_argument("--budget", type=float, default=0.3,
                        help="seconds of one recorded-style timing")
    parser.add_argument("--backbones", default=",".join(PACKAGED))
    parser.add_argument("--max-models", type=int, default=3, help="front members timed")
    parser.add_argument("--json", type=Path, help="append this run's figures to a JSON list")
    parser.add_argument("--interleave", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.interleave is not None:
        print(json.dumps(interleaved(args.interleave, args)))
        return

    import autotransfer
    from autotransfer.demo import export_fashion_mnist
    from autotransfer.finetune.records import TrialRecord, trial_records
    from autotransfer.space.schema import parse_space

    load_before = _uptime()
    work = Path(tempfile.mkdtemp(prefix="latency-bench-"))
    data = export_fashion_mnist(work / "fmnist", per_class=args.per_class, test_per_class=0,
                                seed=0)
    space = parse_space({
        "backbones": args.backbones.split(","), "epochs": args.epochs,
        "objectives": ["accuracy", "latency_ms"],
        "params": {"image_size": (
                       {"type": "categorical",
                        "choices": [int(v) for v in args.image_sizes.split(",")]}
                       if args.image_sizes else args.image_size),
                   "batch_size": 32,
                   "freeze_fraction": {"type": "float", "low": 0.0, "high": 1.0},
                   "lr": {"type": "float", "low": 1.0e-4, "high": 1.0e-2, "log": True}},
    })
    started = time.perf_counter()
    result = autotransfer.search(data, space, trials=args.trials, device=args.device,
                                 seed=args.seed, storage=f"sqlite:///{work}/bench.db",
                                 out=work / "out", keep_best=True, history=False,
                                 transfer_effect=False)
    seconds = time.perf_counter() - started
    study, best = result.study, result.best
    complete = trial_records(study, ("complete",))
    shares = [t.measure_seconds / t.duration_seconds for t in complete]
    front = best["pareto_front"]

    def name(member) -> str:
        backbone = member["backbone"]
        return backbone if isinstance(backbone, str) else backbone["id"]

    def pixels_of(number: int) -> int:  # a trial's input size: sampled, else the fixed one
        return study.trials[number].params.get("image_size", args.image_size)

    latencies = {}
    for t in complete:
        key = t.backbone + (f"@{pixels_of(t.number)}" if args.image_sizes else "")
        latencies[key] = t.costs["latency_ms"]
    run = {"seed": args.seed, "image_sizes": args.image_sizes or str(args.image_size),
           "per_class": args.per_class, "epochs": args.epochs, "uptime_before": load_before,
           "search_seconds": round(seconds),
           "trials": len(study.trials), "complete": len(complete),
           "backbone_latency_ms": latencies,
           "front": [{"trial": m["trial"], "backbone": name(m), "val_score": m["val_score"],
                      "latency_ms": m["latency_ms"],
                      "image_size": pixels_of(m["trial"])}
                     for m in front],
           "front_points": len({(m["val_score"], m["latency_ms"]) for m in front}),
           "front_backbones": len({name(m) for m in front}),
           "measure_share_median": statistics.median(shares),
           "measure_share_max": max(shares),
           "measure_share_total": (sum(t.measure_seconds for t in complete)
                                   / sum(t.duration_seconds for t in complete)),
           "models": []}
    print(f"search (seed {args.seed}): {len(study.trials)} trials ({len(complete)} complete) in "
          f"{seconds:.0f}s on {args.device}, image_size {run['image_sizes']}, {args.per_class} "
          f"images per class; recorded latency per backbone: "
          + ", ".join(f"{k} {v:.3f} ms" for k, v in sorted(latencies.items())))
    print(f"front: {len(front)} members, {run['front_points']} distinct points, "
          f"{run['front_backbones']} backbones: " + ", ".join(
              f"#{m['trial']} {name(m)}@{m['image_size']} {m['val_score']:.3f} / "
              f"{m['latency_ms']:.2f} ms" for m in run["front"]))
    print(f"measuring share of a trial: median {run['measure_share_median']:.2%}, max "
          f"{run['measure_share_max']:.2%} (the first trial of a backbone); of all trials' time "
          f"{run['measure_share_total']:.2%} (target < 5%)")
    picked = best["source"]["trial"]
    seen: set[str] = set()
    for member in front:
        if len(run["models"]) >= args.max_models:
            break
        number = member["trial"]
        pixels = pixels_of(number)
        if (name(member), pixels) in seen:  # one timing per network: its trials share it
            continue
        seen.add((name(member), pixels))
        if number == picked:
            model_dir = work / "out" / "best-model"
        else:
            model_dir = work / f"model-{number}"
            autotransfer.train(result.best_path, out=model_dir, trial=number, epochs=1,
                               refit_on="train", device=args.device)
        record = TrialRecord.from_frozen(study.trials[number])
        threads = record.latency_threads or torch.get_num_threads()
        timing = _interleaved_in_fresh_process(model_dir, args, threads, pixels)
        plain, styled = timing["plain_ms"], timing["recorded_style_ms"]
        recorded = record.costs["latency_ms"]
        size = (model_dir / "model.safetensors").stat().st_size / 1e6
        pair = statistics.median(r / p for r, p in zip(styled, plain, strict=True))
        figures = {
            "trial": number, "backbone": name(member), "image_size": pixels,
            "threads": timing["threads"],
            "recorded_ms": recorded, "plain_quietest_ms": min(plain),
            "plain_median_round_ms": statistics.median(plain),
            "plain_rounds_ms": [round(p, 4) for p in plain],
            "recorded_style_rounds_ms": [round(r, 4) for r in styled],
            "recorded_over_plain_quietest": recorded / min(plain),
            "recorded_over_plain_median_round": recorded / statistics.median(plain),
            "interleaved_ratio_median": pair,
            "size_mb_recorded": record.costs["size_mb"], "safetensors_mb": size,
        }
        run["models"].append(figures)
        print(f"trial {number} ({name(member)} at {pixels} px, {timing['threads']} thread(s)): "
              f"size_mb recorded "
              f"{record.costs['size_mb']:.3f}, model.safetensors {size:.3f} MB")
        print(f"trial {number}: recorded {recorded:.3f} ms; plain loop on the exported model: "
              f"quietest round {min(plain):.3f} ms, median round {statistics.median(plain):.3f} "
              f"ms (rounds {min(plain):.3f}-{max(plain):.3f}); recorded/plain "
              f"{figures['recorded_over_plain_quietest']:.3f} (target 0.90-1.10; against the "
              f"median round {figures['recorded_over_plain_median_round']:.3f}); interleaved "
              f"recorded-style/plain, median of {args.rounds} rounds {pair:.3f} (recorded-style "
              f"rounds {min(styled):.3f}-{max(styled):.3f} ms)")
    run["uptime_after"] = _uptime()
    print(f"uptime before: {load_before}\nuptime after: {run['uptime_after']}\n"
          f"(work folder {work})")
    if args.json is not None:
        runs = json.loads(args.json.read_text()) if args.json.is_file() else []
        args.json.write_text(json.dumps([*runs, run], indent=1))


if __name__ == "__main__":
    main()
