"""The names of the tuning methods, a leaf of the contract: what the ``method`` hyperparameter
accepts is checked here, without the hyperparameter table (which imports this module) or torch.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any

#: method name -> one line of what trains (the builtin ones; register_method adds more)
METHOD_NAMES: dict[str, str] = {
    "finetune": "every parameter of the unfrozen groups (freeze_fraction decides; 1 is a "
                "linear probe)",
    "bitfit": "the biases of the unfrozen groups, and the head (Ben Zaken et al., 2022)",
    "layernorm": "the normalisation parameters of the unfrozen groups, and the head",
    "lora": "low-rank updates of the unfrozen groups' linear layers (Hu et al., 2022; "
            "through Hugging Face peft), and the head",
    "ia3": "learned vectors rescaling the unfrozen groups' attention keys and values and "
           "feed-forward activations (Liu et al., 2022; through Hugging Face peft), and the "
           "head",
}

#: the methods that ship with autotransfer
BUILTIN_METHODS = tuple(METHOD_NAMES)


@dataclass(frozen=True)
class MethodTraits:
    """What the study needs to know of a tuning method, without torch (see
    :class:`autotransfer.finetune.methods.TuningMethod` for the meaning of each)."""

    reference: bool = False  # the search adds a reference trial of this method per backbone
    cost_follows_freezing: bool = False  # the cost model scales a trial by its unfrozen share


#: method name -> its traits (the builtin ones; register_method and plugins add more)
METHOD_TRAITS: dict[str, MethodTraits] = {
    "finetune": MethodTraits(cost_follows_freezing=True),
    "bitfit": MethodTraits(),
    "layernorm": MethodTraits(),
    "lora": MethodTraits(reference=True),
    "ia3": MethodTraits(),
}


def method_traits(name: str) -> MethodTraits:
    """The traits of method ``name`` (an unknown name: none)."""
    return METHOD_TRAITS.get(name, MethodTraits())


def check_method_name(value: Any) -> str | None:
    """Why ``value`` is not a known method name (with a close match), or None."""
    if value in METHOD_NAMES:
        return None
    close = difflib.get_close_matches(str(value).lower(), list(METHOD_NAMES), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown tuning method {value!r}{hint}; expected one of {', '.join(METHOD_NAMES)}"
