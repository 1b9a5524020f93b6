"""LoRA (Hu et al., 2022, arXiv 2106.09685) through Hugging Face ``peft``.

Adapters go only into the unfrozen layer groups. The layers adapted are the zoo's
``Backbone.lora_targets`` when it declares them, else by architecture family: every
``nn.Linear`` of the unfrozen groups (a transformer encoder's attention and MLP projections,
timm ViT's fused ``qkv``, ``proj``, ``fc1``, ``fc2``), or for a body without linear layers
(a CNN) its pointwise 1x1 convolutions. :func:`merge` folds the updates into the weights
(``W + (alpha / r) B A``) and puts back the plain layers, so that an exported model loads
with its zoo's library alone.
"""

from __future__ import annotations

import re
from typing import Any

from torch import nn

from autotransfer.errors import BackboneError, OptionError
from autotransfer.finetune.freezing import freeze
from autotransfer.finetune.methods._base import Tuned


def _peft():
    try:
        import peft
    except ImportError:
        raise OptionError("method", ": lora needs Hugging Face peft; install the extra: "
                                    "pip install 'autotransfer[peft]'") from None
    return peft


def _is_pointwise(module: nn.Module) -> bool:
    return (isinstance(module, nn.Conv2d) and module.kernel_size == (1, 1)
            and module.groups == 1)


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
    return linear or [n for n, m in body.named_modules() if _is_pointwise(m)]


def targets(body: nn.Module, trainable: set[str], backbone: Any = None,
            label: str = "backbone") -> list[str]:
    """The module names of ``body`` to adapt: the declared or default targets whose weight
    lies in the unfrozen groups (``trainable``: parameter names of ``body``)."""
    patterns = getattr(backbone, "lora_targets", None)
    found = (declared_targets(body, patterns, label) if patterns is not None
             else default_targets(body))
    return [n for n in found if f"{n}.weight" in trainable]


def apply(model: nn.Module, groups: list[list[str]], params: dict[str, Any],
          backbone: Any = None, label: str = "backbone") -> Tuned:
    """Freeze the prefix, add LoRA adapters to the targets of the other groups, train only
    the adapters and the head. ``model.body`` is changed in place (its adapted layers become
    peft ``LoraLayer``s); the returned groups name the adapter parameters too."""
    frozen = freeze(model, groups, params["freeze_fraction"])
    body: nn.Module = model.body
    group_of = {}  # parameter id -> group index: peft keeps the adapted layers' tensors
    by_name = dict(model.named_parameters())
    for index, group in enumerate(groups):
        for name in group:
            group_of[id(by_name[name])] = index
    unfrozen = {n.removeprefix("body.") for g in groups for n in g if n not in frozen}
    chosen = targets(body, unfrozen, backbone, label)
    if chosen:
        peft = _peft()
        config = peft.LoraConfig(
            r=int(params.get("lora_rank", 8)), lora_alpha=float(params.get("lora_alpha", 16.0)),
            lora_dropout=float(params.get("lora_dropout", 0.0)), bias="none",
            target_modules="^(?:" + "|".join(re.escape(n) for n in chosen) + ")$",
        )
        peft.inject_adapter_in_model(config, body)
    new_groups: list[list[str]] = [[] for _ in groups]
    modules = dict(model.named_modules())
    for name, param in model.named_parameters():
        if id(param) in group_of:
            new_groups[group_of[id(param)]].append(name)
            param.requires_grad_(False)
        elif "lora_" in name:  # <layer>.lora_A.default.weight: the group of <layer>'s weight
            layer = modules[name.split(".lora_", 1)[0]]
            new_groups[group_of[id(layer.get_base_layer().weight)]].append(name)
            param.requires_grad_(True)
        # else: the head, which trains
    return Tuned(frozen, new_groups)


def merge(model: nn.Module) -> nn.Module:
    """Fold every LoRA adapter of ``model`` into its layer and put the plain layer back
    (peft's ``merge`` then ``get_base_layer``); ``model`` is changed in place and returned."""
    adapted = [(n, m) for n, m in model.named_modules() if hasattr(m, "lora_A")
               and hasattr(m, "get_base_layer")]
    for name, module in adapted:
        module.merge()
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, module.get_base_layer())
    return model
