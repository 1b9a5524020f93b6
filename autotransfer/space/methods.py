"""The names of the tuning methods a search space may choose (``method``), their
hyperparameters and traits.

What a method *does* (which parameters train, how adapters merge for export) lives in
:mod:`autotransfer.finetune.methods`; this layer only knows the names, so that a search space
is validated without loading torch. :func:`autotransfer.finetune.methods.register_method`
declares a new method here too, and so does a plugin's ``register_methods`` hook
(:func:`declare_plugin_methods`, asked when a space names a method or hyperparameter that is not
known yet, so that the plugins load only then).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from autotransfer.contract.collect import get_methods, on_reset
from autotransfer.space.hyperparameters import HYPERPARAMETERS, Hyperparameter
from autotransfer.space.method_names import (
    BUILTIN_METHODS,
    METHOD_NAMES,
    METHOD_TRAITS,
    MethodTraits,
    check_method_name,
    method_traits,
)

#: the method names declared from a plugin's ``register_methods`` hook (forgotten when the
#: plugins change: ``contract.collect.reset_registry``)
_FROM_PLUGINS: set[str] = set()


def declare_method(name: str, help: str,
                   hyperparameters: Mapping[str, Hyperparameter] | None = None,
                   traits: MethodTraits | None = None) -> None:
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
    METHOD_TRAITS[name] = traits or MethodTraits()


def forget_method(name: str) -> None:
    """Undo :func:`declare_method` (a plugin that is gone; a test's method)."""
    METHOD_NAMES.pop(name, None)
    METHOD_TRAITS.pop(name, None)
    for key in [k for k, h in HYPERPARAMETERS.items() if h.method == name]:
        del HYPERPARAMETERS[key]


def traits_of(method: Any) -> MethodTraits:
    """The :class:`MethodTraits` of a ``TuningMethod`` (read by attribute: this layer does not
    import the finetune layer)."""
    return MethodTraits(reference=bool(getattr(method, "reference", False)),
                        cost_follows_freezing=bool(getattr(method, "cost_follows_freezing",
                                                           False)))


def declare_plugin_methods() -> None:
    """Declare the methods that the loaded plugins offer through ``register_methods`` (loading
    the plugins first); a name already declared (a builtin) wins."""
    for name, method in get_methods().items():
        if name not in METHOD_NAMES:
            declare_method(name, method.help, method.hyperparameters, traits_of(method))
            _FROM_PLUGINS.add(name)


def _forget_plugin_methods() -> None:
    """Forget the methods declared from plugins (the plugins changed: ``reset_registry``)."""
    for name in sorted(_FROM_PLUGINS):
        forget_method(name)
    _FROM_PLUGINS.clear()


on_reset(_forget_plugin_methods)


def names_known(names: list[str], methods: list[Any]) -> bool:
    """Whether every hyperparameter name and method value is declared (else a plugin's
    ``register_methods`` may declare them: :func:`declare_plugin_methods`)."""
    return all(n in HYPERPARAMETERS for n in names) and all(m in METHOD_NAMES for m in methods)


__all__ = ["BUILTIN_METHODS", "METHOD_NAMES", "METHOD_TRAITS", "MethodTraits",
           "check_method_name", "declare_method", "declare_plugin_methods", "forget_method",
           "method_traits", "names_known", "traits_of"]
