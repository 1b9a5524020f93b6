"""A local weights file for a timm model, loaded only when it fits the architecture.

timm's own reader (``timm.models.load_state_dict``) opens the file (safetensors or a torch
save), unwraps a checkpoint dict (``state_dict``, ``model``, their EMA twins: a Lightning
``.ckpt``) and removes DataParallel's ``module.`` and ``torch.compile``'s ``_orig_mod.``.
Here a prefix that every key shares (a Lightning module's ``model.``) is removed too when that
is what makes the names match, the pretrained classifier is left out (the backbone has none),
and every tensor is cast to the model's dtype (a float16 save trains in the search's float32).
Anything else that does not match (a missing tensor, an unexpected one, another shape) refuses
the file in one line with the counts: a network never trains from random weights that its
user believes pretrained.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from autotransfer.plugin import BackboneError, first_line

if TYPE_CHECKING:
    from torch import nn


def load_local_weights(model: nn.Module, path: Path, label: str) -> None:
    """Load the weights file ``path`` into ``model`` (created with ``num_classes=0``).

    Raises:
        BackboneError: the file cannot be read, or its tensors do not fit ``model`` (the
            message names the file and counts the missing, unexpected and misshapen tensors).
    """
    from timm.models import load_state_dict

    try:
        state = load_state_dict(str(path), use_ema=False)
    except Exception as exc:  # not a weights file, a pickle that weights_only refuses, ...
        raise BackboneError(f"{label}: could not read weights file {path} ({type(exc).__name__}: "
                            f"{first_line(exc)})") from None
    target = model.state_dict()
    state = _without_classifier(_unprefixed(_tensors(state), target), model)
    fits = {k: v for k, v in state.items() if k in target and v.shape == target[k].shape}
    counted = [k for k in target if not k.endswith("num_batches_tracked")]  # BatchNorm's step
    missing = [k for k in counted if k not in fits]
    unexpected = [k for k in state if k not in target]
    misshapen = [k for k in state if k in target and k not in fits]
    if missing or unexpected or misshapen:
        raise BackboneError(f"{label}: weights file {path} does not fit the model: "
                            + _counts(len(counted) - len(missing), len(counted), missing,
                                      unexpected, misshapen)
                            + "; give this architecture's file, or pretrained: false for "
                            "random weights")
    model.load_state_dict({k: v.to(target[k].dtype) for k, v in fits.items()}, strict=False)


def _tensors(state: dict[str, Any]) -> dict[str, Any]:
    import torch

    return {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}


def _unprefixed(state: dict[str, Any], target: dict[str, Any]) -> dict[str, Any]:
    """``state`` without the first name part that all its keys share (``model.``), when no key
    matches as it is and the names match without it."""
    firsts = {k.split(".", 1)[0] for k in state}
    if len(firsts) != 1 or any(k in target for k in state) or not all("." in k for k in state):
        return state
    stripped = {k.split(".", 1)[1]: v for k, v in state.items()}
    return stripped if any(k in target for k in stripped) else state


def _without_classifier(state: dict[str, Any], model: nn.Module) -> dict[str, Any]:
    """``state`` without the pretrained classifier's tensors, which a backbone has no place for."""
    names = model.pretrained_cfg.get("classifier") or ()
    heads = tuple(f"{n}." for n in ((names,) if isinstance(names, str) else names))
    target = model.state_dict()
    return {k: v for k, v in state.items() if k in target or not k.startswith(heads)}


def _counts(fit: int, total: int, missing: list[str], unexpected: list[str],
            misshapen: list[str]) -> str:
    parts = [f"{fit} of {total} tensors fit"]
    for n, what in ((missing, "missing"), (unexpected, "unexpected"),
                    (misshapen, "of another shape")):
        if n:
            parts.append(f"{len(n)} {what} (first: {n[0]})")
    return ", ".join(parts)
