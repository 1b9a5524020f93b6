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


class WarmupCosine:
    """The learning-rate factor of step ``step`` (from 0): a linear warm-up to 1 over
    ``warmup_steps``, then a cosine decay to 0 at ``total_steps`` (Loshchilov & Hutter, 2017,
    "SGDR: Stochastic Gradient Descent with Warm Restarts", ICLR, arXiv 1608.03983, eq. 5 with
    one cycle). A callable object rather than a function, so that ``LambdaLR.state_dict``
    keeps its plan (a checkpoint of a continued trial holds its re-planned length).

    A freeze-thaw continuation re-plans it (:meth:`replan`): the cosine is stretched over the
    new total from the current step on, so the factor continues as if the trial had been
    planned that long from the start. For a doubled length it rises at once from about 0 to
    the planned cosine's value there (0.5 at the old end), then decays to 0 at the new end: a
    warm restart whose peak is the longer schedule's value, never the full rate. The warm-up
    is never repeated: it ended long before a continuation.
    """

    def __init__(self, total_steps: int, warmup_steps: int) -> None:
        self.total_steps = int(total_steps)
        self.warmup_steps = int(warmup_steps)

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        progress = (step - self.warmup_steps) / max(1, self.total_steps - self.warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    def replan(self, total_steps: int) -> None:
        """Plan the cosine to end at ``total_steps`` instead (the warm-up unchanged).

        Raises:
            ValueError: ``total_steps`` at or before the end of the warm-up.
        """
        if total_steps <= self.warmup_steps:
            raise ValueError(f"total_steps must be after the warm-up ({self.warmup_steps} "
                             f"steps), got {total_steps=}")
        self.total_steps = int(total_steps)


def warmup_cosine(total_steps: int, warmup_steps: int) -> Callable[[int], float]:
    """lr factor: linear warmup to 1, then cosine decay to 0 at ``total_steps``
    (a :class:`WarmupCosine`)."""
    return WarmupCosine(total_steps, warmup_steps)
