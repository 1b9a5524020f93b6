"""The ONNX export beside the native one: ``MODEL/onnx/`` with ``model.onnx``, its manifest and,
with ``quantize="int8"``, ``model.int8.onnx``; every export checked against PyTorch.

``autotransfer train --export onnx`` (``export="onnx"`` in the API) writes the folder after the
native format (:mod:`autotransfer.model.export`), from the same merged model (adapters folded
in). ``manifest.json`` holds what a plain ONNX Runtime script needs to reproduce the predictions
(class names, the preprocessing step by step, input names and shapes; the tokenizer or feature
extractor is saved in the folder) and the checks: ONNX Runtime runs the validation split (the
test split without one) and its top-1 predictions are compared with PyTorch's; below
:data:`AGREEMENT` the export is flagged in one warning and in the manifest. Int8 is checked the
same way and its accuracy and latency stand beside the float model's.
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path
from typing import Any

from autotransfer.errors import AutotransferError, first_line
from autotransfer.finetune.onnx_graph import OnnxError

FOLDER = "onnx"
MANIFEST = "manifest.json"
FORMAT = "autotransfer-onnx"
FORMAT_VERSION = 1
#: Top-1 agreement with PyTorch below which an export is flagged.
AGREEMENT = 0.995
#: Training samples that calibrate a static int8 model.
CALIBRATION = 128
#: Seconds of timed passes per latency figure in the manifest.
LATENCY_BUDGET_S = 1.0
EXPORTS = ("onnx",)
QUANTIZE = ("int8",)


class ExportWarning(UserWarning):
    """An extra export failed or did not pass its check; the native export is complete."""


def export_onnx(model: Any, preprocess: Any, out: str | Path, *, classes: list[str],
                modality: str, data: Any = None, quantize: str | None = None,
                batch_size: int = 64, latency_budget_s: float | None = None) -> dict[str, Any]:
    """Write ``out/onnx/`` for ``model`` (merged, eval mode, CPU) and return its summary for
    ``autotransfer.json``'s ``exports.onnx``; a failure is a one-line ``{"error": ...}`` and an
    :class:`ExportWarning`, never an exception (the native export stands).

    Args:
        model: the ``TransferModel``: preprocessed batch -> logits ``(B, K)``.
        preprocess: its configured preprocess (``ImagePreprocess``, ``TextPreprocess``,
            ``AudioPreprocess``).
        out: the native model directory.
        data: a ``LabelledData`` whose validation split (else test split) is compared, and
            whose training split calibrates static int8; None: a two-row synthetic check only.
        quantize: ``"int8"`` or None.
        batch_size: the evaluation batch (the checks' batch and the second latency batch).
        latency_budget_s: seconds of timed passes per latency figure (default
            :data:`LATENCY_BUDGET_S`).
    """
    folder = Path(out) / FOLDER
    budget = LATENCY_BUDGET_S if latency_budget_s is None else latency_budget_s
    try:
        manifest = write_onnx(model, preprocess, folder, classes=classes, modality=modality,
                              data=data, quantize=quantize, batch_size=batch_size,
                              latency_budget_s=budget)
    except (AutotransferError, OSError) as exc:
        reason = f"ONNX export skipped, the native export is complete: {first_line(exc)}"
        warnings.warn(ExportWarning(reason), stacklevel=2)
        return {"error": reason}
    summary: dict[str, Any] = {"folder": FOLDER, "manifest": f"{FOLDER}/{MANIFEST}",
                               "check": manifest["check"]}
    if "int8" in manifest:
        summary["int8"] = {k: manifest["int8"][k] for k in ("file", "method", "check")
                           if k in manifest["int8"]}
    return summary


def write_onnx(model: Any, preprocess: Any, folder: Path, *, classes: list[str], modality: str,
               data: Any, quantize: str | None, batch_size: int,
               latency_budget_s: float) -> dict[str, Any]:
    """:func:`export_onnx`'s work; raises :class:`OnnxError` (one line) when it cannot."""
    import torch

    from autotransfer.finetune.onnx_graph import export_graph, feeds, needs, session
    from autotransfer.model.onnx_checks import compare, latencies, sample_batch

    needs()
    if quantize not in (None, *QUANTIZE):
        raise OnnxError(f"quantize must be one of {', '.join(QUANTIZE)}, got {quantize!r}")
    described = describe_preprocess(preprocess, modality)
    folder.mkdir(parents=True, exist_ok=True)
    model = model.cpu().float().eval()
    example = sample_batch(preprocess, data, rows=2)
    export_graph(model, example, folder / "model.onnx")
    _save_processor(preprocess, folder)
    threads = torch.get_num_threads()
    fp32 = session(folder / "model.onnx", threads=threads)
    manifest: dict[str, Any] = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "model": "model.onnx",
        "modality": modality, "classes": list(classes), "preprocess": described,
        "inputs": [{"name": i.name, "shape": i.shape, "dtype": _dtype(i.type)}
                   for i in fp32.get_inputs()],
        "outputs": [{"name": "logits", "shape": ["batch", len(classes)], "dtype": "float32",
                     "then": "softmax over the last axis gives the class probabilities"}],
        "versions": versions(modality),
    }
    cache: dict = {}  # PyTorch's probabilities, computed once for both checks
    check = compare(model, fp32, preprocess, data, batch_size=batch_size, cache=cache)
    manifest["check"] = _flag(check, "model.onnx")
    timed = {"pytorch_fp32": model, "onnxruntime_fp32": lambda x: fp32.run(None, feeds(x))}
    if quantize == "int8":
        manifest["int8"] = _int8(model, preprocess, data, folder, batch_size, threads, cache)
        int8 = session(folder / "model.int8.onnx", threads=threads)
        timed["onnxruntime_int8"] = lambda x: int8.run(None, feeds(x))
    manifest["latency_ms"] = latencies(timed, preprocess, data, batch_size=batch_size,
                                       budget_s=latency_budget_s)
    manifest["latency_ms"]["threads"] = threads
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest


def _int8(model, preprocess, data, folder: Path, batch_size: int, threads, cache):
    from autotransfer.finetune.onnx_graph import (
        calibration_batches,
        int8_method,
        quantize_int8,
        session,
    )
    from autotransfer.model.onnx_checks import compare

    method = int8_method(folder / "model.onnx")
    calibration = (calibration_batches(preprocess, data, CALIBRATION, batch_size=32)
                   if method == "static" else None)
    how = quantize_int8(folder / "model.onnx", folder / "model.int8.onnx", method=method,
                        calibration=calibration)
    if method == "static":
        how["calibration"] = f"{min(CALIBRATION, _rows(data, 'train'))} samples drawn from " \
                             "the training split (seeded)"
    int8 = session(folder / "model.int8.onnx", threads=threads)
    check = compare(model, int8, preprocess, data, batch_size=batch_size, cache=cache)
    return {"file": "model.int8.onnx", **how, "check": _flag(check, "model.int8.onnx")}


def _rows(data: Any, split: str) -> int:
    part = None if data is None else data.splits().get(split)
    return 0 if part is None else len(part)


def _flag(check: dict[str, Any], name: str) -> dict[str, Any]:
    """``check`` with ``passed`` and ``threshold``; below :data:`AGREEMENT`, a warning."""
    check = {**check, "threshold": AGREEMENT}
    check["passed"] = bool(check["agreement"] >= AGREEMENT)
    if not check["passed"]:
        warnings.warn(ExportWarning(
            f"{name}: top-1 agreement with PyTorch {check['agreement']:.2%} on the "
            f"{check['split']} split ({check['n']} samples) is below {AGREEMENT:.1%}; largest "
            f"probability difference {check['max_prob_diff']:.3g}: check it before shipping"),
            stacklevel=3)
    return check


def _dtype(onnx_type: str) -> str:
    return onnx_type.removeprefix("tensor(").removesuffix(")").replace("float", "float32") \
        .replace("float3264", "float64")


def _save_processor(preprocess: Any, folder: Path) -> None:
    """The tokenizer or feature extractor, beside the graph (``save_pretrained``)."""
    saved = getattr(preprocess, "tokenizer", None) or getattr(preprocess, "extractor", None)
    if saved is not None:
        saved.save_pretrained(folder)


def describe_preprocess(preprocess: Any, modality: str) -> dict[str, Any]:
    """What the manifest says a sample goes through before the graph (JSON-ready).

    Raises:
        OnnxError: a modality without a known preprocessing (a plugin's).
    """
    from autotransfer.data import AudioPreprocess, ImagePreprocess, TextPreprocess

    if isinstance(preprocess, ImagePreprocess):
        return {
            "kind": "image", "size": preprocess.size,
            "resize": max(preprocess.size, math.floor(preprocess.size / preprocess.crop_pct)),
            "interpolation": preprocess.interpolation, "crop": "center",
            "mean": list(preprocess.mean), "std": list(preprocess.std),
            "steps": ["decode the first frame, apply the EXIF orientation",
                      "RGB; an alpha channel is composited on white",
                      "resize the shorter side to `resize` (the longer side in proportion, "
                      "rounded down) with `interpolation`",
                      "crop the centre `size` x `size` (offsets rounded)",
                      "float32 / 255, minus `mean`, divided by `std`; layout (1, 3, H, W)"],
        }
    if isinstance(preprocess, TextPreprocess):
        return {
            "kind": "text", "max_length": preprocess.max_length, "tokenizer": ".",
            "steps": ["the tokenizer saved in this folder (tokenizer.json), truncation to "
                      "`max_length`, padding on the right; int64 input_ids and "
                      "attention_mask (the sequence axis is dynamic)"],
        }
    if isinstance(preprocess, AudioPreprocess):
        return {
            "kind": "audio", "sampling_rate": preprocess.sampling_rate,
            "clip_seconds": preprocess.clip_seconds, "n_samples": preprocess.n_samples,
            "input_name": preprocess.input_name, "feature_extractor": ".",
            "extractor_kwargs": {**dict(preprocess.extractor_kwargs),
                                 **({preprocess.length_kwarg: preprocess.n_samples}
                                    if preprocess.length_kwarg else {})},
            "steps": ["mono: the mean of the channels", "resample to `sampling_rate` (soxr)",
                      "keep the first `n_samples`, zero-pad a shorter clip",
                      "the feature extractor saved in this folder, with `extractor_kwargs`"],
        }
    raise OnnxError(f"no ONNX preprocessing description for {modality} models "
                    f"({type(preprocess).__name__})")


def versions(modality: str) -> dict[str, str]:
    """The library versions that wrote and checked the export."""
    import importlib.metadata

    from autotransfer.finetune.onnx_graph import OPSET

    found = {"opset": str(OPSET)}
    names = ["autotransfer", "torch", "onnx", "onnxruntime", "numpy"]
    names += ["pillow", "timm"] if modality == "image" else ["transformers", "tokenizers"]
    for name in names:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return found


def summary_lines(path: str | Path) -> list[str]:
    """What ``train --export onnx`` prints from a manifest: per model file its agreement with
    PyTorch, its accuracy on each split and its latency at each batch."""
    manifest = json.loads(Path(path).read_text(encoding="utf-8"))
    latency = manifest.get("latency_ms", {})
    batches = [k for k in latency if k.startswith("batch_")]
    lines = []
    rows = [("fp32", manifest["model"], manifest["check"], "onnxruntime_fp32")]
    if "int8" in manifest:
        int8 = manifest["int8"]
        rows.append((f"int8 {int8['method']}", int8["file"], int8["check"], "onnxruntime_int8"))
    torch_ms = ", ".join(f"{latency[b]['pytorch_fp32']:.2f} ms at {b.replace('_', ' ')}"
                         for b in batches)
    for label, file, check, key in rows:
        accuracy = ", ".join(f"{split} accuracy {a['onnxruntime']:.4f} (PyTorch "
                             f"{a['pytorch']:.4f})" for split, a in check["accuracy"].items())
        ms = ", ".join(f"{latency[b][key]:.2f} ms at {b.replace('_', ' ')}" for b in batches)
        flag = "" if check["passed"] else f", flagged: below {check['threshold']:.1%}"
        lines.append(f"onnx {label}: {file} agrees with PyTorch on {check['agreement']:.2%} of "
                     f"{check['n']} {check['split']} samples (largest probability difference "
                     f"{check['max_prob_diff']:.2g}{flag}); {accuracy}; {ms}")
    if torch_ms:
        lines.append(f"PyTorch eager: {torch_ms} ({latency.get('threads')} threads)")
    return lines
