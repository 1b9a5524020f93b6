"""(IA)^3 (Liu et al., 2022, "Few-Shot Parameter-Efficient Fine-Tuning is Better and Cheaper
than In-Context Learning", arXiv 2205.05638) through Hugging Face ``peft``.

IA3 learns one vector per adapted layer that rescales activations: the output of the attention
keys and values, and the input of the feed-forward block's second layer (the hidden
activation). The vectors start at 1, so a trial starts from the pretrained function. IA3
trains even fewer parameters than LoRA, and it adds no latency once merged. Adapters go into
the unfrozen layer groups only. As with LoRA, :func:`merge` folds the vectors into the weights
and puts the plain layers back.

The layers to adapt are chosen by architecture family (:func:`default_targets`):

- a transformers model listed in peft's IA3 tables (BERT, RoBERTa, ...): peft's targets and
  feed-forward modules (``TRANSFORMERS_MODELS_TO_IA3_*_MODULES_MAPPING``);
- other transformer encoders, by layer names: timm ViT's fused ``qkv`` and ``fc2``, and
  Whisper's ``k_proj``, ``v_proj`` and ``fc2`` (BART's names, as in peft's table);
- a CNN (no linear layer): its pointwise 1x1 convolutions, each rescaling its input
  channels (peft's "feed-forward" mode). Rescaling their output instead would be a no-op in
  training: the BatchNorm right after each convolution normalises a channel's scale away.

A zoo's ``Backbone.lora_targets`` are LoRA's only; IA3 has no per-backbone declaration yet.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from autotransfer.finetune.methods._peft import (
    inject,
    is_pointwise,
    load_peft,
    merge_adapters,
    say_nothing_adapted,
    unfrozen_names,
)

#: the attention layers whose output IA3 rescales, by the last part of a module name, for
#: encoders without an entry in peft's table: timm ViT (fused q, k, v) and Whisper / BART
ATTENTION = ("qkv", "k_proj", "v_proj", "key", "value")
#: the feed-forward block's second layer, whose input IA3 rescales (same families)
FEEDFORWARD = ("fc2",)


def _peft_tables(body: nn.Module) -> tuple[list[str], list[str]] | None:
    """peft's IA3 target and feed-forward names for the transformers model in ``body`` (the
    first module with a ``config.model_type``), or None."""
    model_type = next((m.config.model_type for m in body.modules()
                       if isinstance(getattr(getattr(m, "config", None), "model_type", None),
                                     str)), None)
    if model_type is None:
        return None
    from peft.utils.constants import (
        TRANSFORMERS_MODELS_TO_IA3_FEEDFORWARD_MODULES_MAPPING as FF,
    )
    from peft.utils.constants import (
        TRANSFORMERS_MODELS_TO_IA3_TARGET_MODULES_MAPPING as TARGETS,
    )

    if model_type not in TARGETS:
        return None
    return TARGETS[model_type], FF.get(model_type, [])


def _ends_with(name: str, suffixes: list[str] | tuple[str, ...]) -> bool:
    return any(name == s or name.endswith("." + s) for s in suffixes)


def default_targets(body: nn.Module) -> tuple[list[str], list[str]]:
    """``(targets, feedforward)``: the module names of ``body`` that IA3 adapts, and those
    of them whose input (not output) it rescales; see the module's docstring."""
    linear = [n for n, m in body.named_modules() if isinstance(m, nn.Linear)]
    if not linear:
        convs = [n for n, m in body.named_modules() if is_pointwise(m)]
        return convs, convs
    tables = _peft_tables(body)
    attention, feedforward = tables if tables is not None else (ATTENTION + FEEDFORWARD,
                                                                FEEDFORWARD)
    chosen = [n for n in linear if _ends_with(n, attention)]
    return chosen, [n for n in chosen if _ends_with(n, feedforward)]


def apply(model: nn.Module, groups: list[list[str]], frozen: set[str],
          params: dict[str, Any], backbone: Any = None,
          label: str = "backbone") -> list[list[str]]:
    """Add IA3 vectors to the default targets in the unfrozen groups, train
    only them and the head. ``model.body`` is changed in place (its adapted layers become
    peft ``IA3Layer``s); the returned groups name the vectors too."""
    body: nn.Module = model.body
    unfrozen = unfrozen_names(groups, frozen)
    chosen, feedforward = default_targets(body)
    chosen = [n for n in chosen if f"{n}.weight" in unfrozen]
    config = None
    if chosen:
        peft = load_peft("ia3")
        config = peft.IA3Config(target_modules=chosen,
                                feedforward_modules=[n for n in feedforward if n in chosen])
    if not chosen:  # every target layer is frozen: the head alone trains
        say_nothing_adapted("ia3", label, params["freeze_fraction"])
    return inject(model, groups, config, ".ia3_")


#: folds each vector into its layer's weight (and bias), see :func:`merge_adapters`
merge = merge_adapters
