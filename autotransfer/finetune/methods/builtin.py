"""The builtin tuning methods: finetune, bitfit, layernorm, lora, ia3."""

from __future__ import annotations

from typing import Any

from torch import nn

from autotransfer.finetune.methods import ia3, lora
from autotransfer.finetune.methods._base import TuningMethod, selective
from autotransfer.space.hyperparameters import HYPERPARAMETERS
from autotransfer.space.methods import METHOD_NAMES, METHOD_TRAITS

#: normalisation layers whose parameters ``layernorm`` trains (besides any module whose class
#: name says Norm: timm's LayerNorm2d, transformers' RMSNorm variants)
NORMS = (nn.LayerNorm, nn.GroupNorm, nn.modules.batchnorm._NormBase, nn.RMSNorm)


def _finetune(model: nn.Module, groups: list[list[str]], frozen: set[str],
              params: dict[str, Any], backbone: Any = None, label: str = "backbone") -> None:
    """Every parameter outside the frozen prefix trains: nothing to mark."""


def _is_norm(name: str, param: nn.Parameter, owner: nn.Module) -> bool:
    return isinstance(owner, NORMS) or "norm" in type(owner).__name__.lower()


def _traits(name: str) -> dict[str, bool]:
    """A builtin's traits as the space layer states them (so that the study reads them without
    torch)."""
    traits = METHOD_TRAITS[name]
    return {"reference": traits.reference,
            "cost_follows_freezing": traits.cost_follows_freezing}


BUILTIN = [
    TuningMethod("finetune", METHOD_NAMES["finetune"], _finetune, **_traits("finetune")),
    selective("bitfit", METHOD_NAMES["bitfit"], lambda name, param, owner: name.endswith("bias")),
    selective("layernorm", METHOD_NAMES["layernorm"], _is_norm),
    TuningMethod("lora", METHOD_NAMES["lora"], lora.apply,
                 {k: h for k, h in HYPERPARAMETERS.items() if h.method == "lora"}, lora.merge,
                 **_traits("lora")),
    TuningMethod("ia3", METHOD_NAMES["ia3"], ia3.apply, {}, ia3.merge, **_traits("ia3")),
]
