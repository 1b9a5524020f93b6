"""The first fine-tune of each backbone family: a recipe known to work, where a search starts.

A search's ``default`` reference trial of a backbone (:mod:`autotransfer.study.references.trials`)
is its *first fine-tune*: the settings of this table for the backbone's family, moved into the
space's searched range where they lie outside it (a hyperparameter the space fixes stays
fixed), the documented defaults (:mod:`autotransfer.space.hyperparameters`) for what the table
does not set. Every family trains at the backbone's own input size (``image_size: None``),
with a linear warm-up over a tenth of the steps then a cosine decay (the trainer's schedule,
``warmup_fraction: 0.1``), the head at ten times the rate (``head_lr_multiplier: 10``, as every
trial by default) and the best three epoch ends averaged greedily (``average_checkpoints: 3``;
Wortsman et al., 2022, "Model soups", ICML, arXiv 2203.05482, the greedy soup):

========== ======================================================= =========================
family     settings besides the common ones above                   source
========== ======================================================= =========================
image-cnn  ``freeze_fraction: 0.5``, ``lr: 1e-3``, ``layer_decay:   a hand loop on held-out
           1``, ``weight_decay: 0.01``                              digits (issue #36)
vit        ``lr: 1e-4``, ``layer_decay: 0.75``, ``weight_decay:     MAE fine-tuning (He et
           0.05``                                                   al., 2022)
text       ``lr: 1e-4``, ``layer_decay: 0.9``, ``weight_decay:      AutoGluon MultiModal's
           1e-3``                                                   default (Shi et al., 2021)
audio      ``lr: 5e-5``, ``layer_decay: 0.9``, ``weight_decay:      between Hugging Face's
           1e-3``                                                   audio example and AutoMM
generic    none: the documented defaults (the behaviour before      --
           the table)
========== ======================================================= =========================

Why half frozen at ``1e-3`` for image CNNs rather than AutoGluon MultiModal's full fine-tune
at ``4e-4`` with layer decay 0.9: on 2 CPU cores, 224 px, the two packaged backbones and 3
seeds (issue #36's hand loop), EfficientNet-Lite0 half frozen at ``1e-3`` scored mean val
0.939 / test 0.953 in 23 s a run and MobileNetV2 0.925 / 0.944 in 15 s, while MobileNetV2 in
full at ``1e-3`` scored 0.906 / 0.933 in 34 s with a wide spread over seeds (0.933 and 0.858
val); a frozen half also runs through the activation cache once, so an epoch costs about half
as much and more of them fit a small budget. AutoMM's recipe is a GPU recipe of up to 20
epochs; its layer decay 0.9 is kept for the transformer families. The ViT, text and audio
rows are not measured here; they follow the cited recipes (MAE's base rate 5e-4 per 256
samples is 6e-5 at batch 32, rounded up for short runs).

The family comes from what the registry says of the backbone: its modality, and for images
the architecture in its id (:data:`VIT_PATTERN`). Only the builtin zoos' ids are read
(:data:`KNOWN_ZOOS`): a plugin's zoo is unknown here and gets the ``generic`` row.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from autotransfer.contract.backbone import split_id
from autotransfer.space.hyperparameters import Scalar

#: The zoos whose ids this table reads, and the modality of each one's ids (None: several,
#: the registry's entry says which).
KNOWN_ZOOS: Mapping[str, str | None] = {
    "timm": "image", "packaged": None, "hf-text": "text", "hf-audio": "audio",
}
#: An image backbone whose architecture name matches is a vision transformer (timm's names:
#: ``vit_*``, ``deit*``, ``swin*``, ``tiny_vit_*``, ``levit_*``, ...); a hybrid whose name
#: only ends in ``vit`` (``mobilevit``, ``fastvit``, ``efficientvit``) stays a CNN.
VIT_PATTERN = re.compile(
    r"^(vit|deit|beit|swin|eva|levit|cait|xcit|pvt|mvit|tiny_vit|twins|volo|crossvit|convit|"
    r"coat|hiera|flexivit|samvit|davit|maxvit|maxxvit|nextvit|efficientformer)",
)
#: The settings every family's first fine-tune shares (the generic row sets none).
COMMON: Mapping[str, Scalar] = {
    "image_size": None, "warmup_fraction": 0.1, "head_lr_multiplier": 10.0,
    "average_checkpoints": 3,
}


@dataclass(frozen=True)
class FirstFinetune:
    """One family's first fine-tune.

    Attributes:
        family: ``image-cnn``, ``vit``, ``text``, ``audio`` or ``generic``.
        settings: hyperparameter name -> value (names of
            :data:`autotransfer.space.hyperparameters.HYPERPARAMETERS`); what it leaves out is
            at its documented default.
        source: where the recipe comes from, in a few words.
    """

    family: str
    settings: Mapping[str, Scalar] = field(default_factory=dict)
    source: str = ""


FAMILIES: dict[str, FirstFinetune] = {
    f.family: f for f in (
        FirstFinetune("image-cnn", {**COMMON, "freeze_fraction": 0.5, "lr": 1e-3,
                                    "layer_decay": 1.0, "weight_decay": 0.01},
                      "half frozen at 1e-3: a hand loop on held-out digits (issue #36)"),
        FirstFinetune("vit", {**COMMON, "freeze_fraction": 0.0, "lr": 1e-4,
                              "layer_decay": 0.75, "weight_decay": 0.05},
                      "MAE fine-tuning (He et al., 2022, arXiv 2111.06377)"),
        FirstFinetune("text", {**COMMON, "freeze_fraction": 0.0, "lr": 1e-4,
                               "layer_decay": 0.9, "weight_decay": 1e-3},
                      "AutoGluon MultiModal's default (Shi et al., 2021, arXiv 2111.02705)"),
        FirstFinetune("audio", {**COMMON, "freeze_fraction": 0.0, "lr": 5e-5,
                                "layer_decay": 0.9, "weight_decay": 1e-3},
                      "between Hugging Face's audio-classification example (3e-5) and "
                      "AutoGluon MultiModal (1e-4); not measured here"),
        FirstFinetune("generic", {}, "the documented defaults"),
    )
}


def family_of(backbone_id: str, modality: str | None = None) -> str:
    """The family of ``backbone_id`` (a key of :data:`FAMILIES`).

    Args:
        backbone_id: a registered id, ``zoo/name``.
        modality: its entry's modality (``BackboneEntry.modality``), where known; a zoo of
            one modality (:data:`KNOWN_ZOOS`) needs none.

    Returns:
        ``image-cnn`` or ``vit`` for the builtin zoos' images, ``text`` or ``audio`` for
        theirs; ``generic`` for another zoo (a plugin's), another modality or an unknown one.

    Example:
        >>> family_of("timm/vit_small_patch16_224.augreg_in21k")
        'vit'
        >>> family_of("packaged/mobilenetv2_100", "image")
        'image-cnn'
        >>> family_of("myzoo/resnet50", "image")
        'generic'
    """
    zoo, name = split_id(backbone_id)
    if zoo not in KNOWN_ZOOS:
        return "generic"
    modality = KNOWN_ZOOS[zoo] or modality
    if modality == "image":
        return "vit" if VIT_PATTERN.match(name.rsplit("/", 1)[-1].lower()) else "image-cnn"
    return modality if modality in ("text", "audio") else "generic"


def first_finetune(backbone_id: str, modality: str | None = None) -> FirstFinetune:
    """The first fine-tune of ``backbone_id``'s family (:func:`family_of`; the ``generic``
    row, no settings, for a family this table does not know)."""
    return FAMILIES[family_of(backbone_id, modality)]
