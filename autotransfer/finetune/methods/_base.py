"""What a tuning method is: a name, its hyperparameters, how it marks what trains, how it
merges for export."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import nn

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


#: ``apply(model, groups, frozen, params, backbone, label) -> groups | None``: ``model`` is the
#: ``TransferModel`` (``body`` then ``head``) with ``freeze_fraction``'s prefix already frozen
#: (:func:`~autotransfer.finetune.methods.apply_method` does it once for every method: those
#: parameters have ``requires_grad=False``, every other one True); ``groups`` its body's layer
#: groups (names of ``model``), ``frozen`` the names of the frozen prefix, ``params`` the
#: trial's hyperparameters, ``backbone`` the loaded :class:`Backbone` (or None), ``label`` its
#: id for messages. It returns the groups as names of the model after it (adapters join the
#: group of the layer they adapt), or None when it added no parameter.
Apply = Callable[[nn.Module, list[list[str]], set[str], dict[str, Any], Any, str],
                 "list[list[str]] | None"]


@dataclass(frozen=True)
class TuningMethod:
    """One way to train a backbone's unfrozen layer groups.

    Attributes:
        name: its value of the ``method`` hyperparameter.
        help: one line: what trains.
        apply: marks what trains (``requires_grad``) outside the frozen prefix, in place, see
            :data:`Apply`. It adds nothing to the prefix (whatever it marks there is frozen
            again afterwards).
        hyperparameters: the hyperparameters only this method reads (sampled only in its
            trials), with defaults and valid ranges.
        merge: ``merge(model) -> model`` folds adapters into the layers they adapt, so that the
            exported model is the zoo's plain architecture; None when nothing needs folding.
        reference: the search adds a reference trial per backbone with this method (the
            space's default configuration with ``method`` set to it) when the space's
            ``method`` includes it and defaults to another; ``lora``'s is one.
        cost_follows_freezing: the backbone cost model scales a trial by its unfrozen share
            (True for ``finetune``: its frozen groups run forward only); False: a trial costs a
            full fine-tune's epochs whatever ``freeze_fraction`` (adapters and selective methods
            still backpropagate through the body).
    """

    name: str
    help: str
    apply: Apply = field(repr=False)
    hyperparameters: Mapping[str, Hyperparameter] = field(default_factory=dict)
    merge: Callable[[nn.Module], nn.Module] | None = field(default=None, repr=False)
    reference: bool = False
    cost_follows_freezing: bool = False


def owners(model: nn.Module) -> dict[str, nn.Module]:
    """Parameter name -> the module that holds it directly."""
    return {f"{prefix}.{name}" if prefix else name: module
            for prefix, module in model.named_modules()
            for name, _ in module.named_parameters(recurse=False)}


def selective(name: str, help: str,
              trains: Callable[[str, nn.Parameter, nn.Module], bool]) -> TuningMethod:
    """A method that trains the body parameters for which ``trains(name, param, owner)`` is
    true (in the unfrozen groups only), and the head; ``owner`` is the module holding it."""

    def apply(model: nn.Module, groups: list[list[str]], frozen: set[str],
              params: dict[str, Any], backbone: Any = None, label: str = "backbone") -> None:
        owner = owners(model)
        in_groups = {n for g in groups for n in g}
        for pname, param in model.named_parameters():
            if pname in in_groups and pname not in frozen:
                param.requires_grad_(bool(trains(pname, param, owner[pname])))

    return TuningMethod(name, help, apply)
