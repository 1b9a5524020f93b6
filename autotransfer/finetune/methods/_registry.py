"""The registry of tuning methods, keyed by the ``method`` hyperparameter."""

from __future__ import annotations

import difflib
from typing import Any

from torch import nn

from autotransfer.errors import SpaceError
from autotransfer.finetune.methods._base import Tuned, TuningMethod
from autotransfer.finetune.methods.builtin import BUILTIN
from autotransfer.space.hyperparameters import HYPERPARAMETERS
from autotransfer.space.methods import declare_method

METHODS: dict[str, TuningMethod] = {m.name: m for m in BUILTIN}


def register_method(method: TuningMethod) -> TuningMethod:
    """Add (or replace) a tuning method; a search space may then name it in ``method``.

    Raises:
        TypeError: ``method`` is not a :class:`TuningMethod`.
        ValueError: its name is not an identifier, or a hyperparameter name is taken.
    """
    if not isinstance(method, TuningMethod):
        raise TypeError(f"register_method takes a TuningMethod, got {type(method).__name__}")
    declare_method(method.name, method.help, method.hyperparameters)
    METHODS[method.name] = method
    return method


def get_method(name: str) -> TuningMethod:
    """The method called ``name``.

    Raises:
        SpaceError: no such method (the message names a close match).
    """
    found = METHODS.get(name)
    if found is None:
        close = difflib.get_close_matches(str(name), list(METHODS), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise SpaceError(f"method: unknown tuning method {name!r}{hint}; expected one of "
                         f"{', '.join(METHODS)}")
    return found


def apply_method(model: nn.Module, groups: list[list[str]], params: dict[str, Any],
                 backbone: Any = None, label: str = "backbone") -> Tuned:
    """Mark what trains in ``model`` for a trial's ``params`` (its ``method``, default
    ``finetune``); see :attr:`TuningMethod.apply`."""
    method = get_method(params.get("method", HYPERPARAMETERS["method"].default))
    return method.apply(model, groups, params, backbone, label)


def merge_method(model: nn.Module, params: dict[str, Any]) -> nn.Module:
    """``model`` with the adapters of ``params``'s method folded in (for export)."""
    method = get_method(params.get("method", HYPERPARAMETERS["method"].default))
    return model if method.merge is None else method.merge(model)
