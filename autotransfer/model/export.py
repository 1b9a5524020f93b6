"""Save a fine-tuned model in its zoo's native format, and load it back for prediction.

A model directory holds what the zoo's own library loads, plus ``autotransfer.json`` (labels,
backbone, hyperparameters, preprocessing, scores) for ``autotransfer predict``:

- timm (``timm/*``, ``packaged/<timm model>``): ``model.safetensors`` and ``config.json`` in the
  layout of a timm hub repository: ``timm.create_model("local-dir:DIR", pretrained=True)``
  builds the network with our head as its classifier, and ``label_names`` and the
  preprocessing (``input_size``, ``mean``, ``std``, ``crop_pct``, ``interpolation``) are in its
  ``pretrained_cfg``.
- transformers (``hf-text/*``, ``hf-audio/*``, packaged MiniLM and Whisper): the encoder saved
  with ``save_pretrained`` (``AutoModel`` loads it; Whisper: ``WhisperEncoder``), its tokenizer or
  feature extractor, ``id2label`` in its config, and the head as ``head.safetensors``
  (``weight``, ``bias``) applied to the pooled last hidden states.

Everything is loaded with safetensors and JSON: nothing is unpickled.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from autotransfer.errors import AutotransferError, BackboneError, first_line

if TYPE_CHECKING:
    import torch

    from autotransfer.train.trainer import TransferModel

FORMAT = "autotransfer-model"
FORMAT_VERSION = 1
META_FILE = "autotransfer.json"
#: pretrained_cfg keys that describe where the source weights came from, not the export
_SOURCE_KEYS = ("url", "hf_hub_id", "hf_hub_filename", "file", "source", "state_dict", "tag",
                "test_input_size", "test_crop_pct", "test_pool_size", "label_offset",
                "custom_load", "architecture")


class ModelDirError(AutotransferError):
    """A model directory is missing, incomplete or not written by ``autotransfer train``."""


def _is_timm(body: Any) -> bool:
    return hasattr(body, "pretrained_cfg") and hasattr(body, "get_classifier")


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
) -> Path:
    """Write ``model`` (body + linear head) to ``out`` in its zoo's native format.

    Returns the directory. The exported network is checked against ``model`` on a sample batch,
    so an export that would predict differently is an error, not a surprise later.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model = model.cpu().float().eval()
    meta: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "modality": modality,
        "classes": list(classes),
        "backbone": backbone,
        "params": params,
        "metrics": metrics,
    }
    if _is_timm(model.body):
        meta["library"] = "timm"
        meta["preprocess"] = _image_preprocess(preprocess)
        meta["architecture"] = _export_timm(model, meta["preprocess"], out, classes)
    elif hasattr(model.body, "encoder") and hasattr(model.body.encoder, "save_pretrained"):
        meta["library"] = "transformers"
        meta["preprocess"] = _hf_preprocess(preprocess, model.body)
        _export_transformers(model, preprocess, out, classes)
    else:
        raise BackboneError(
            f"{backbone}: cannot export natively: its model is neither a timm model nor a "
            "transformers encoder"
        )
    (out / META_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return out


def _image_preprocess(preprocess: Any) -> dict[str, Any]:
    fields = asdict(preprocess)
    fields.pop("augment", None)  # train-time only
    return {"kind": "image", **fields}


def _hf_preprocess(preprocess: Any, body: Any) -> dict[str, Any]:
    if hasattr(preprocess, "max_length"):
        return {"kind": "text", "max_length": preprocess.max_length,
                "pooling": getattr(body, "pooling", "mean")}
    return {"kind": "audio", "clip_seconds": preprocess.clip_seconds,
            "sampling_rate": preprocess.sampling_rate, "input_name": preprocess.input_name}


def _export_timm(model: TransferModel, preprocess: dict[str, Any], out: Path,
                 classes: list[str]) -> str:
    """``timm.create_model(arch, num_classes=K)`` with the body's weights and our head."""
    import safetensors.torch
    import timm
    import torch

    body = model.body
    linear = model.head[-1]
    cfg = dict(body.pretrained_cfg)
    arch = cfg.get("architecture") or body.default_cfg["architecture"]
    native = timm.create_model(arch, pretrained=False, num_classes=len(classes))
    classifier = native.get_classifier()
    name = next((n for n, m in native.named_modules() if m is classifier), None)
    if not isinstance(classifier, torch.nn.Linear) or name is None or tuple(
        classifier.weight.shape
    ) != tuple(linear.weight.shape):
        raise BackboneError(
            f"timm/{arch}: cannot export natively: its classifier is not a Linear of shape "
            f"{tuple(linear.weight.shape)}"
        )
    state = {k: v.detach().clone().contiguous() for k, v in body.state_dict().items()}
    state[f"{name}.weight"] = linear.weight.detach().clone()
    state[f"{name}.bias"] = linear.bias.detach().clone()
    try:
        native.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise BackboneError(f"timm/{arch}: cannot export natively ({first_line(exc)})") from None
    _check_same(native.eval(), model, torch.randn(2, 3, preprocess["size"], preprocess["size"]),
                f"timm/{arch}")
    safetensors.torch.save_file(native.state_dict(), out / "model.safetensors")

    size = int(preprocess["size"])
    pretrained_cfg = {k: v for k, v in cfg.items() if k not in _SOURCE_KEYS and v is not None}
    pretrained_cfg.update(
        input_size=[3, size, size],
        mean=list(preprocess["mean"]),
        std=list(preprocess["std"]),
        crop_pct=preprocess["crop_pct"],
        crop_mode="center",
        interpolation=preprocess["interpolation"],
        num_classes=len(classes),
        classifier=name,
        fixed_input_size=bool(preprocess["fixed_size"]),
    )
    if size != int(cfg.get("input_size", (3, size, size))[-1]):
        pretrained_cfg.pop("pool_size", None)
    config = {
        "architecture": arch,
        "num_classes": len(classes),
        "num_features": int(getattr(native, "num_features", model.head[-1].in_features)),
        "label_names": list(classes),
        "pretrained_cfg": pretrained_cfg,
    }
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    return arch


def _export_transformers(model: TransferModel, preprocess: Any, out: Path,
                         classes: list[str]) -> None:
    import safetensors.torch
    import transformers

    transformers.utils.logging.disable_progress_bar()
    encoder = model.body.encoder
    encoder.config.id2label = dict(enumerate(classes))
    encoder.config.label2id = {c: i for i, c in enumerate(classes)}
    encoder.save_pretrained(out, safe_serialization=True)
    processor = getattr(preprocess, "tokenizer", None) or getattr(preprocess, "extractor", None)
    if processor is not None:
        processor.save_pretrained(out)
    linear = model.head[-1]
    safetensors.torch.save_file(
        {"weight": linear.weight.detach().contiguous(), "bias": linear.bias.detach().contiguous()},
        out / "head.safetensors",
    )


def _check_same(native: torch.nn.Module, model: TransferModel, x: Any, label: str) -> None:
    import torch

    with torch.inference_mode():
        expected, got = model(x), native(x)
    if got.shape != expected.shape or not torch.allclose(got, expected, rtol=1e-4, atol=1e-4):
        diff = (got - expected).abs().max().item() if got.shape == expected.shape else "shape"
        raise BackboneError(
            f"{label}: the exported network does not reproduce the fine-tuned one "
            f"(max difference {diff}); it cannot be exported natively"
        )


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
                            "of autotransfer train")
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
    """Load a model directory written by :func:`export_model` (weights via safetensors)."""
    directory = Path(directory)
    meta = read_meta(directory)
    try:
        if meta.get("library") == "timm":
            model, preprocess = _load_timm(directory, meta)
        elif meta.get("library") == "transformers":
            model, preprocess = _load_transformers(directory, meta, trust_remote_code)
        else:
            raise ModelDirError(f"{directory / META_FILE}: unknown library "
                                f"{meta.get('library')!r}; expected timm or transformers")
    except AutotransferError:
        raise
    except Exception as exc:  # a file missing or damaged
        raise ModelDirError(f"{directory}: cannot load the model ({type(exc).__name__}: "
                            f"{first_line(exc)})") from None
    return LoadedModel(directory, meta, model.eval(), preprocess)


def _load_timm(directory: Path, meta: dict[str, Any]):
    import safetensors.torch
    import timm

    from autotransfer.data import ImagePreprocess

    fields = {k: v for k, v in meta["preprocess"].items() if k != "kind"}
    fields["mean"], fields["std"] = tuple(fields["mean"]), tuple(fields["std"])
    preprocess = ImagePreprocess(**fields)
    model = timm.create_model(meta["architecture"], pretrained=False,
                              num_classes=len(meta["classes"]))
    model.load_state_dict(safetensors.torch.load_file(directory / "model.safetensors"),
                          strict=True)
    return model, preprocess


def _load_transformers(directory: Path, meta: dict[str, Any], trust_remote_code: bool):
    import safetensors.torch

    from autotransfer.contract.registry import get_registry
    from autotransfer.train.trainer import TransferModel

    zoo = "hf-text" if meta["modality"] == "text" else "hf-audio"
    entry = get_registry().get(f"{zoo}/{directory.resolve()}")
    options = {"trust_remote_code": True} if trust_remote_code else {}
    import transformers

    # the unused pooler of BERT-like encoders is not saved; its "missing" report is noise here
    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()
    try:
        backbone = entry.load(pretrained=True, **options)
    finally:
        transformers.logging.set_verbosity(verbosity)
    params = meta["params"]
    preprocess = backbone.preprocess.configure(params)
    if backbone.configure is not None:
        backbone.configure(params)
    model = TransferModel(backbone, len(meta["classes"]))
    head = safetensors.torch.load_file(directory / "head.safetensors")
    model.head[-1].load_state_dict(head, strict=True)
    return model, preprocess
