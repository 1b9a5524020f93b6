"""The timm zoo's native model format (``library: timm``).

``model.safetensors`` and ``config.json`` in the layout of a timm hub repository:
``timm.create_model("local-dir:DIR", pretrained=True)`` builds the network with our head as its
classifier, and ``label_names`` and the preprocessing (``input_size``, ``mean``, ``std``,
``crop_pct``, ``interpolation``) are in its ``pretrained_cfg``. Any backbone whose model is a
timm model uses it (``timm/*`` and the packaged timm networks).
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from autotransfer.plugin import (
    BackboneError,
    ImagePreprocess,
    ModelFormat,
    check_same_output,
    first_line,
)

#: pretrained_cfg keys that describe where the source weights came from, not the export
_SOURCE_KEYS = ("url", "hf_hub_id", "hf_hub_filename", "file", "source", "state_dict", "tag",
                "test_input_size", "test_crop_pct", "test_pool_size", "label_offset",
                "custom_load", "architecture")


def can_export(body: Any, modality: str) -> bool:
    return hasattr(body, "pretrained_cfg") and hasattr(body, "get_classifier")


def export(model, preprocess: ImagePreprocess, out: Path, classes: list[str]) -> dict[str, Any]:
    """``timm.create_model(arch, num_classes=K)`` with the body's weights and our head."""
    fields = asdict(preprocess)
    fields.pop("augment", None)  # train-time only
    described = {"kind": "image", **fields}
    return {"preprocess": described, "architecture": _export(model, described, out, classes)}


def _export(model, preprocess: dict[str, Any], out: Path, classes: list[str]) -> str:
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
    check_same_output(native.eval(), model,
                      torch.randn(2, 3, preprocess["size"], preprocess["size"]), f"timm/{arch}")
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


def load(directory: Path, meta: dict[str, Any], trust_remote_code: bool = False):
    import safetensors.torch
    import timm

    fields = {k: v for k, v in meta["preprocess"].items() if k != "kind"}
    fields["mean"], fields["std"] = tuple(fields["mean"]), tuple(fields["std"])
    preprocess = ImagePreprocess(**fields)
    model = timm.create_model(meta["architecture"], pretrained=False,
                              num_classes=len(meta["classes"]))
    model.load_state_dict(safetensors.torch.load_file(directory / "model.safetensors"),
                          strict=True)
    return model, preprocess


TIMM_FORMAT = ModelFormat("timm", can_export=can_export, export=export, load=load,
                          modality="image")
