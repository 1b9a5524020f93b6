"""Freezing the first layer groups: how many, ``requires_grad``, eval mode while training."""

from __future__ import annotations

import math

from torch import nn


def n_frozen_groups(n_groups: int, freeze_fraction: float) -> int:
    """``floor(freeze_fraction * n_groups)``: how many groups, input first, are frozen."""
    if not 0.0 <= freeze_fraction <= 1.0:
        raise ValueError(f"freeze_fraction must be in [0, 1], got {freeze_fraction=}")
    return math.floor(freeze_fraction * n_groups + 1e-9)


def freeze(model: nn.Module, groups: list[list[str]], freeze_fraction: float) -> set[str]:
    """Freeze the first ``floor(freeze_fraction * len(groups))`` groups; return their names.

    Frozen parameters get ``requires_grad=False``; call :func:`train_mode` instead of
    ``model.train()`` so that the frozen part also stays in eval mode.
    """
    frozen = {n for g in groups[: n_frozen_groups(len(groups), freeze_fraction)] for n in g}
    for name, param in model.named_parameters():
        param.requires_grad_(name not in frozen)
    return frozen


def frozen_modules(model: nn.Module, frozen: set[str]) -> list[nn.Module]:
    """The largest sub-modules whose parameters are all frozen (to run in eval mode)."""
    found: list[nn.Module] = []

    def visit(prefix: str, module: nn.Module) -> None:
        names = [prefix + n for n, _ in module.named_parameters()]
        if names and all(n in frozen for n in names):
            found.append(module)
            return
        for child_name, child in module.named_children():
            visit(f"{prefix}{child_name}.", child)

    if frozen:
        visit("", model)
    return found


def fix_batch_norm(model: nn.Module) -> int:
    """Put every BatchNorm layer of ``model`` in eval mode: it normalises with its running
    (pretrained) statistics and leaves them unchanged, while its affine weights still train.
    For ``batch_size: 1``, where a batch's statistics are those of one sample (PyTorch refuses
    them where a channel holds one value). Returns the number of such layers.
    """
    found = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for module in found:
        module.eval()
    return len(found)


def train_mode(model: nn.Module, frozen: set[str]) -> None:
    """``model.train()``, except that fully frozen sub-modules stay in eval mode.

    Their BatchNorm statistics and dropout are then fixed, so their output is deterministic.
    """
    model.train()
    for module in frozen_modules(model, frozen):
        module.eval()
