"""Tuning methods: how a trial trains the unfrozen groups (``method``), one registry entry each.

``freeze_fraction`` freezes a prefix of layer groups for every method, once, in
:func:`apply_method` (that prefix trains nothing and carries no adapter, so the frozen-feature
cache serves it); the method decides what trains in the other groups; the head always trains in
full at the head learning rate. The builtins (``builtin``: finetune, bitfit, layernorm) and the
``peft`` methods (``lora``, ``ia3``) are registered like a third party's::

    from autotransfer.finetune.methods import register_method, selective

    register_method(selective("biasnorm", "biases and norms",
                              lambda name, param, owner: name.endswith("bias")))

A plugin offers a method through the ``register_methods`` hook instead (then the CLI and every
worker process know it): ``register(selective(...))``.
"""

from autotransfer.finetune.methods._base import Tuned, TuningMethod, selective
from autotransfer.finetune.methods._registry import (
    METHODS,
    apply_method,
    get_method,
    merge_method,
    register_method,
    unregister_method,
)

__all__ = ["METHODS", "Tuned", "TuningMethod", "apply_method", "get_method", "merge_method",
           "register_method", "selective", "unregister_method"]
