"""Save a fine-tuned model in its zoo's native format, and load it back for prediction.

A model directory holds what the zoo's own library loads, plus ``autotransfer.json`` (labels,
backbone, hyperparameters, preprocessing, scores) for ``autotransfer predict``. The formats come
from the zoos (hook ``register_model_formats``, :mod:`autotransfer.contract.formats`): the timm
zoo saves ``model.safetensors`` and ``config.json`` in the layout of a timm hub repository; the
Hugging Face zoos save the encoder with ``save_pretrained``, its tokenizer or feature extractor,
and the head as ``head.safetensors``. Everything is loaded with safetensors and JSON: nothing is
unpickled.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from autotransfer.contract.collect import format_for_export, format_for_load, get_formats
from autotransfer.data.files import did_you_mean
from autotransfer.errors import AutotransferError, BackboneError, OptionError, first_line

if TYPE_CHECKING:
    import torch

    from autotransfer.finetune.trainer import TransferModel

FORMAT = "autotransfer-model"
FORMAT_VERSION = 1
META_FILE = "autotransfer.json"
#: Exports written beside the native format (``train --export``).
EXTRA_EXPORTS = ("onnx",)


class ModelDirError(AutotransferError):
    """A model directory is missing, incomplete or not written by ``autotransfer train``."""


def export_model(
    model: TransferModel,
    preprocess: Any,
    out: str | Path,
    *,
    classes: list[str],
    modality: str,
    backbone: str | dict[str, Any],
    params: dict[str, Any],
    metrics: dict[str, Any],
    extra: tuple[str, ...] = (),
    data: Any = None,
    quantize: str | None = None,
) -> Path:
    """Write ``model`` (body + linear head) to ``out`` in its zoo's native format.

    Returns the directory. The format checks the exported network against ``model`` on a
    sample batch, so an export that would predict differently is an error, not a surprise later.

    ``extra=("onnx",)`` adds ``out/onnx/`` (:mod:`autotransfer.model.onnx_export`: the graph,
    its manifest, checked against PyTorch on ``data``'s validation split, int8 too with
    ``quantize="int8"``), recorded in ``autotransfer.json`` under ``exports``. An extra export
    that fails is a warning and an ``error`` there; the native export still completes.

    Raises:
        BackboneError: no loaded zoo's format saves this model, or the export does not
            reproduce it.
        OptionError: an unknown name in ``extra``.
    """
    unknown = [name for name in extra if name not in EXTRA_EXPORTS]
    if unknown:
        raise OptionError("export", f" must be one of {', '.join(EXTRA_EXPORTS)}, got "
                                    f"{unknown[0]!r}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    from autotransfer.finetune.methods import merge_method

    model = merge_method(model.cpu().float().eval(), params)  # adapters folded into weights
    meta: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "modality": modality,
        "classes": list(classes),
        "backbone": backbone,
        "params": params,
        "metrics": metrics,
    }
    fmt = format_for_export(model.body, modality)
    if fmt is None:
        raise BackboneError(
            f"{backbone}: cannot export natively: no loaded zoo offers a model format for its "
            "model (hook register_model_formats)"
        )
    meta["library"] = fmt.library
    meta.update(fmt.export(model, preprocess, out, list(classes)))
    if "onnx" in extra:
        from autotransfer.model.onnx_export import export_onnx

        batch_size = int(params.get("batch_size") or 64)
        meta["exports"] = {"onnx": export_onnx(
            model, preprocess, out, classes=list(classes), modality=modality, data=data,
            quantize=quantize, batch_size=batch_size)}
    (out / META_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return out


@dataclass
class LoadedModel:
    """A model directory loaded for prediction: ``model(batch) -> logits``."""

    directory: Path
    meta: dict[str, Any]
    model: torch.nn.Module
    preprocess: Any

    @property
    def classes(self) -> list[str]:
        return self.meta["classes"]

    @property
    def modality(self) -> str:
        return self.meta["modality"]


def read_meta(directory: str | Path) -> dict[str, Any]:
    """``autotransfer.json`` of a model directory; a one-line error when it is not one."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ModelDirError(f"{directory}: no such model directory; expected the --out folder "
                            "of autotransfer train (Python: autotransfer.train(..., out=))"
                            f"{did_you_mean(directory)}")
    path = directory / META_FILE
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelDirError(f"{directory}: no {META_FILE}; expected a folder written by "
                            "autotransfer train") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelDirError(f"{path}: unreadable ({first_line(exc)})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ModelDirError(f"{path}: not an autotransfer model description")
    if meta.get("format_version", 0) > FORMAT_VERSION:
        raise ModelDirError(f"{path}: format version {meta['format_version']} is newer than "
                            f"this autotransfer reads ({FORMAT_VERSION}); upgrade autotransfer")
    return meta


def load_model(directory: str | Path, *, trust_remote_code: bool = False) -> LoadedModel:
    """Load a model directory written by :func:`export_model` (weights via safetensors).

    Raises:
        ModelDirError: not a model directory, a newer format version, no loaded zoo reads its
            library, or a file missing or damaged.
    """
    directory = Path(directory)
    meta = read_meta(directory)
    try:
        fmt = format_for_load(str(meta.get("library")), meta["modality"])
        if fmt is None:
            known = sorted({f.library for f in get_formats()}) or ["none"]
            raise ModelDirError(f"{directory / META_FILE}: no loaded zoo reads the library "
                                f"{meta.get('library')!r} for {meta['modality']}; loaded formats:"
                                f" {', '.join(known)}")
        model, preprocess = fmt.load(directory, meta, trust_remote_code)
    except AutotransferError:
        raise
    except Exception as exc:  # a file missing or damaged
        raise ModelDirError(f"{directory}: cannot load the model ({type(exc).__name__}: "
                            f"{first_line(exc)})") from None
    return LoadedModel(directory, meta, model.eval(), preprocess)
