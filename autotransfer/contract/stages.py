"""A body cut into stages, so that a frozen prefix runs once: the contract of ``Backbone.split``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn


class Stage(nn.Module):
    """One step of a body cut into stages: ``fn(x)``, owning the modules and parameters it uses.

    For :func:`sequential_split`, when a step is not a module of its own (timm's
    ``conv_stem`` then ``bn1``; a ViT's patch embedding, class token and positions).
    """

    def __init__(self, fn: Callable[[Any], Any], modules: dict[str, nn.Module],
                 params: dict[str, nn.Parameter | None] | None = None) -> None:
        super().__init__()
        self.fn = fn
        for name, module in modules.items():
            self.add_module(name, module)
        for name, param in (params or {}).items():
            if param is not None:
                self.register_parameter(name, param)

    def forward(self, x: Any) -> Any:
        return self.fn(x)


def sequential_split(
    model: nn.Module, groups: list[list[str]], stages: list[nn.Module],
    head: Callable[[Any], Any],
) -> Callable[[int], tuple[nn.Module, Callable[[Any], Any]] | None]:
    """A ``Backbone.split`` for a body that runs ``stages`` in order, then ``head``.

    ``split(k)`` cuts after the last stage holding a parameter of the first ``k`` groups. It
    returns None when that cut is impossible: a stage before it holds a parameter that is not
    in the first ``k`` groups (it trains, so its output cannot be cached).

    Args:
        model: the backbone's ``model``; ``groups`` name its parameters.
        groups: the backbone's layer groups, input first.
        stages: modules (or :class:`Stage`) whose composition, followed by ``head``, is
            ``model``'s forward.
        head: the rest after the stages (pooling and the like), e.g. timm's ``forward_head``.
    """
    by_name = dict(model.named_parameters())
    owned = [{id(p) for p in stage.parameters()} for stage in stages]

    def split(k: int) -> tuple[nn.Module, Callable[[Any], Any]] | None:
        frozen = {id(by_name[n]) for group in groups[:k] for n in group}
        holding = [i for i, ids in enumerate(owned) if ids & frozen]
        if not holding:
            return None
        cut = holding[-1] + 1
        if any(ids - frozen for ids in owned[:cut]):
            return None
        rest = nn.Sequential(*stages[cut:])
        return nn.Sequential(*stages[:cut]), lambda x: head(rest(x))

    return split
