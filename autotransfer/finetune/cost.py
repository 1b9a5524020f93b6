"""What a trained model costs to run: latency, throughput, parameters and size.

Measured once per trial after training, on the search's device, in float32 and eval mode (the
model as :func:`autotransfer.model.export.export_model` writes it and its zoo's library loads
it): ``latency_ms`` is the median of timed forward passes at batch 1 and the model's own input
size after warm-up passes (the smallest median of :data:`ROUNDS` rounds, since other processes
on the machine only ever add time); ``throughput`` is samples per second of forward passes at the
evaluation batch size; ``params_count`` counts every parameter, head included; ``size_mb`` is
the bytes of the state dict's tensors (what safetensors writes, less its small header), in
10**6 bytes. The number of timed passes is bounded by ``budget_s`` (at least 3 at batch 1 and
1 at the evaluation batch size), so that measuring stays a small share of a trial.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import torch

#: Timed passes at batch 1 (at most; fewer when the budget is short) and warm-up passes.
LATENCY_REPEATS = 30
WARMUP = 3
#: Rounds of batch-1 passes; the latency is the smallest of their medians.
ROUNDS = 3

#: (cache key, input shape) -> (latency_ms, throughput) of this process: the time of a forward
#: pass depends on the network and its input's shape, not on the weights, so trials of one
#: backbone at one input size share one measurement (and machine noise cannot put two of them
#: on a Pareto front at different latencies).
_TIMINGS: dict[tuple[Any, ...], tuple[float, float]] = {}


def _rows(inputs: Any, n: int) -> Any:
    """The first ``n`` rows of an encoded split (a tensor or a dict of tensors)."""
    if isinstance(inputs, dict):
        return {k: v[:n] for k, v in inputs.items()}
    return inputs[:n]


def _shape(x: Any) -> tuple[Any, ...]:
    if isinstance(x, dict):
        return tuple(sorted((k, tuple(v.shape)) for k, v in x.items()))
    return tuple(x.shape)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def weights_bytes(model: torch.nn.Module) -> int:
    """Bytes of the model's state dict, each storage counted once (tied weights share one)."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for tensor in model.state_dict().values():
        key = (tensor.untyped_storage().data_ptr(), tensor.storage_offset())
        if key not in seen:
            seen.add(key)
            total += tensor.numel() * tensor.element_size()
    return total


def time_forward(model: torch.nn.Module, x: Any, device: torch.device, *, repeats: int,
                 warmup: int = WARMUP, budget_s: float | None = None) -> list[float]:
    """Seconds of each of up to ``repeats`` forward passes of ``model`` on ``x`` after
    ``warmup`` untimed ones; stops early (after at least 1) when ``budget_s`` is spent."""
    times: list[float] = []
    with torch.inference_mode():
        for _ in range(warmup):
            model(x)
        _sync(device)
        start = time.perf_counter()
        for _ in range(repeats):
            began = time.perf_counter()
            model(x)
            _sync(device)
            times.append(time.perf_counter() - began)
            if budget_s is not None and time.perf_counter() - start > budget_s:
                break
    return times


def measure_cost(model: torch.nn.Module, preprocess: Any, data: Any, *, device: torch.device,
                 batch_size: int, budget_s: float = 1.0,
                 cache_key: tuple[Any, ...] | None = None) -> dict[str, float]:
    """``{latency_ms, throughput, params_count, size_mb}`` of a trained model.

    Args:
        model: the trained model (a :class:`~autotransfer.finetune.trainer.TransferModel`).
        preprocess: its configured preprocess (the trial's input size).
        data: the trial's :class:`~autotransfer.data.LabelledData`; inputs come from its
            validation split (train when it has none).
        device: the search's device.
        batch_size: the evaluation batch size (throughput's batch).
        budget_s: seconds the timed passes may take, split between batch 1 (two thirds) and
            the evaluation batch (one third); warm-up comes on top.
        cache_key: what identifies the network (e.g. the backbone id); with it, the timings
            of an earlier trial of the same network and input shape in this process are
            reused (only ``params_count`` and ``size_mb`` are counted again).
    """
    split = "val" if data.val is not None and len(data.val) else "train"
    inputs, labels = preprocess.encode(data, split)
    n = max(1, min(batch_size, len(labels)))
    was_training = model.training
    model.eval()
    model.to(device=device, memory_format=torch.contiguous_format)
    try:
        one = preprocess.to_input(_rows(inputs, 1), device=device)
        key = None if cache_key is None else (*cache_key, str(device), n, _shape(one))
        if key not in _TIMINGS:
            batch = preprocess.to_input(_rows(inputs, n), device=device)
            # the quietest of ROUNDS rounds: other processes only ever add time
            single = min(statistics.median(time_forward(
                model, one, device, repeats=LATENCY_REPEATS // ROUNDS,
                warmup=WARMUP if i == 0 else 0, budget_s=budget_s * 2 / 3 / ROUNDS))
                for i in range(ROUNDS))
            many = time_forward(model, batch, device, repeats=3, warmup=1,
                                budget_s=budget_s / 3)
            timing = (round(1000 * single, 4),
                      round(n / statistics.median(many), 1))
            if key is None:
                latency_ms, throughput = timing
            else:
                _TIMINGS[key] = timing
        if key is not None:
            latency_ms, throughput = _TIMINGS[key]
    finally:
        model.train(was_training)
    return {
        "latency_ms": latency_ms,
        "throughput": throughput,
        "params_count": sum(p.numel() for p in model.parameters()),
        "size_mb": round(weights_bytes(model) / 1e6, 4),
    }
