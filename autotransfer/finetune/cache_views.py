"""The frozen-prefix cache under augmentation: which views of the training split it holds.

Validation and test inputs are never augmented: one view, as without augmentation. For the
training split, the preprocess says how random ``to_input(train=True)`` is:

- **not random** (``augment: none``, text, audio): one view, as before.
- **finite** (``training_views`` is an int; ``flip``: 2, as is and mirrored): every view is
  cached, and each epoch draws one view per sample with ``draw_views``, which makes the very
  generator calls that live augmentation makes. With the same seed a cached trial trains on
  exactly the inputs that the uncached one would.
- **continuous** (``training_views`` is None or absent; ``crop_flip``, or any random
  ``to_input`` a zoo declares with ``random_in_training``): a *bank* of K views per sample,
  each made by ``to_input(train=True)`` with a fixed seed (so every trial and worker that
  matches shares it through the memory and disk tiers), and each epoch draws one of the K per
  sample. This is an approximation: live augmentation draws a fresh crop every epoch, a bank
  reuses K. K is ``--cache-views`` (default :data:`DEFAULT_BANK_VIEWS`), at most the number of
  epochs (a trial sees at most that many views of a sample); 0 turns the bank off (live
  augmentation, no cache for such trials).

All views of a split form one cache entry of shape ``(V, N, ...)``, bounded like any other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

#: Default K of a bank of augmented views (``--cache-views``, ``AUTOTRANSFER_CACHE_VIEWS``).
DEFAULT_BANK_VIEWS = 8
BANK_SEED = 1_000_003  # view k of a bank uses torch.Generator().manual_seed(BANK_SEED + k)


@dataclass(frozen=True)
class ViewPlan:
    """How a trial's training split is cached: ``count`` views, finite or a bank.

    Attributes:
        augment: the augmentation's name, for messages and the key.
        count: the number of views held (V, or K for a bank).
        bank: True for a bank of random views (an approximation), False for every view.
    """

    augment: str
    count: int
    bank: bool

    @property
    def key(self) -> str:
        """What the cache key holds for these views (``cache.cache_key(views=...)``)."""
        return f"{self.augment}:{'bank' if self.bank else 'all'}{self.count}:{BANK_SEED}"

    def describe(self) -> str:
        """``flip: 2 views`` / ``crop_flip: bank of 8 views``, for ``activation_cache``."""
        plural = "s" if self.count != 1 else ""
        return f"{self.augment}: {'bank of ' if self.bank else ''}{self.count} view{plural}"

    def view_inputs(self, preprocess, device: torch.device) -> list:
        """For each view, ``to_input(rows)`` making its model input (for compute_activations)."""
        if not self.bank:
            return [lambda rows, v=v: preprocess.to_view(rows, v, device=device)
                    for v in range(self.count)]
        makers = []
        for k in range(self.count):
            generator = torch.Generator().manual_seed(BANK_SEED + k)
            makers.append(lambda rows, g=generator: preprocess.to_input(
                rows, device=device, train=True, generator=g))
        return makers

    def draw(self, preprocess, n: int, generator: torch.Generator | None) -> torch.Tensor:
        """The view of each of ``n`` samples for this step, int64 ``(n,)``."""
        if self.bank:
            return torch.randint(0, self.count, (n,), generator=generator)
        return preprocess.draw_views(n, generator)


def plan_views(preprocess, bank_views: int, epochs: int) -> ViewPlan | str | None:
    """The views to cache for the training split: None when training input is not random,
    a :class:`ViewPlan`, or why the cache cannot serve it (a short reason)."""
    if not getattr(preprocess, "random_in_training", True):
        return None
    augment = str(getattr(preprocess, "augment", "random"))
    finite = getattr(preprocess, "training_views", None)
    if isinstance(finite, int) and finite > 0:
        if not callable(getattr(preprocess, "draw_views", None)) or not callable(
                getattr(preprocess, "to_view", None)):
            return f"augment={augment} declares {finite} views without draw_views and to_view"
        return ViewPlan(augment, finite, bank=False)
    count = min(bank_views, epochs)
    if count < 1:
        return f"training input is random (augment={augment}) and cache_views is 0"
    return ViewPlan(augment, count, bank=True)


def stack_views(views: list[Any]) -> Any:
    """Per-view activations (tensors or dicts of tensors) -> one ``(V, N, ...)`` entry."""
    if isinstance(views[0], dict):
        return {k: torch.stack([v[k] for v in views]) for k in views[0]}
    return torch.stack(views)


def take_views(stacked: Any, views: torch.Tensor, rows: torch.Tensor) -> Any:
    """Row ``rows[i]`` under view ``views[i]`` of a ``(V, N, ...)`` entry."""
    if isinstance(stacked, dict):
        return {k: v[views.to(v.device), rows.to(v.device)] for k, v in stacked.items()}
    return stacked[views.to(stacked.device), rows.to(stacked.device)]
