"""Where a trial runs: device resolution, peak memory, moving batches."""

from __future__ import annotations

import resource
import sys
from typing import Any

import torch

from autotransfer.errors import OptionError


def resolve_device(device: str = "auto") -> torch.device:
    """``auto`` picks CUDA when there is one; ``cuda`` without a GPU is a ValueError.

    Raises:
        ValueError: not ``auto``, ``cpu``, ``cuda`` or ``cuda:N``, or a GPU asked for that
            this machine does not have.
    """
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError:
        raise ValueError(f"device must be auto, cpu, cuda or cuda:N, got {device!r}") from None
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r} asked for, but no CUDA GPU is available")
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise ValueError(
                f"device {device!r} asked for, but only {torch.cuda.device_count()} GPU(s) exist"
            )
    elif resolved.type != "cpu":
        raise ValueError(f"device must be auto, cpu, cuda or cuda:N, got {device!r}")
    return resolved


def device_for(device: str) -> torch.device:
    """:func:`resolve_device` for an API argument named ``device``.

    Raises:
        OptionError: naming ``device``, with what :func:`resolve_device` found wrong.
    """
    try:
        return resolve_device(device)
    except ValueError as exc:
        raise OptionError("device", f": {exc}") from None


def peak_memory_mib(device: torch.device) -> float:
    """Peak memory in MiB (2**20 bytes): of this trial on CUDA (``max_memory_allocated``, reset
    between trials); the process's peak resident set size on CPU (``getrusage``)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 2**10


def peak_memory_mb(device: torch.device) -> float:
    """Deprecated name of :func:`peak_memory_mib` (the value was always MiB); one release."""
    import warnings

    warnings.warn("peak_memory_mb is deprecated; use peak_memory_mib (the same MiB value)",
                  FutureWarning, stacklevel=2)
    return peak_memory_mib(device)


def to_device(inputs: Any, device: torch.device) -> Any:
    """``inputs`` (a tensor, or a dict of tensors as a tokenizer returns) moved to ``device``
    without blocking the host."""
    if isinstance(inputs, dict):
        return {key: value.to(device, non_blocking=True) for key, value in inputs.items()}
    return inputs.to(device, non_blocking=True)
