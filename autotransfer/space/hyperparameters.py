"""The hyperparameters a search space may name: defaults, ranges and what each one does."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

#: The train-time augmentations (``augment``) the data layer implements.
AUGMENTATIONS = ("none", "flip", "crop_flip")

Scalar = bool | int | float | str | None


@dataclass(frozen=True)
class Hyperparameter:
    """A hyperparameter that the training loop understands, with its default and valid range."""

    default: Scalar
    help: str
    kind: type = float
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple[Scalar, ...] | None = None
    optional: bool = False  # None is a valid value
    #: whether the value changes what the frozen layers output (preprocessing, pooling); the
    #: activation cache keys on these. True unless declared otherwise, so that a new
    #: hyperparameter can never make the cache serve stale features (only miss).
    affects_features: bool = True
    #: the one modality whose preprocessing reads it (``image``, ``text``, ``audio``); None
    #: when every backbone's training uses it
    modality: str | None = None
    #: the one tuning method that reads it (``lora``); it is sampled only in trials of that
    #: method (:mod:`autotransfer.space.methods`); None when every method reads it
    method: str | None = None
    #: ``validate(value) -> why invalid | None`` for values no range describes (a method name)
    validate: Callable[[Any], str | None] | None = None

    def check(self, value: Any) -> str | None:
        """Why ``value`` is invalid, or None when it is valid."""
        if value is None and self.optional:
            return None
        if self.validate is not None:
            return self.validate(value)
        if self.choices is not None:
            return None if value in self.choices else f"must be one of {list(self.choices)}"
        if isinstance(value, str) and _is_number(value):
            return f"must be a number, got the string {value!r}; write it without quotes"
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"must be a number, got {value!r}"
        if self.kind is int and int(value) != value:
            return f"must be an integer, got {value!r}"
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return f"must be {'>' if self.low_open else '>='} {self.low:g}, got {value!r}"
        if self.high is not None and (value >= self.high if self.high_open else value > self.high):
            return f"must be {'<' if self.high_open else '<='} {self.high:g}, got {value!r}"
        return None


HYPERPARAMETERS: dict[str, Hyperparameter] = {
    "freeze_fraction": Hyperparameter(
        0.0, "fraction of the backbone's layer groups frozen, input first (1 = linear probe)",
        low=0.0, high=1.0, affects_features=False,
    ),
    "method": Hyperparameter(
        "finetune", "how the unfrozen groups train: finetune (every parameter), lora, bitfit "
        "(biases), layernorm (normalisation parameters), ia3; the head always trains",
        kind=str, affects_features=False, validate=lambda v: _check_method(v),
    ),
    "lora_rank": Hyperparameter(
        8, "LoRA: rank r of each low-rank update", kind=int, low=1, high=1024,
        affects_features=False, method="lora",
    ),
    "lora_alpha": Hyperparameter(
        16.0, "LoRA: scaling alpha (the update is scaled by alpha / r)", low=0.0, low_open=True,
        affects_features=False, method="lora",
    ),
    "lora_dropout": Hyperparameter(
        0.0, "LoRA: dropout on the adapter's input", low=0.0, high=1.0, high_open=True,
        affects_features=False, method="lora",
    ),
    "lr": Hyperparameter(
        1e-3, "learning rate of the last body group", low=0.0, low_open=True,
        affects_features=False,
    ),
    "head_lr_multiplier": Hyperparameter(
        10.0, "the head trains at lr * head_lr_multiplier", low=0.0, low_open=True,
        affects_features=False,
    ),
    "layer_decay": Hyperparameter(
        1.0, "body group i of n trains at lr * layer_decay ** (n - 1 - i)",
        low=0.0, high=1.0, low_open=True, affects_features=False,
    ),
    "weight_decay": Hyperparameter(
        0.01, "AdamW weight decay (not on 1-D parameters)", low=0.0, affects_features=False
    ),
    "batch_size": Hyperparameter(
        32, "training batch size", kind=int, low=1, affects_features=False
    ),
    "label_smoothing": Hyperparameter(
        0.1, "label smoothing of the cross-entropy loss", low=0.0, high=1.0, high_open=True,
        affects_features=False,
    ),
    "augment": Hyperparameter(
        "flip", "train-time augmentation", kind=str, choices=AUGMENTATIONS,
        modality="image",
    ),
    "warmup_fraction": Hyperparameter(
        0.1, "fraction of the steps spent warming the lr up before the cosine decay",
        low=0.0, high=1.0, high_open=True,
        affects_features=False,
    ),
    "dropout": Hyperparameter(
        0.0, "dropout before the linear head", low=0.0, high=1.0, high_open=True,
        affects_features=False,
    ),
    "average_checkpoints": Hyperparameter(
        0, "keep the k best epoch ends of a trial by validation score and average them "
        "greedily, one added only if validation does not drop (Wortsman et al., 2022, greedy "
        "soup); the trial scores the average; 0: off", kind=int, low=0, high=100,
        affects_features=False,
    ),
    "image_size": Hyperparameter(
        None, "input side in pixels (default: the backbone's pretraining size)",
        kind=int, low=16, high=1024, optional=True, modality="image",
    ),
    "max_length": Hyperparameter(
        128, "text: tokens kept per text (longer texts are truncated)", kind=int, low=8,
        high=8192, modality="text",
    ),
    "pooling": Hyperparameter(
        "mean", "text: features are the mean of the token states, or the first token's "
        "(the last token's for decoder-only models)", kind=str, choices=("mean", "cls"),
        modality="text",
    ),
    "clip_seconds": Hyperparameter(
        5.0, "audio: clips are cut or zero-padded to this length", low=0.1, high=60.0,
        modality="audio",
    ),
}


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _check_method(value: Any) -> str | None:
    from autotransfer.space.method_names import check_method_name

    return check_method_name(value)


def for_method(params: dict[str, Any]) -> dict[str, Any]:
    """``params`` without the hyperparameters that only another tuning method reads (a
    ``finetune`` trial lists no ``lora_rank``); unknown names are kept."""
    method = params.get("method", HYPERPARAMETERS["method"].default)
    return {name: value for name, value in params.items()
            if name not in HYPERPARAMETERS or HYPERPARAMETERS[name].method in (None, method)}


def for_modality(params: dict[str, Any], modality: str) -> dict[str, Any]:
    """``params`` without the hyperparameters that only another modality reads (an image
    model's ``best.yaml`` lists no ``max_length``); unknown names are kept."""
    return {name: value for name, value in params.items()
            if name not in HYPERPARAMETERS
            or HYPERPARAMETERS[name].modality in (None, modality)}


def defaults() -> dict[str, Scalar]:
    """Every hyperparameter at its default value (a new dict each call)."""
    return {name: h.default for name, h in HYPERPARAMETERS.items()}
