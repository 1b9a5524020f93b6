"""The registry of tuning methods, keyed by the ``method`` hyperparameter: the builtins, those
passed to :func:`register_method`, and those a plugin offers through ``register_methods``."""

from __future__ import annotations

import difflib
from typing import Any

from torch import nn

from autotransfer.contract.collect import get_methods
from autotransfer.errors import SpaceError
from autotransfer.finetune.freezing import freeze
from autotransfer.finetune.methods._base import Tuned, TuningMethod
from autotransfer.finetune.methods.builtin import BUILTIN
from autotransfer.space.hyperparameters import HYPERPARAMETERS
from autotransfer.space.methods import declare_method, forget_method, traits_of

METHODS: dict[str, TuningMethod] = {m.name: m for m in BUILTIN}
BUILTIN_NAMES = frozenset(METHODS)


def register_method(method: TuningMethod) -> TuningMethod:
    """Add (or replace) a tuning method; a search space may then name it in ``method``.

    A plugin offers one through the ``register_methods`` hook instead, so that the CLI and
    every worker process know it.

    Raises:
        TypeError: ``method`` is not a :class:`TuningMethod`.
        ValueError: its name is not an identifier, or a hyperparameter name is taken.
    """
    if not isinstance(method, TuningMethod):
        raise TypeError(f"register_method takes a TuningMethod, got {type(method).__name__}")
    declare_method(method.name, method.help, method.hyperparameters, traits_of(method))
    METHODS[method.name] = method
    return method


def unregister_method(name: str) -> None:
    """Remove a method passed to :func:`register_method`, its name, traits and hyperparameters
    (a test's or a caller's own; unknown names are ignored).

    Raises:
        ValueError: ``name`` is a builtin method (finetune, bitfit, layernorm, lora, ia3).
    """
    if name in BUILTIN_NAMES:
        raise ValueError(f"unregister_method cannot remove a builtin method, got {name=}")
    if METHODS.pop(name, None) is not None:
        forget_method(name)


def get_method(name: str) -> TuningMethod:
    """The method called ``name``: a builtin or registered one, else a plugin's.

    Raises:
        SpaceError: no such method (the message names a close match).
    """
    found = METHODS.get(name) or get_methods().get(name)
    if found is None:
        known = [*METHODS, *(n for n in get_methods() if n not in METHODS)]
        close = difflib.get_close_matches(str(name), known, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise SpaceError(f"method: unknown tuning method {name!r}{hint}; expected one of "
                         f"{', '.join(known)}")
    return found


def apply_method(model: nn.Module, groups: list[list[str]], params: dict[str, Any],
                 backbone: Any = None, label: str = "backbone") -> Tuned:
    """Freeze ``freeze_fraction``'s prefix of ``groups`` (once, for every method), then let the
    trial's method (``params["method"]``, default ``finetune``) mark what trains in the other
    groups; see :data:`~autotransfer.finetune.methods._base.Apply`. Whatever the method marks
    in the prefix is frozen again, so that the activation cache can serve it."""
    method = get_method(params.get("method", HYPERPARAMETERS["method"].default))
    frozen = freeze(model, groups, params["freeze_fraction"])
    new_groups = method.apply(model, groups, frozen, params, backbone, label)
    for name, param in model.named_parameters():
        if name in frozen:
            param.requires_grad_(False)
    return Tuned(frozen, groups if new_groups is None else new_groups)


def merge_method(model: nn.Module, params: dict[str, Any]) -> nn.Module:
    """``model`` with the adapters of ``params``'s method folded in (for export)."""
    method = get_method(params.get("method", HYPERPARAMETERS["method"].default))
    return model if method.merge is None else method.merge(model)
