"""What the peft-based methods (LoRA, IA3) share: importing peft, injecting adapters into the
unfrozen groups, and folding them back into plain layers for export."""

from __future__ import annotations

from typing import Any

from torch import nn

from autotransfer.errors import OptionError


def load_peft(method: str) -> Any:
    """The ``peft`` module.

    Raises:
        OptionError: peft is not installed (the message names the extra).
    """
    try:
        import peft
    except ImportError:
        raise OptionError("method", f": {method} needs Hugging Face peft; install the extra: "
                                    "pip install 'autotransfer[peft]'") from None
    return peft


def is_pointwise(module: nn.Module) -> bool:
    """A dense (not grouped) 1x1 convolution."""
    return (isinstance(module, nn.Conv2d) and module.kernel_size == (1, 1)
            and module.groups == 1)


class MethodWarning(UserWarning):
    """A tuning method that has nothing to act on in a trial (it trains the head alone)."""


def say_nothing_adapted(method: str, label: str, freeze_fraction: float) -> None:
    """Warn that ``method`` found no layer to adapt in the unfrozen groups of ``label``: the
    trial trains the head alone, as a linear probe does (said, never silently)."""
    import warnings

    warnings.warn(MethodWarning(
        f"{label}: {method} has nothing to adapt (freeze_fraction {freeze_fraction:g} leaves "
        f"no {method} target layer unfrozen), so this trial trains the head alone, as a linear "
        "probe; give freeze_fraction below 1 for a real adapter trial"), stacklevel=3)


def unfrozen_names(groups: list[list[str]], frozen: set[str]) -> set[str]:
    """The parameter names of ``model.body`` (without ``body.``) outside the frozen prefix."""
    return {n.removeprefix("body.") for g in groups for n in g if n not in frozen}


def inject(model: nn.Module, groups: list[list[str]], config: Any, marker: str) -> list[list[str]]:
    """Inject peft's adapters of ``config`` into ``model.body`` (None: none) and train only
    them (and the head).

    Returns:
        the layer groups as names of the adapted model: each adapter parameter (its name
        holds ``marker``, e.g. ``.lora_``) joins the group of the layer it adapts, so
        layer-wise lr decay applies; the base layers' parameters stay in their groups, frozen.
    """
    group_of = {}  # parameter id -> group index: peft keeps the adapted layers' tensors
    by_name = dict(model.named_parameters())
    for index, group in enumerate(groups):
        for name in group:
            group_of[id(by_name[name])] = index
    if config is not None:
        from peft import inject_adapter_in_model  # a config: peft is there

        inject_adapter_in_model(config, model.body)
    new_groups: list[list[str]] = [[] for _ in groups]
    modules = dict(model.named_modules())
    for name, param in model.named_parameters():
        if id(param) in group_of:
            new_groups[group_of[id(param)]].append(name)
            param.requires_grad_(False)
        elif marker in name:  # <layer>.lora_A.default.weight: the group of <layer>'s weight
            layer = modules[name.split(marker, 1)[0]]
            new_groups[group_of[id(layer.get_base_layer().weight)]].append(name)
            param.requires_grad_(True)
        # else: the head, which trains
    return new_groups


def merge_adapters(model: nn.Module) -> nn.Module:
    """Fold every peft adapter of ``model`` into its layer and put the plain layer back
    (peft's ``merge`` then ``get_base_layer``); ``model`` is changed in place and returned."""
    try:
        from peft.tuners.tuners_utils import BaseTunerLayer
    except ImportError:  # no peft: nothing can have been injected
        return model
    adapted = [(n, m) for n, m in model.named_modules() if isinstance(m, BaseTunerLayer)]
    for name, module in adapted:
        module.merge()
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, module.get_base_layer())
    return model
