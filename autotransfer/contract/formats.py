"""Native model formats: how a fine-tuned model is saved in its library's own layout, and
loaded back for prediction.

A zoo offers a format through the hook ``register_model_formats(register)``; the builtin timm
and Hugging Face zoos register theirs, exactly as a third-party zoo would. ``autotransfer
train`` (and ``search --keep-best``) picks the first format whose ``can_export`` accepts the
model's body; ``predict`` picks the format named by ``library`` (and ``modality``) in the
model directory's ``autotransfer.json``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class ModelFormat:
    """One native format.

    Attributes:
        library: its name in ``autotransfer.json`` (``"timm"``, ``"transformers"``).
        can_export: ``can_export(body, modality) -> bool``: whether this format saves a model
            whose body (the ``Backbone.model``) is ``body``.
        export: ``export(model, preprocess, out, classes) -> dict``: write ``model`` (a
            ``TransferModel``: body then linear head, on the CPU in eval mode) into the folder
            ``out``; returns what ``load`` needs besides the files, at least ``preprocess``
            (a JSON-ready mapping), stored in ``autotransfer.json``.
        load: ``load(directory, meta, trust_remote_code) -> (model, preprocess)``: the network
            mapping a batch to logits ``(B, n_classes)``, and the matching ``Preprocess``.
        modality: the one modality it serves, or None for any; lets two zoos share a
            ``library`` name (text and audio transformers).
    """

    library: str
    can_export: Callable[[Any, str], bool] = field(repr=False)
    export: Callable[..., dict[str, Any]] = field(repr=False)
    load: Callable[..., tuple[Any, Any]] = field(repr=False)
    modality: str | None = None


def save_linear_head(linear: Any, out: Path, name: str = "head.safetensors") -> None:
    """Save a ``Linear`` head's ``weight`` and ``bias`` as safetensors (for formats whose
    library saves the body only)."""
    import safetensors.torch

    safetensors.torch.save_file(
        {"weight": linear.weight.detach().contiguous(), "bias": linear.bias.detach().contiguous()},
        Path(out) / name,
    )


def load_linear_head(linear: Any, directory: Path, name: str = "head.safetensors") -> None:
    """Load what :func:`save_linear_head` wrote into ``linear`` (strict)."""
    import safetensors.torch

    linear.load_state_dict(safetensors.torch.load_file(Path(directory) / name), strict=True)


def check_same_output(native: Any, model: Any, x: Any, label: str) -> None:
    """Raise ``BackboneError`` unless ``native(x)`` reproduces ``model(x)`` (within 1e-4): an
    export that would predict differently is an error, not a surprise later."""
    import torch

    from autotransfer.errors import BackboneError

    with torch.inference_mode():
        expected, got = model(x), native(x)
    if got.shape != expected.shape or not torch.allclose(got, expected, rtol=1e-4, atol=1e-4):
        diff = (got - expected).abs().max().item() if got.shape == expected.shape else "shape"
        raise BackboneError(
            f"{label}: the exported network does not reproduce the fine-tuned one "
            f"(max difference {diff}); it cannot be exported natively"
        )
