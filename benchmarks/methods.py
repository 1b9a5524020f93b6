"""Tuning methods side by side (#24): val score, trainable parameters, peak memory, s/epoch;
and a search with ``method`` searched against the same search without it, at equal wall time.

On real pretrained weights: packaged MobileNetV2 on demo Fashion-MNIST images (64 px) and
packaged all-MiniLM-L6-v2 on Rotten Tomatoes snippets. Every method runs at freeze_fraction 0
with the default hyperparameters (lr per modality below), over seeds (mean and spread). Each
run is a fresh process.

Peak memory is measured two ways:

- ``train peak MiB``: the peak of CPU tensor memory during one training epoch, above what was
  live when the epoch began (the weights and the encoded data). It is the running sum of the
  allocations and frees that ``torch.profiler`` records (``profile_memory=True``). This is
  the training's own cost: gradients, optimizer state, saved activations and temporaries. It
  is a separate epoch, so the profiler does not slow the timed runs.
- ``RSS MiB``: the process's peak resident set (``ru_maxrss``). It includes the interpreter,
  the libraries and loading the weights. It is no measure of a method's cost: importing
  peft alone adds about 80 MiB (722 -> 801 MiB after torch and timm). That is why LoRA's RSS
  was above a full fine-tune's (1143 vs 1079 MiB) while its training peak is below.

Methods, one modality and seed range per call (results appended to a JSON file; ``--table``
prints the table from it)::

    OMP_NUM_THREADS=1 python benchmarks/methods.py --modalities image --seeds 0 1 2 \\
        --json methods.json
    python benchmarks/methods.py --json methods.json --table

The equal-wall-time comparison runs the quick search (``search_spaces/<m>-quick.yaml``) twice
under the same ``time_budget``, on the same data and seed. One arm adds ``method`` (every
builtin method, and ``lora_rank``) to the space; the other fixes ``method: finetune``, which
is today's search. One arm and seed per call::

    OMP_NUM_THREADS=1 python benchmarks/methods.py --compare-search --data image \\
        --arm searched --seeds 0 --time-budget 180 --json compare.json
    python benchmarks/methods.py --compare-search --json compare.json --table
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import resource
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("AUTOTRANSFER_HISTORY", "0")

import torch  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
METHODS = ("finetune", "bitfit", "layernorm", "lora", "ia3")
SETUPS = {
    "image": ("packaged/mobilenetv2_100", {"image_size": 64, "lr": 1e-3, "augment": "none"}),
    "text": ("packaged/all-MiniLM-L6-v2", {"max_length": 32, "lr": 1e-4}),
}


def _data(modality: str, work: Path, per_class: int):
    from autotransfer.data import load_data
    from autotransfer.demo import export_fashion_mnist, export_rotten_tomatoes

    if modality == "image":
        folder = export_fashion_mnist(work / "fmnist", per_class=per_class, test_per_class=0,
                                      seed=0)
    else:
        folder = export_rotten_tomatoes(work / "rt", per_class=per_class * 4,
                                        val_per_class=per_class * 2, seed=0)
    return load_data(folder, seed=0)


def run_apart(*args) -> dict:
    """:func:`run` in a fresh process (its own peak resident set)."""
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(run, args)


def train_peak_bytes(trainer) -> tuple[int, int]:
    """``(peak, end)``: bytes of CPU tensor memory above the start of one training epoch of
    ``trainer`` (no validation), at its peak and at its end, from ``torch.profiler``."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        trainer.fit(1)
    events = sorted((e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events()
                    if e.name() == "[memory]")
    live = peak = 0
    for _, nbytes in events:
        live += nbytes
        peak = max(peak, live)
    return peak, live


def run(modality: str, per_class: int, method: str, seed: int, epochs: int) -> dict:
    from autotransfer.contract.collect import get_backbone
    from autotransfer.finetune.trainer import Trainer
    from autotransfer.space.hyperparameters import defaults

    data = _data(modality, Path(tempfile.mkdtemp(prefix="methods-bench-")), per_class)
    backbone_id, extra = SETUPS[modality]
    params = {**defaults(), **extra, "method": method}
    if method != "finetune":  # the adapters and selected parameters start from scratch or
        params["lr"] = params["lr"] * 10  # from pretraining: they take a 10x larger lr
    cpu = torch.device("cpu")
    probe = Trainer(get_backbone(backbone_id).load(), data, params, device=cpu, seed=seed,
                    cache=False, evaluate_val=False)
    peak, end = train_peak_bytes(probe)
    del probe
    trainer = Trainer(get_backbone(backbone_id).load(), data, params, device=cpu, seed=seed,
                      cache=False)
    result = trainer.fit(epochs)
    full = sum(p.numel() for n, p in trainer.model.named_parameters()
               if ".lora_" not in n and ".ia3_" not in n)
    return {"modality": modality, "method": method, "seed": seed, "epochs": epochs,
            "per_class": per_class, "score": result.score, "trainable": result.n_trainable,
            "base_params": full, "train_peak_mib": peak / 2**20, "train_end_mib": end / 2**20,
            "rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10,
            "s_epoch": statistics.mean(e.seconds for e in result.history),
            "load": os.getloadavg()[0]}


def _append(path: Path, record: dict) -> None:
    records = json.loads(path.read_text()) if path.exists() else []
    path.write_text(json.dumps([*records, record], indent=1))


def _spread(values: list[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.3f} ± {sd:.3f}"


def methods_table(records: list[dict]) -> None:
    print("| data | method | val accuracy (mean ± sd) | seeds | trainable params | % of finetune "
          "| train peak MiB | RSS MiB | s/epoch | load |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for modality in SETUPS:
        full = next((r["trainable"] for r in records
                     if r["modality"] == modality and r["method"] == "finetune"), None)
        for method in METHODS:
            runs = [r for r in records if r["modality"] == modality and r["method"] == method]
            if not runs:
                continue
            trainable = runs[0]["trainable"]
            share = f"{100 * trainable / full:.2f}%" if full else "-"
            print(f"| {modality} | {method} | {_spread([r['score'] for r in runs])} | "
                  f"{len(runs)} | {trainable:,} | {share} | "
                  f"{statistics.mean(r['train_peak_mib'] for r in runs):.0f} | "
                  f"{statistics.mean(r['rss_mib'] for r in runs):.0f} | "
                  f"{statistics.mean(r['s_epoch'] for r in runs):.2f} | "
                  f"{min(r['load'] for r in runs):.1f}-{max(r['load'] for r in runs):.1f} |")


# --- the equal-wall-time comparison ---------------------------------------------------------

DEMO_DATA = {"image": Path("/work/main/data/fashion-mnist")}


def compare_space(modality: str, arm: str) -> dict:
    """The quick space of ``modality``, with ``method`` searched (``arm`` "searched") or
    fixed to ``finetune`` (``arm`` "finetune")."""
    import yaml

    space = yaml.safe_load((REPO / "search_spaces" / f"{modality}-quick.yaml").read_text())
    if arm == "searched":
        space["params"]["method"] = {"type": "categorical", "choices": list(METHODS)}
        space["params"]["lora_rank"] = {"type": "int", "low": 4, "high": 16, "log": True}
    else:
        space["params"]["method"] = "finetune"
    return space


def compare_data(modality: str, work: Path) -> Path:
    """The demo's data: ``make demo``'s image export when it is here, else a fresh one."""
    from autotransfer import demo

    if modality in DEMO_DATA and DEMO_DATA[modality].is_dir():
        return DEMO_DATA[modality]
    if modality == "image":
        return demo.export_fashion_mnist(work / "fmnist", per_class=100, test_per_class=30)
    return demo.export_rotten_tomatoes(work / "rt", per_class=300, val_per_class=100)


def compare_run(modality: str, arm: str, seed: int, time_budget: float) -> dict:
    from autotransfer.space.schema import parse_space
    from autotransfer.study.results.report import backbone_id
    from autotransfer.study.study import search

    work = Path(tempfile.mkdtemp(prefix="methods-compare-"))
    start = time.perf_counter()
    result = search(compare_data(modality, work), parse_space(compare_space(modality, arm)),
                    time_budget=time_budget, storage=f"sqlite:///{work / 's.db'}",
                    out=work / "out", device="cpu", seed=seed)
    wall = time.perf_counter() - start
    rows = result.leaderboard
    best = result.best or {}
    return {"modality": modality, "arm": arm, "seed": seed, "time_budget": time_budget,
            "wall_s": wall, "best_val": best.get("val_score"), "best_test": best.get("test_score"),
            "best_method": (best.get("params") or {}).get("method"),
            "best_backbone": backbone_id(best) if best else None,
            "trials": len(rows), "complete": sum(r["state"] == "complete" for r in rows),
            "methods_tried": sorted({r["method"] for r in rows}), "load": os.getloadavg()[0]}


def _f(value) -> str:
    return "-" if value is None else f"{value:.4f}"


def compare_table(records: list[dict]) -> None:
    print("| data | arm | seed | budget s | wall s | trials (complete) | best val | best test "
          "| best's method | load |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in records:
        print(f"| {r['modality']} | {r['arm']} | {r['seed']} | {r['time_budget']:.0f} | "
              f"{r['wall_s']:.0f} | {r['trials']} ({r['complete']}) | {_f(r['best_val'])} | "
              f"{_f(r['best_test'])} | {r['best_method']} | {r['load']:.1f} |")
    print()
    print("| data | arm | seeds | best val (mean ± sd) | best test (mean ± sd) |")
    print("|---|---|---|---|---|")
    for modality in SETUPS:
        for arm in ("searched", "finetune"):
            runs = [r for r in records if r["modality"] == modality and r["arm"] == arm]
            if runs:
                print(f"| {modality} | {arm} | {len(runs)} | "
                      f"{_spread([r['best_val'] or 0.0 for r in runs])} | "
                      f"{_spread([r['best_test'] or 0.0 for r in runs])} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-class", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--modalities", default="image,text")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--json", type=Path, default=None,
                        help="append each run's figures to this JSON list")
    parser.add_argument("--table", action="store_true",
                        help="print the table of the runs in --json, run nothing")
    parser.add_argument("--compare-search", action="store_true",
                        help="the equal-wall-time search comparison instead")
    parser.add_argument("--data", default="image", choices=sorted(SETUPS))
    parser.add_argument("--arm", default="searched", choices=["searched", "finetune"])
    parser.add_argument("--time-budget", type=float, default=240.0)
    args = parser.parse_args()
    if args.table:
        records = json.loads(args.json.read_text())
        (compare_table if args.compare_search else methods_table)(records)
        return
    if args.compare_search:
        for seed in args.seeds:
            record = compare_run(args.data, args.arm, seed, args.time_budget)
            print(json.dumps(record), flush=True)
            if args.json:
                _append(args.json, record)
        return
    records = []
    for modality in args.modalities.split(","):
        for method in args.methods.split(","):
            for seed in args.seeds:
                record = run_apart(modality, args.per_class, method, seed, args.epochs)
                print(json.dumps(record), flush=True)
                records.append(record)
                if args.json:
                    _append(args.json, record)
    methods_table(records)


if __name__ == "__main__":
    main()
