"""Builtin zoo: every timm model as ``timm/<model name>`` (image).

Pretrained weights come from the Hugging Face hub when online; offline, give a local file with
``{id: timm/<name>, weights: PATH}`` (safetensors, a state dict or a checkpoint holding one;
``_weights`` loads it only when it fits the architecture).
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from autotransfer.plugin import (
    Backbone,
    BackboneCatalogue,
    BackboneEntry,
    BackboneError,
    ImagePreprocess,
    RankingEntry,
    first_line,
    group_names,
    hookimpl,
)

if TYPE_CHECKING:
    from torch import nn


@hookimpl(tryfirst=True)  # builtin ids win over a plugin that registers them again
def register_backbones(register) -> None:
    # about 3,200 ids that need timm (and torch) to list: only when a caller asks for timm/
    register(BackboneCatalogue("timm", ("image",), timm_entries))


@hookimpl
def register_ranking(register, modality: str, online: bool) -> None:
    if modality == "image":
        for entry in ranking_entries(online=online):
            register(entry)


def ranking_entries(*, online: bool = False) -> Iterator[RankingEntry]:
    """Every pretrained tag of timm's ImageNet table, with its architecture's CPU and GPU
    benchmark rows (:mod:`autotransfer_timm.tables`; the current files when ``online`` and
    reachable, else the shipped snapshot)."""
    from autotransfer_timm.tables import gmacs_row, online_tables, snapshot, speed_rows

    tables = (online_tables() if online else None) or snapshot()
    cached = cached_timm_weights()
    for model, (size, top1, params, licence) in tables["models"].items():
        architecture, _, tag = model.partition(".")
        throughput, rows = speed_rows(tables, architecture)
        gmacs, gmacs_size = gmacs_row(tables, architecture)
        yield RankingEntry(
            id=f"timm/{model}", modality="image", score=top1, signal="ImageNet-1k top-1 %",
            source=f"{tables['files']['imagenet']} ({tables['source']})",
            params=round(params * 1e6), throughput=throughput, throughput_source=rows,
            input_size=size, license=licence, pretrain=tag or tables["pretrain"].get(architecture),
            loads_offline=model in cached, architecture=architecture, gmacs=gmacs,
            gmacs_size=gmacs_size,
        )


def cached_timm_weights() -> set[str]:
    """``model.tag`` names whose weights are in the Hugging Face cache (``timm/<name>`` repos)."""
    try:
        from huggingface_hub.constants import HF_HUB_CACHE
    except ImportError:
        return set()
    root = Path(HF_HUB_CACHE)
    if not root.is_dir():
        return set()
    return {p.name.removeprefix("models--timm--") for p in root.glob("models--timm--*")
            if any(p.glob("snapshots/*/*.safetensors")) or any(p.glob("snapshots/*/*.bin"))}


def timm_entries() -> Iterator[BackboneEntry]:
    """``timm/<architecture>`` and ``timm/<architecture>.<pretrained tag>`` for every model."""
    import timm

    tagged = timm.list_models(pretrained=True)
    architectures = set(timm.list_models()) | {name.partition(".")[0] for name in tagged}
    for name in sorted(architectures) + tagged:
        yield (
            BackboneEntry(
                id=f"timm/{name}",
                modality="image",
                loader=partial(load_timm, name),
                description="timm; weights from the hub, or a local file with weights: PATH",
                options=("weights",),
            )
        )


def load_timm(name: str, *, pretrained: bool = True, weights: str | None = None) -> Backbone:
    """Create ``name`` with timm without its classifier; weights from ``weights`` or the hub."""
    import timm

    path = None
    if weights is not None:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise BackboneError(f"timm/{name}: weights file {str(path)!r} does not exist")
    try:  # a local file is loaded here, checked (autotransfer_timm._weights), not by timm
        model = timm.create_model(name, pretrained=pretrained and path is None, num_classes=0)
    except RuntimeError as exc:
        if "Unknown model" in str(exc):
            raise BackboneError(f"timm/{name}: timm has no model of that name") from None
        raise BackboneError(f"timm/{name}: could not load weights ({first_line(exc)})") from None
    except Exception as exc:  # hub unreachable, file in the wrong format, ...
        raise BackboneError(
            f"timm/{name}: could not get pretrained weights ({type(exc).__name__}: "
            f"{first_line(exc, 400)}); offline, give a local file with "
            f"{{id: timm/{name}, weights: PATH}} or use pretrained: false"
        ) from None
    if path is not None and pretrained:  # pretrained=False: random weights (a scratch run)
        from autotransfer_timm._weights import load_local_weights

        load_local_weights(model, path, f"timm/{name}")
    return backbone_from_timm(model)


def backbone_from_timm(model: nn.Module, preprocess: ImagePreprocess | None = None) -> Backbone:
    """Wrap a timm model created with ``num_classes=0`` as a Backbone.

    Layer groups come from the model's own ``group_matcher(coarse=False)``; preprocessing from
    its pretrained config unless given.
    """
    import timm.data
    from torch import nn

    from autotransfer.plugin import sequential_split

    names = [n for n, _ in model.named_parameters()]
    groups = group_names(names, model.group_matcher(coarse=False))
    if preprocess is None:
        cfg = timm.data.resolve_data_config({}, model=model)
        preprocess = ImagePreprocess(
            size=int(cfg["input_size"][-1]),
            mean=tuple(cfg["mean"]),
            std=tuple(cfg["std"]),
            interpolation=cfg["interpolation"],
            crop_pct=float(cfg["crop_pct"]),
            fixed_size=bool(model.pretrained_cfg.get("fixed_input_size", False)),
        )
    conv_params = sum(m.weight.numel() for m in model.modules() if isinstance(m, nn.Conv2d))
    total = sum(p.numel() for p in model.parameters())
    stages = timm_stages(model)
    return Backbone(
        model=model,
        dim=int(getattr(model, "head_hidden_size", None) or model.num_features),
        groups=groups,
        preprocess=preprocess,
        channels_last=conv_params > total / 2,
        split=None if stages is None else sequential_split(
            model, groups, stages, model.forward_head
        ),
    )


def timm_stages(model: nn.Module) -> list[nn.Module] | None:
    """``model.forward_features`` as a list of stages, for the families whose forward is a
    plain sequence (EfficientNet / MobileNet, ResNet, ViT); None for the others.

    ``forward_head(stages...(x)) == model(x)``; the frozen-prefix cache cuts this list.
    """
    from timm.models.efficientnet import EfficientNet
    from timm.models.mobilenetv3 import MobileNetV3
    from timm.models.resnet import ResNet
    from timm.models.vision_transformer import VisionTransformer

    from autotransfer.plugin import Stage

    if getattr(model, "grad_checkpointing", False):
        return None
    if isinstance(model, (EfficientNet, MobileNetV3)):
        stages = [Stage(lambda x: model.bn1(model.conv_stem(x)),
                        {"conv_stem": model.conv_stem, "bn1": model.bn1})]
        stages += [block for stage in model.blocks for block in stage]
        if isinstance(model, EfficientNet):  # its conv_head is in forward_features
            stages.append(Stage(lambda x: model.bn2(model.conv_head(x)),
                                {"conv_head": model.conv_head, "bn2": model.bn2}))
        return stages
    if isinstance(model, ResNet):
        stem = {name: getattr(model, name) for name in ("conv1", "bn1", "act1", "maxpool")}
        stages = [Stage(lambda x: model.maxpool(model.act1(model.bn1(model.conv1(x)))), stem)]
        return stages + [block for layer in (model.layer1, model.layer2, model.layer3,
                                             model.layer4) for block in layer]
    if isinstance(model, VisionTransformer):
        embed = Stage(
            lambda x: model.norm_pre(model.patch_drop(model._pos_embed(model.patch_embed(x)))),
            {"patch_embed": model.patch_embed, "norm_pre": model.norm_pre,
             "patch_drop": model.patch_drop, "pos_drop": model.pos_drop},
            {"cls_token": model.cls_token, "reg_token": model.reg_token,
             "pos_embed": model.pos_embed},
        )
        return [embed, *model.blocks, model.norm]
    return None


@hookimpl
def register_model_formats(register) -> None:
    from autotransfer_timm._format import TIMM_FORMAT

    register(TIMM_FORMAT)
