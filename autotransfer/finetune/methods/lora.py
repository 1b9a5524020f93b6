"""LoRA (Hu et al., 2022, arXiv 2106.09685) through Hugging Face ``peft``.

Adapters go only into the unfrozen layer groups. The layers adapted are the zoo's
``Backbone.lora_targets`` when it declares them, else by architecture family: every
``nn.Linear`` of the unfrozen groups (a transformer encoder's attention and MLP projections,
timm ViT's fused ``qkv``, ``proj``, ``fc1``, ``fc2``), or for a body without linear layers
(a CNN) its pointwise 1x1 convolutions. :func:`merge` folds the updates into the weights
(``W + (alpha / r) B A``) and puts back the plain layers, so that an exported model loads
with its zoo's library alone.

The rank respects a convolution's width (:func:`layer_rank`). ``lora_rank`` is the rank of a
transformer's projections, whose widths (384 to 1024 and more) dwarf it, as Hu et al. intend
(``r << min(d, k)``). A mobile CNN's pointwise convolutions are 16 to 320 channels on their
narrow side. There rank 8 makes an update nearly as large as the layer it adapts (a 16 -> 96
convolution has 1,536 weights; its rank-8 update 896). On MobileNetV2 that came to 7.2% of a
full fine-tune's parameters. So a convolution's rank is capped at its narrower side divided
by :data:`CONV_RANK_DIVISOR`, and is never below 1. This sizes the low-rank bottleneck against
the layer's width, as bottleneck adapters do with their "reduction factor" (Pfeiffer et al.,
2021, arXiv 2005.00247, the ``adapters`` library's ``reduction_factor``; Chen et al.'s
Conv-Adapter sizes ConvNet adapters by channel width too, arXiv 2208.07463). The divisor 32 is
our choice, measured (``benchmarks/methods.py``): 16, the adapters library's default, still
left MobileNetV2 at 5.7% of a full fine-tune; 32 gives 3.9%, and on the demo images its val
accuracy was not lower than at rank 8 on every layer (0.400 +- 0.083 against 0.322 +- 0.010,
3 seeds, 300 images, 3 epochs). The scale ``alpha / r`` stays that of the requested rank:
LoRA-C (Ding et al., 2024, arXiv 2410.16954) found CNN LoRA best at a constant ``alpha / r``.
Per-layer ranks go through peft's ``rank_pattern`` and ``alpha_pattern``.
"""

from __future__ import annotations

import re
from typing import Any

from torch import nn

from autotransfer.errors import BackboneError
from autotransfer.finetune.methods._peft import (
    inject,
    is_pointwise,
    load_peft,
    merge_adapters,
    say_nothing_adapted,
    unfrozen_names,
)

#: a convolution's LoRA rank is at most ``min(in_channels, out_channels) // CONV_RANK_DIVISOR``
#: (at least 1): MobileNetV2's adapters at rank 8 then train 3.9% of its parameters
#: (benchmarks/methods.py)
CONV_RANK_DIVISOR = 32


def layer_rank(module: nn.Module, rank: int) -> int:
    """The LoRA rank for ``module`` when ``lora_rank`` is ``rank``: ``rank`` for a linear layer,
    at most ``min(in, out) // CONV_RANK_DIVISOR`` (at least 1) for a convolution."""
    if isinstance(module, nn.Conv2d):
        narrow = min(module.in_channels, module.out_channels)
        return max(1, min(rank, narrow // CONV_RANK_DIVISOR))
    return rank


def declared_targets(body: nn.Module, patterns: Any, label: str) -> list[str]:
    """The module names of ``body`` that a zoo's ``lora_targets`` (regexes, each matching a
    whole module name) select.

    Raises:
        BackboneError: the patterns are not strings, or match no module of ``body``.
    """
    if isinstance(patterns, str) or not all(isinstance(p, str) for p in patterns):
        raise BackboneError(f"{label}: lora_targets must be a list of regexes, got "
                            f"{patterns!r}")
    names = [n for n, m in body.named_modules() if n and any(re.fullmatch(p, n)
                                                             for p in patterns)]
    if not names:
        raise BackboneError(f"{label}: lora_targets {list(patterns)} match no module of its "
                            "model")
    return names


def default_targets(body: nn.Module) -> list[str]:
    """Every ``nn.Linear`` of ``body``; without any, its pointwise 1x1 convolutions."""
    linear = [n for n, m in body.named_modules() if isinstance(m, nn.Linear)]
    return linear or [n for n, m in body.named_modules() if is_pointwise(m)]


def targets(body: nn.Module, trainable: set[str], backbone: Any = None,
            label: str = "backbone") -> list[str]:
    """The module names of ``body`` to adapt: the declared or default targets whose weight
    lies in the unfrozen groups (``trainable``: parameter names of ``body``)."""
    patterns = getattr(backbone, "lora_targets", None)
    found = (declared_targets(body, patterns, label) if patterns is not None
             else default_targets(body))
    return [n for n in found if f"{n}.weight" in trainable]


def apply(model: nn.Module, groups: list[list[str]], frozen: set[str],
          params: dict[str, Any], backbone: Any = None,
          label: str = "backbone") -> list[list[str]]:
    """Add LoRA adapters to the targets in the unfrozen groups, train only
    the adapters and the head. ``model.body`` is changed in place (its adapted layers become
    peft ``LoraLayer``s); the returned groups name the adapter parameters too."""
    body: nn.Module = model.body
    chosen = targets(body, unfrozen_names(groups, frozen), backbone, label)
    config = None
    if chosen:
        peft = load_peft("lora")
        rank, alpha = int(params.get("lora_rank", 8)), float(params.get("lora_alpha", 16.0))
        ranks = {n: layer_rank(body.get_submodule(n), rank) for n in chosen}
        narrowed = {re.escape(n): r for n, r in ranks.items() if r != rank}
        config = peft.LoraConfig(
            r=rank, lora_alpha=alpha, lora_dropout=float(params.get("lora_dropout", 0.0)),
            bias="none", target_modules="^(?:" + "|".join(re.escape(n) for n in chosen) + ")$",
            rank_pattern=narrowed,  # alpha / r stays that of the requested rank
            alpha_pattern={n: alpha * r / rank for n, r in narrowed.items()},
        )
    if not chosen:  # every target layer is frozen: the head alone trains
        say_nothing_adapted("lora", label, params["freeze_fraction"])
    return inject(model, groups, config, ".lora_")


#: folds the adapters into the weights (``W + (alpha / r) B A``), see :func:`merge_adapters`
merge = merge_adapters
