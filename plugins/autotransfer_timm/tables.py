"""timm's published result and benchmark tables, for ranking candidates before any download.

The tables are timm's ``results/`` folder (Ross Wightman, pytorch-image-models, Apache-2.0):
``results-imagenet.csv`` (ImageNet-1k top-1 %, parameters in millions, evaluation size),
the shifted test sets ``results-imagenet-r.csv``, ``results-sketch.csv``,
``results-imagenet-a.csv`` (top-1 %), the CPU benchmark
``benchmark-infer-fp32-nchw-pt240-cpu-i7_12700h-dynamo.csv`` (images/s at batch 1) and the GPU
benchmark ``benchmark-infer-amp-nchw-pt240-cu124-rtx4090.csv`` (images/s at batch 1024, AMP).

A dated snapshot ships as ``timm_tables.json`` (package data, built by :func:`build` from the
files of timm commit ``SNAPSHOT_COMMIT``); :func:`online_tables` reads the current files from
``TABLES_URL`` when asked and the network answers, else the caller keeps the snapshot.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from functools import cache
from pathlib import Path

#: Where the current tables are read from (raw files of timm's main branch).
TABLES_URL = "https://raw.githubusercontent.com/huggingface/pytorch-image-models/main/results/"
SNAPSHOT = Path(__file__).with_name("timm_tables.json")
IMAGENET = "results-imagenet.csv"
SHIFTED = {"imagenet-r": "results-imagenet-r.csv", "sketch": "results-sketch.csv",
           "imagenet-a": "results-imagenet-a.csv"}
CPU = "benchmark-infer-fp32-nchw-pt240-cpu-i7_12700h-dynamo.csv"
GPU = "benchmark-infer-amp-nchw-pt240-cu124-rtx4090.csv"
PRETRAIN = "model_metadata-in1k.csv"


def _rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def _num(text: str) -> float:
    """A table's number; thousands are written ``1,014.45``."""
    return float(text.replace(",", ""))


def _speed(text: str) -> dict[str, list]:
    """``{architecture: [images/s, image size, batch size]}`` of a benchmark table."""
    return {r["model"]: [_num(r["infer_samples_per_sec"]), int(r["infer_img_size"]),
                         int(r["infer_batch_size"])] for r in _rows(text)}


def _gmacs(text: str) -> dict[str, list]:
    """``{architecture: [GMACs of one image, image size]}`` of a benchmark table's rows (the
    row that :func:`_speed` keeps: the last of an architecture)."""
    return {r["model"]: [_num(r["infer_gmacs"]), int(r["infer_img_size"])] for r in _rows(text)
            if r.get("infer_gmacs")}


def build(read: Callable[[str], str], *, source: str, licenses: dict[str, str] | None = None
          ) -> dict:
    """The compact tables from the CSV files that ``read(file name)`` returns.

    Returns:
        ``{"source", "files", "models": {model.tag: [image size, top-1 %, params (M),
        licence]}, "shifted": {test set: {model.tag: top-1 %}}, "cpu"/"gpu": {architecture:
        [images/s, image size, batch]}, "gmacs": {architecture: [GMACs, image size]},
        "pretrain": {architecture: tag}}`` (GMACs from the CPU table's row, else the GPU's).
    """
    licenses = licenses or {}
    models = {r["model"]: [int(r["img_size"]), _num(r["top1"]), _num(r["param_count"]),
                           licenses.get(r["model"])] for r in _rows(read(IMAGENET))}
    shifted = {name: {r["model"]: _num(r["top1"]) for r in _rows(read(file))}
               for name, file in SHIFTED.items()}
    return {
        "source": source, "files": {"imagenet": IMAGENET, **SHIFTED, "cpu": CPU, "gpu": GPU,
                                    "pretrain": PRETRAIN},
        "models": models, "shifted": shifted, "cpu": _speed(read(CPU)), "gpu": _speed(read(GPU)),
        "gmacs": {**_gmacs(read(GPU)), **_gmacs(read(CPU))},
        "pretrain": {r["model"]: r["pretrain"] for r in _rows(read(PRETRAIN))},
    }


@cache
def snapshot() -> dict:
    """The shipped tables (see the module docstring for their date and source)."""
    return json.loads(SNAPSHOT.read_text())


def online_tables(timeout: float = 10.0) -> dict | None:
    """The current tables from ``TABLES_URL``, or None when a file cannot be read (offline,
    ``HF_HUB_OFFLINE=1``, timeout); licences are kept from the snapshot."""
    import os
    import urllib.request

    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0"):
        return None

    def read(name: str) -> str:
        with urllib.request.urlopen(TABLES_URL + name, timeout=timeout) as response:
            return response.read().decode()

    known = {m: row[3] for m, row in snapshot()["models"].items() if row[3]}
    try:
        return build(read, source=TABLES_URL, licenses=known)
    except (OSError, ValueError, KeyError):
        return None


def speed_rows(tables: dict, architecture: str) -> tuple[dict[str, float], dict[str, str]]:
    """``({device: images/s}, {device: its source row})`` of an architecture's benchmark rows
    (``cpu``: batch 1, fp32; ``gpu``: AMP at the table's batch size)."""
    throughput: dict[str, float] = {}
    rows: dict[str, str] = {}
    for device in ("cpu", "gpu"):
        row = tables[device].get(architecture)
        if row:
            speed, size, batch = row
            throughput[device] = speed
            rows[device] = (f"{tables['files'][device]}: {architecture}, {size}px, "
                            f"batch {batch}")
    return throughput, rows


def gmacs_row(tables: dict, architecture: str) -> tuple[float | None, int | None]:
    """``(GMACs of one image, at this image size)`` of an architecture's benchmark row, or
    ``(None, None)`` (a snapshot built before GMACs were kept, or no row)."""
    row = tables.get("gmacs", {}).get(architecture)
    return (float(row[0]), int(row[1])) if row else (None, None)
