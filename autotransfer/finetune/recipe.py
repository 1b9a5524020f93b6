"""Training recipes: what one training step is, beside the tuning method (what trains).

A :class:`TrainingRecipe` says which batches a step draws (:meth:`~TrainingRecipe.batches`, the
labelled training split by default; a second stream such as unlabelled data goes there), the
loss of a batch (:meth:`~TrainingRecipe.loss`), and what happens after each epoch and after the
last one (its ``steps``, e.g. :class:`~autotransfer.finetune.averaging.GreedySoup`). The
:class:`~autotransfer.finetune.trainer.Trainer` runs the loop (optimiser, schedule, precision,
evaluation) and asks its recipe for these. :class:`Supervised` (cross-entropy with label
smoothing) is the default; :func:`recipe_for` builds a trial's recipe from its hyperparameters:
the one its search space names (``recipe:``, :mod:`autotransfer.space.recipes`), a builtin, a
plugin's (hook ``register_recipes``) or one by import path.

A recipe that adds a loss term is one subclass::

    class HeadL2(Supervised):
        def loss(self, trainer, batch):
            head = trainer.model.head[1].weight
            return super().loss(trainer, batch) + 1e-3 * head.pow(2).sum()

    Trainer(backbone, data, params, device=device, recipe=HeadL2(label_smoothing=0.1))

and a search space names it, ``recipe: {factory: "my_package.recipes:HeadL2"}``, or by the
name a plugin registers it under (``register_recipes``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch import nn

from autotransfer.errors import SpaceError
from autotransfer.finetune.averaging import GreedySoup
from autotransfer.finetune.results import EpochResult, TrainResult
from autotransfer.space.factories import accepted
from autotransfer.space.recipes import DEFAULT, resolve


@dataclass
class Batch:
    """One training batch, ready for the model.

    Attributes:
        inputs: the model input on the trainer's device (a tensor ``(B, ...)`` or a mapping of
            them), or the frozen prefix's activations when the cache serves it.
        labels: class indices ``(B,)`` on the device; None in a stream without labels.
        stream: which batch stream it came from (``"train"`` for the labelled split).
    """

    inputs: Any
    labels: torch.Tensor | None
    stream: str = "train"

    def __len__(self) -> int:
        if self.labels is not None:
            return len(self.labels)
        return len(next(iter(self.inputs.values())) if isinstance(self.inputs, dict)
                   else self.inputs)


class EpochStep(Protocol):
    """What a recipe does after each epoch and after the last one (keeping checkpoints,
    averaging them). ``state_dict`` and ``load_state_dict`` carry it through a checkpoint."""

    def after_epoch(self, trainer: Any, result: EpochResult) -> None: ...

    def after_fit(self, trainer: Any, result: TrainResult) -> None: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


@dataclass
class TrainingRecipe:
    """What a training step is; subclass and override what differs (see the module docstring).

    Attributes:
        steps: run after each epoch and after the last one, in order.
    """

    steps: list[EpochStep] = field(default_factory=list)

    def batches(self, trainer: Any, epoch: int) -> Iterator[Batch]:
        """The batches of one epoch (``epoch`` counts from 1): the labelled training split,
        shuffled by the trainer's generator (:meth:`Trainer.train_batches`)."""
        return trainer.train_batches()

    def loss(self, trainer: Any, batch: Batch) -> torch.Tensor:
        """The scalar loss of ``batch`` (run under the trainer's autocast)."""
        raise NotImplementedError

    def after_epoch(self, trainer: Any, result: EpochResult) -> None:
        """Called once an epoch is trained and validated, before the trainer's ``on_epoch``."""
        for step in self.steps:
            step.after_epoch(trainer, result)

    def after_fit(self, trainer: Any, result: TrainResult) -> None:
        """Called after the last epoch, before the test split is scored."""
        for step in self.steps:
            step.after_fit(trainer, result)

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint keeps of the recipe (its steps' state)."""
        return {"steps": [step.state_dict() for step in self.steps]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for step, saved in zip(self.steps, state.get("steps", []), strict=False):
            step.load_state_dict(saved)


@dataclass
class Supervised(TrainingRecipe):
    """Cross-entropy on the labelled training split (the default recipe).

    Attributes:
        label_smoothing: of the cross-entropy (Szegedy et al., 2016), in ``[0, 1)``.
    """

    label_smoothing: float = 0.0

    def __post_init__(self) -> None:
        self.loss_fn = nn.CrossEntropyLoss(label_smoothing=self.label_smoothing)

    def loss(self, trainer: Any, batch: Batch) -> torch.Tensor:
        return self.loss_fn(trainer.forward(batch.inputs), batch.labels)


#: the builtin recipes by the name a space gives them (:data:`autotransfer.space.recipes.
#: BUILTIN_RECIPES` holds their help)
BUILTIN: dict[str, type[TrainingRecipe]] = {"supervised": Supervised}


def recipe_for(params: dict[str, Any], *,
               average_epochs: list[int] | None = None) -> TrainingRecipe:
    """The recipe of a trial's hyperparameters: the space's recipe (``params["recipe"]``, a
    name or ``{type | factory, **settings}``, :mod:`autotransfer.space.recipes`; absent:
    :class:`Supervised`) with its ``label_smoothing``, and greedy checkpoint averaging after
    the recipe's own steps when ``average_checkpoints`` is above 0 (``average_epochs``, when
    given, replays the epochs a search's trial averaged: a refit without a validation split).

    Raises:
        SpaceError: an unknown recipe, settings its factory rejects, or a factory that does not
            return a :class:`TrainingRecipe`.
    """
    k = int(params.get("average_checkpoints") or 0)
    recipe = _built(params.get("recipe") or DEFAULT, float(params["label_smoothing"]))
    if k > 0:
        recipe.steps.append(GreedySoup(k, epochs=average_epochs))
    return recipe


def _built(value: Any, label_smoothing: float) -> TrainingRecipe:
    """The recipe named by ``value`` (see :func:`recipe_for`)."""
    try:
        name, factory, settings = resolve(value)
        if factory is None:
            factory = BUILTIN[name]
        recipe = factory(**{**accepted(factory, {"label_smoothing": label_smoothing}),
                            **settings})
    except (TypeError, ValueError) as exc:
        raise SpaceError(f"recipe: {exc}") from None
    if not isinstance(recipe, TrainingRecipe):
        raise SpaceError(f"recipe: {name}: the factory returned a {type(recipe).__name__}, not "
                         "a TrainingRecipe")
    return recipe
