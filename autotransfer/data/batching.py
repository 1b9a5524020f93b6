"""Batches of encoded inputs (tensors, or dicts of tensors), whatever the modality."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # torch loads on first use: listing backbones and zoos never needs it
    import torch


def take(inputs: Any, index: torch.Tensor) -> Any:
    """Rows ``index`` of a tensor, or of every tensor in a dict (text ids, audio features)."""
    if isinstance(inputs, dict):
        return {key: value[index] for key, value in inputs.items()}
    return inputs[index]


def iterate_batches(
    images: Any,
    labels: torch.Tensor,
    batch_size: int,
    *,
    shuffle: bool,
    generator: torch.Generator | None = None,
) -> Iterator[tuple[Any, torch.Tensor]]:
    """Batches of ``(encoded inputs, labels)``, in a seeded random order when ``shuffle``.

    ``images`` is what a preprocess's ``encode`` returned: a tensor or a dict of tensors.
    """
    import torch

    n = len(labels)
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    for start in range(0, n, batch_size):
        index = order[start : start + batch_size]
        yield take(images, index), labels[index]
