"""The names of the tuning methods a search space may choose (``method``), and their
hyperparameters.

What a method *does* (which parameters train, how adapters merge for export) lives in
:mod:`autotransfer.finetune.methods`; this layer only knows the names, so that a search space
is validated without loading torch. :func:`autotransfer.finetune.methods.register_method`
declares a new method here too.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Mapping
from typing import Any

from autotransfer.contract.hyperparameters import HYPERPARAMETERS, Hyperparameter

#: method name -> one line of what trains (the builtin ones; register_method adds more)
METHOD_NAMES: dict[str, str] = {
    "finetune": "every parameter of the unfrozen groups (freeze_fraction decides; 1 is a "
                "linear probe)",
    "bitfit": "the biases of the unfrozen groups, and the head (Ben Zaken et al., 2022)",
    "layernorm": "the normalisation parameters of the unfrozen groups, and the head",
    "lora": "low-rank updates of the unfrozen groups' linear layers (Hu et al., 2022; "
            "through Hugging Face peft), and the head",
}

#: the methods that ship with autotransfer
BUILTIN_METHODS = tuple(METHOD_NAMES)


def declare_method(name: str, help: str,
                   hyperparameters: Mapping[str, Hyperparameter] | None = None) -> None:
    """Make ``name`` a valid ``method`` and its ``hyperparameters`` valid keys of a space.

    Each hyperparameter is read by this method only (its ``method`` is set to ``name``).

    Raises:
        ValueError: ``name`` is empty, or a hyperparameter name is taken by another one.
    """
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"a tuning method's name must be an identifier, got {name!r}")
    for key, h in (hyperparameters or {}).items():
        known = HYPERPARAMETERS.get(key)
        if known is not None and known.method != name:
            raise ValueError(f"tuning method {name!r}: hyperparameter {key!r} already exists")
        HYPERPARAMETERS[key] = dataclasses.replace(h, method=name)
    METHOD_NAMES[name] = help


def check_method_name(value: Any) -> str | None:
    """Why ``value`` is not a known method name (with a close match), or None."""
    if value in METHOD_NAMES:
        return None
    close = difflib.get_close_matches(str(value), list(METHOD_NAMES), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown tuning method {value!r}{hint}; expected one of {', '.join(METHOD_NAMES)}"
