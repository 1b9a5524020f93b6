"""The names of the tuning methods a search space may choose (``method``), and their
hyperparameters.

What a method *does* (which parameters train, how adapters merge for export) lives in
:mod:`autotransfer.finetune.methods`; this layer only knows the names, so that a search space
is validated without loading torch. :func:`autotransfer.finetune.methods.register_method`
declares a new method here too.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from autotransfer.space.hyperparameters import HYPERPARAMETERS, Hyperparameter
from autotransfer.space.method_names import BUILTIN_METHODS, METHOD_NAMES, check_method_name


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


__all__ = ["BUILTIN_METHODS", "METHOD_NAMES", "check_method_name", "declare_method"]
