"""What a trained model costs to run: latency, throughput, parameters and size.

Measured once per trial after training, on the search's device, in float32 and eval mode (the
model as :func:`autotransfer.model.export.export_model` writes it and its zoo's library loads
it), with the process's torch thread count (what a plain loop in the same environment uses):

- ``latency_ms``: forward passes at batch 1 and the model's own input size, after warm-up,
  timed one by one (a device sync after each, as ``torch.utils.benchmark`` does) in blocks of
  :data:`BLOCK` passes; the latency is the median pass of the quietest block. Other processes
  on a shared machine only ever add time to a pass, so the median of each block ignores the
  passes they interrupted and the quietest block ignores the busy periods; on a quiet machine
  it is the median of all passes. At least :data:`MIN_BLOCKS` blocks are timed; more follow
  until the time budget is spent or, after a third of it (the minimum measured time), the two
  quietest agree within :data:`AGREE` (adaptive repeats, like
  ``torch.utils.benchmark.Timer.adaptive_autorange``).
- ``throughput``: samples per second of forward passes at the evaluation batch size: the
  fastest of the single passes that a third of the budget allows, after one warm-up pass.
- ``params_count`` counts every parameter, head included; ``size_mb`` is the bytes of the state
  dict's tensors (what safetensors writes, less its small header), in 10**6 bytes.
- ``latency_threads``: the torch intra-op thread count the latency was measured with.
- ``peak_memory_mb``: the trial's peak memory in MiB (:func:`~autotransfer.finetune.device.
  peak_memory_mib`: CUDA's peak allocation since the trial started; on CPU the process's peak
  resident set, which earlier trials of the process may have set).
- each cost registered with a ``compute(model)`` (:mod:`autotransfer.space.objectives`): its
  value on the trained model, under its ``key``.

``runtime="onnxruntime"`` (with ``precision`` ``fp32`` or ``int8``) times what ships instead of
PyTorch eager: the model exported to ONNX and run by an ONNX Runtime CPU session with the same
thread count (int8 quantised as ``autotransfer train --quantize int8`` does,
:mod:`autotransfer.finetune.onnx_graph`), by the same blocks; ``latency_runtime`` names it.

Before training, :func:`architecture_params` counts a trial's parameters without loading any
weight (the architecture built on PyTorch's ``meta`` device), so that a configuration over a
``params`` bound does not start.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import torch

from autotransfer.finetune.device import peak_memory_mib
from autotransfer.space.objectives import objectives

#: Passes per block, warm-up passes, the fewest blocks and the most passes of one measurement.
BLOCK = 5
WARMUP = 3
MIN_BLOCKS = 2
MAX_PASSES = 700
#: The two quietest block medians agreeing within this fraction end the measurement early.
AGREE = 0.02
#: :func:`measure_cost` stops starting passes after this many times its budget, warm-up
#: included (at least one pass is timed): a busy machine then gets fewer passes, not minutes
LIMIT = 3.0

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


def time_blocks(model: torch.nn.Module, x: Any, device: torch.device, *, budget_s: float,
                block: int = BLOCK, warmup: int = WARMUP, min_blocks: int = MIN_BLOCKS,
                max_passes: int = MAX_PASSES, limit_s: float | None = None) -> list[list[float]]:
    """Seconds of single forward passes of ``model`` on ``x``, in blocks of ``block`` passes,
    after ``warmup`` untimed ones: at least ``min_blocks`` blocks; then more until
    ``budget_s`` seconds are spent or ``max_passes`` passes are timed, or, once a third of
    the budget is spent (the minimum measured time), until the two quietest blocks agree
    within :data:`AGREE`. ``limit_s`` bounds the whole call, warm-up included: past it, no
    pass starts once one is timed (the last block may be short). On a busy 2-core machine a
    first pass at batch 1 took 3.5 s and the minimum blocks of a 0.2 s budget 17 s."""
    blocks: list[list[float]] = []
    entered = time.perf_counter()

    def over() -> bool:
        return limit_s is not None and time.perf_counter() - entered > limit_s

    with torch.inference_mode():
        for i in range(warmup):
            if i and over():
                break
            model(x)
        _sync(device)
        start = time.perf_counter()
        while True:
            spent = time.perf_counter() - start
            if blocks and over():
                break
            if len(blocks) >= min_blocks and (
                    spent >= budget_s or len(blocks) * block >= max_passes
                    or (spent >= budget_s / 3 and _settled(blocks))):
                break
            times: list[float] = []
            for _ in range(block):
                if times and over():
                    break
                began = time.perf_counter()
                model(x)
                _sync(device)
                times.append(time.perf_counter() - began)
            blocks.append(times)
    return blocks


def _settled(blocks: list[list[float]]) -> bool:
    low = sorted(statistics.median(b) for b in blocks)[:2]
    return len(low) == 2 and low[1] <= low[0] * (1 + AGREE)


def quietest_median(blocks: list[list[float]]) -> float:
    """The median pass of the quietest block (the smallest block median), in seconds."""
    return min(statistics.median(b) for b in blocks)


def latency_seconds(model: torch.nn.Module, x: Any, device: torch.device, *,
                    budget_s: float, warmup: int = WARMUP, limit_s: float | None = None) -> float:
    """Seconds of one forward pass of ``model`` on ``x`` (see the module's docstring): the
    median pass of the quietest of the blocks that ``budget_s`` allows (at least
    :data:`MIN_BLOCKS`, unless ``limit_s`` seconds, warm-up included, run out first)."""
    return quietest_median(time_blocks(model, x, device, budget_s=budget_s, warmup=warmup,
                                       limit_s=limit_s))


def architecture_params(entry: Any, options: dict[str, Any], n_classes: int,
                        params: dict[str, Any]) -> int | None:
    """Parameters of a trial's model (backbone and head, before a tuning method adds any),
    counted without loading a weight: ``entry.load(pretrained=False)`` with every tensor on
    PyTorch's ``meta`` device (``with torch.device("meta")``: shapes, no storage, no
    initialisation cost), configured for the trial as the trainer configures it, plus the
    linear head. None when the zoo's loader cannot build there (then the count after loading
    decides).

    Args:
        entry: the :class:`~autotransfer.contract.backbone.BackboneEntry`.
        options: its loader's options (the trial's ``load_options``).
        n_classes: the head's outputs.
        params: the trial's hyperparameters (for ``Backbone.configure``).
    """
    try:
        with torch.device("meta"):
            backbone = entry.load(pretrained=False, **options)
            if backbone.configure is not None:
                backbone.configure(params)
            body = sum(p.numel() for p in backbone.model.parameters())
    except Exception:  # a loader that reads tensors' values, or a library without meta
        return None
    return body + backbone.dim * n_classes + n_classes  # the head: nn.Linear(dim, n_classes)


#: What runs the timed passes, and the precisions ONNX Runtime measures.
RUNTIMES = ("pytorch", "onnxruntime")
PRECISIONS = ("fp32", "int8")


def onnxruntime_runner(model: torch.nn.Module, preprocess: Any, data: Any, one: Any, *,
                       precision: str = "fp32", calibration: int = 64) -> Any:
    """``run(batch)``: ``model`` exported to ONNX (``one``: a preprocessed example batch on the
    CPU) and run by an ONNX Runtime CPU session with torch's thread count; int8 quantised
    (static with ``calibration`` training samples for a CNN, dynamic for a transformer).

    Raises:
        autotransfer.finetune.onnx_graph.OnnxError: the model cannot be exported or quantised,
            or onnxruntime is not installed.
    """
    import tempfile
    from pathlib import Path

    from autotransfer.finetune import onnx_graph as graph

    if precision not in PRECISIONS:
        raise graph.OnnxError(f"precision must be one of {', '.join(PRECISIONS)}, got "
                              f"{precision!r}")
    cpu = model.to("cpu").float().eval()
    with tempfile.TemporaryDirectory(prefix="autotransfer-onnx-") as tmp:
        path = Path(tmp) / "model.onnx"
        example = _rows(one, 1) if not isinstance(one, dict) else one
        graph.export_graph(cpu, _two(example), path)
        if precision == "int8":
            method = graph.int8_method(path)
            batches = (graph.calibration_batches(preprocess, data, calibration, batch_size=32)
                       if method == "static" else None)
            graph.quantize_int8(path, Path(tmp) / "int8.onnx", method=method,
                                calibration=batches)
            path = Path(tmp) / "int8.onnx"
        session = graph.session(path, threads=torch.get_num_threads())  # read into memory
    return lambda x: session.run(None, graph.feeds(x))


def _two(x: Any) -> Any:
    """A batch of two rows (the exporter traces a dynamic batch axis from more than one)."""
    if isinstance(x, dict):
        return {k: v.expand(2, *v.shape[1:]).contiguous() for k, v in x.items()}
    return x.expand(2, *x.shape[1:]).contiguous()


def measure_cost(model: torch.nn.Module, preprocess: Any, data: Any, *, device: torch.device,
                 batch_size: int, budget_s: float = 1.0,
                 cache_key: tuple[Any, ...] | None = None, runtime: str = "pytorch",
                 precision: str = "fp32", timed: bool = True) -> dict[str, Any]:
    """``{latency_ms, throughput, params_count, size_mb, peak_memory_mb, ...}`` of a trained
    model (the module's docstring).

    Args:
        model: the trained model (a :class:`~autotransfer.finetune.trainer.TransferModel`).
        preprocess: its configured preprocess (the trial's input size).
        data: the trial's :class:`~autotransfer.data.LabelledData`; inputs come from its
            validation split (train when it has none).
        device: the search's device.
        batch_size: the evaluation batch size (throughput's batch).
        budget_s: seconds the timed passes may take, split between batch 1 (two thirds) and
            the evaluation batch (one third); warm-up comes on top, and at least
            :data:`MIN_BLOCKS` blocks at batch 1 and one at the evaluation batch are timed,
            unless :data:`LIMIT` times the budget, warm-up included, runs out first (then at
            least one pass of each).
        cache_key: what identifies the network (e.g. the backbone id); with it, the timings
            of an earlier trial of the same network and input shape in this process are
            reused (only ``params_count`` and ``size_mb`` are counted again).
        runtime: ``pytorch`` (eager, on ``device``) or ``onnxruntime`` (the exported model on
            the CPU, :func:`onnxruntime_runner`).
        precision: ``fp32`` or ``int8`` (ONNX Runtime only).
        timed: False leaves out ``latency_ms`` and ``throughput`` (no pass runs) and says so
            in ``latency_runtime``: a time budget is spent and neither is an objective or a
            bound.

    Raises:
        autotransfer.finetune.onnx_graph.OnnxError: ``runtime="onnxruntime"`` and the model
            cannot be exported, or a bad ``runtime`` or ``precision``.
    """
    if runtime not in RUNTIMES or (runtime == "pytorch" and precision != "fp32"):
        from autotransfer.finetune.onnx_graph import OnnxError

        raise OnnxError(f"latency runtime must be one of {', '.join(RUNTIMES)} (int8 with "
                        f"onnxruntime only), got {runtime!r} {precision!r}")
    if not timed:
        return {
            "params_count": sum(p.numel() for p in model.parameters()),
            "size_mb": round(weights_bytes(model) / 1e6, 4),
            "latency_runtime": "not timed: the time budget was spent",
            "peak_memory_mb": round(peak_memory_mib(device), 1),
            **{o.key: float(o.compute(model)) for o in objectives("cost")
               if o.compute is not None},
        }
    if runtime == "onnxruntime":
        device = torch.device("cpu")
    split = "val" if data.val is not None and len(data.val) else "train"
    inputs, labels = preprocess.encode(data, split)
    n = max(1, min(batch_size, len(labels)))
    was_training = model.training
    model.eval()
    model.to(device=device, memory_format=torch.contiguous_format)
    try:
        one = preprocess.to_input(_rows(inputs, 1), device=device)
        key = None if cache_key is None else (*cache_key, str(device), n, _shape(one), runtime,
                                              precision)
        if key not in _TIMINGS:
            batch = preprocess.to_input(_rows(inputs, n), device=device)
            run = (model if runtime == "pytorch" else
                   onnxruntime_runner(model, preprocess, data, one, precision=precision))
            single = latency_seconds(run, one, device, budget_s=budget_s * 2 / 3,
                                     limit_s=LIMIT * budget_s * 2 / 3)
            many = quietest_median(time_blocks(run, batch, device, budget_s=budget_s / 3,
                                               block=1, warmup=1, min_blocks=1,
                                               limit_s=LIMIT * budget_s / 3))
            timing = (round(1000 * single, 4), round(n / many, 1))
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
        "latency_threads": torch.get_num_threads(),
        "latency_runtime": "pytorch" if runtime == "pytorch" else f"onnxruntime {precision}",
        "peak_memory_mb": round(peak_memory_mib(device), 1),
        **{o.key: float(o.compute(model)) for o in objectives("cost") if o.compute is not None},
    }
