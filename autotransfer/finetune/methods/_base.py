"""What a tuning method is: a name, its hyperparameters, how it marks what trains, how it
merges for export."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from autotransfer.finetune.freezing import freeze
from autotransfer.space.hyperparameters import Hyperparameter


@dataclass
class Tuned:
    """What :attr:`TuningMethod.apply` left trainable.

    Attributes:
        frozen: the parameter names of the frozen prefix (``freeze_fraction``'s groups): they
            run in eval mode, and the activation cache may serve them.
        groups: the layer groups as names of the model after the method (an adapter's
            parameters join the group of the layer they adapt, so layer-wise lr decay applies).
            Only parameters with ``requires_grad`` train; names in no group are the head.
    """

    frozen: set[str]
    groups: list[list[str]]


#: ``apply(model, groups, params, backbone, label) -> Tuned``: ``model`` is the
#: ``TransferModel`` (``body`` then ``head``), ``groups`` its body's layer groups (names of
#: ``model``), ``params`` the trial's hyperparameters, ``backbone`` the loaded
#: :class:`Backbone` (or None), ``label`` its id for messages.
Apply = Callable[[nn.Module, list[list[str]], dict[str, Any], Any, str], Tuned]


@dataclass(frozen=True)
class TuningMethod:
    """One way to train a backbone's unfrozen layer groups.

    Attributes:
        name: its value of the ``method`` hyperparameter.
        help: one line: what trains.
        apply: marks what trains (``requires_grad``) in place, see :data:`Apply`. It must
            freeze ``freeze_fraction``'s prefix as :func:`~autotransfer.finetune.freezing.freeze`
            does and add nothing there.
        hyperparameters: the hyperparameters only this method reads (sampled only in its
            trials), with defaults and valid ranges.
        merge: ``merge(model) -> model`` folds adapters into the layers they adapt, so that the
            exported model is the zoo's plain architecture; None when nothing needs folding.
    """

    name: str
    help: str
    apply: Apply = field(repr=False)
    hyperparameters: Mapping[str, Hyperparameter] = field(default_factory=dict)
    merge: Callable[[nn.Module], nn.Module] | None = field(default=None, repr=False)


def owners(model: nn.Module) -> dict[str, nn.Module]:
    """Parameter name -> the module that holds it directly."""
    return {f"{prefix}.{name}" if prefix else name: module
            for prefix, module in model.named_modules()
            for name, _ in module.named_parameters(recurse=False)}


def selective(name: str, help: str,
              trains: Callable[[str, nn.Parameter, nn.Module], bool]) -> TuningMethod:
    """A method that trains the body parameters for which ``trains(name, param, owner)`` is
    true (in the unfrozen groups only), and the head; ``owner`` is the module holding it."""

    def apply(model: nn.Module, groups: list[list[str]], params: dict[str, Any],
              backbone: Any = None, label: str = "backbone") -> Tuned:
        frozen = freeze(model, groups, params["freeze_fraction"])
        owner = owners(model)
        in_groups = {n for g in groups for n in g}
        for pname, param in model.named_parameters():
            if pname in in_groups and pname not in frozen:
                param.requires_grad_(bool(trains(pname, param, owner[pname])))
        return Tuned(frozen, groups)

    return TuningMethod(name, help, apply)
