"""Optimiser parameter groups (layer-wise lr decay, no weight decay on 1-D tensors), schedule."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import torch
from torch import nn


def param_groups(
    model: nn.Module,
    groups: list[list[str]],
    *,
    lr: float,
    head_lr_multiplier: float = 1.0,
    layer_decay: float = 1.0,
    weight_decay: float = 0.0,
) -> list[dict[str, Any]]:
    """Optimizer parameter groups for the trainable parameters of ``model``.

    Body group ``i`` of ``n`` trains at ``lr * layer_decay ** (n - 1 - i)``; the head (what no
    group claims) at ``lr * head_lr_multiplier``. Parameters with fewer than two dimensions
    (biases, norms) get no weight decay. Each group carries its ``lr_scale`` and a ``name``.

    Raises:
        ValueError: ``lr <= 0`` or ``layer_decay`` outside (0, 1].
    """
    if lr <= 0:
        raise ValueError(f"lr must be > 0, got {lr=}")
    if not 0.0 < layer_decay <= 1.0:
        raise ValueError(f"layer_decay must be in (0, 1], got {layer_decay=}")
    index_of = {name: i for i, group in enumerate(groups) for name in group}
    n = len(groups)
    buckets: dict[tuple[str, bool], list[torch.nn.Parameter]] = defaultdict(list)
    scales: dict[str, float] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        if name in index_of:
            key = f"group{index_of[name]}"
            scales[key] = layer_decay ** (n - 1 - index_of[name])
        else:
            key = "head"
            scales[key] = head_lr_multiplier
        buckets[(key, param.ndim <= 1)].append(param)
    result = []
    for (key, no_decay), params in buckets.items():
        result.append(
            {
                "name": f"{key}.{'no_decay' if no_decay else 'decay'}",
                "params": params,
                "lr": lr * scales[key],
                "lr_scale": scales[key],
                "weight_decay": 0.0 if no_decay else weight_decay,
            }
        )
    return result


def warmup_cosine(total_steps: int, warmup_steps: int) -> Callable[[int], float]:
    """lr factor: linear warmup to 1, then cosine decay to 0 at ``total_steps``."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor
