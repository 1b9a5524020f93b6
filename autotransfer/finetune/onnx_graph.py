"""A trained model as an ONNX graph run by ONNX Runtime: export, int8 quantisation, sessions.

The pieces every use of ONNX shares: :func:`export_graph` writes a ``TransferModel`` (or any
module that maps a preprocessed batch to logits ``(B, K)``) as ``model.onnx`` with a dynamic batch
axis (and a dynamic sequence axis for token inputs); :func:`quantize_int8` quantises it with the
method that fits the architecture (ONNX Runtime's ``quantize_dynamic`` for transformer encoders,
``quantize_static`` in QDQ format with calibration batches for convolutional networks, following
the ONNX Runtime quantisation guide); :func:`session` opens an ``onnxruntime.InferenceSession``
on the CPU and :func:`feeds` turns a preprocessed batch into its inputs. Both
:mod:`autotransfer.model.onnx_export` (the shipped folder) and :mod:`autotransfer.finetune.cost`
(latency of what ships) build on them. ``onnx`` and ``onnxruntime`` are imported on first use
(the ``onnx`` extra).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from autotransfer.errors import AutotransferError, first_line

#: The ONNX opset written (ONNX Runtime >= 1.14 runs it; the TorchScript exporter supports it).
OPSET = 17
#: The input name of an image batch; dict batches keep their keys (``input_ids``, ...).
IMAGE_INPUT = "pixel_values"
#: Inputs whose second axis is the token sequence (dynamic besides the batch).
SEQUENCE_INPUTS = frozenset({"input_ids", "attention_mask", "token_type_ids"})


class OnnxError(AutotransferError):
    """A model cannot be exported to ONNX, quantised, or run in ONNX Runtime."""


def needs() -> None:
    """Raise :class:`OnnxError` (one line, how to install) unless onnx and onnxruntime import."""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError as exc:
        raise OnnxError(f"needs onnx and onnxruntime ({first_line(exc)}): "
                        "pip install 'autotransfer[onnx]'") from None


def input_names(batch: Any) -> list[str]:
    """The graph's input names for a preprocessed batch (a tensor or a dict of tensors)."""
    return list(batch) if isinstance(batch, dict) else [IMAGE_INPUT]


def feeds(batch: Any) -> dict[str, Any]:
    """ONNX Runtime's inputs (numpy arrays by input name) for a preprocessed torch batch."""
    tensors = batch if isinstance(batch, dict) else {IMAGE_INPUT: batch}
    return {name: t.detach().cpu().numpy() for name, t in tensors.items()}


def _graph_module(model: Any, names: list[str], keyed: bool):
    """``model`` taking its inputs as positional tensors, in ``names`` order (what the exporter
    traces)."""
    import torch

    class Graph(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *tensors):
            return self.model(dict(zip(names, tensors, strict=True)) if keyed else tensors[0])

    return Graph().eval()


def export_graph(model: Any, example: Any, path: str | Path, *, opset: int = OPSET) -> list[str]:
    """Write ``model`` (eval mode, CPU, float32) to ``path`` as ONNX and return its input names.

    Args:
        model: maps ``example`` (a preprocessed batch: a ``(B, C, H, W)`` tensor or a dict of
            ``(B, ...)`` tensors) to logits ``(B, K)``.
        example: a batch of at least two rows (the traced shapes; the batch axis is dynamic,
            and so is the sequence axis of token inputs).
        path: the ``.onnx`` file to write.
        opset: the ONNX opset.

    The TorchScript exporter (``torch.onnx.export(dynamo=False)``) is tried first (seconds,
    and it takes Hugging Face encoders as they are); the ``torch.export``-based exporter
    (``dynamo=True``, needs ``onnxscript``) is the fallback.

    Raises:
        OnnxError: neither exporter can trace the model (the reason, one line).
    """
    import torch

    needs()
    names = input_names(example)
    keyed = isinstance(example, dict)
    tensors = tuple(example[n] for n in names) if keyed else (example,)
    graph = _graph_module(model, names, keyed)
    axes = {n: ({0: "batch", 1: "sequence"} if n in SEQUENCE_INPUTS else {0: "batch"})
            for n in names}
    axes["logits"] = {0: "batch"}
    errors = []
    for dynamo in (False, True):
        try:
            with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
                warnings.simplefilter("ignore")
                kwargs: dict[str, Any] = (
                    {"dynamic_shapes": tuple({0: torch.export.Dim("batch")} for _ in names),
                     "verbose": False, "optimize": True}
                    if dynamo else {"dynamic_axes": axes})
                torch.onnx.export(graph, tensors, str(path), input_names=names,
                                  output_names=["logits"], opset_version=opset, dynamo=dynamo,
                                  **kwargs)
            return names
        except Exception as exc:  # an op or Python control flow the exporter cannot trace
            errors.append(f"{'dynamo' if dynamo else 'torchscript'}: {type(exc).__name__}: "
                          f"{first_line(exc)[:200]}")
            if keyed and any(n in SEQUENCE_INPUTS for n in names):
                break  # dynamo's batch-only shapes would fix the sequence length
    raise OnnxError("cannot export to ONNX (" + "; ".join(errors) + ")")


def session(path: str | Path, *, threads: int | None = None):
    """An ``onnxruntime.InferenceSession`` of ``path`` on the CPU (``threads`` intra-op
    threads; None: ONNX Runtime's default, one per physical core)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads = int(threads)
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def conv_share(path: str | Path) -> float:
    """The share of ``Conv`` nodes among the graph's ``Conv``, ``MatMul`` and ``Gemm`` nodes:
    near 1 for a convolutional network, near 0 for a transformer encoder."""
    import onnx

    ops = [n.op_type for n in onnx.load(str(path), load_external_data=False).graph.node]
    conv = ops.count("Conv")
    dense = ops.count("MatMul") + ops.count("Gemm")
    return conv / max(1, conv + dense)


def int8_method(path: str | Path) -> str:
    """``static`` for a convolutional network (convolutions are most of its weighted nodes),
    ``dynamic`` for a transformer encoder: dynamic quantisation of convolutions is slow
    (onnxruntime #12854), and transformer activations vary too much per input for a fixed
    calibrated range."""
    return "static" if conv_share(path) > 0.5 else "dynamic"


def calibration_batches(preprocess: Any, data: Any, n: int, *, batch_size: int, seed: int = 0):
    """Up to ``n`` training samples of ``data`` drawn at random (seeded), as :func:`feeds` in
    batches of ``batch_size``: static int8's calibration set."""
    import torch

    from autotransfer.data.batching import take

    inputs, labels = preprocess.encode(data, "train")
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))[:n]
    for start in range(0, len(order), batch_size):
        rows = take(inputs, order[start : start + batch_size])
        yield feeds(preprocess.to_input(rows, device=torch.device("cpu")))


class _Batches:
    """An ``onnxruntime.quantization.CalibrationDataReader`` over ``feeds`` dicts."""

    def __init__(self, batches: Iterable[dict[str, Any]]) -> None:
        self._iter = iter(batches)

    def get_next(self) -> dict[str, Any] | None:
        return next(self._iter, None)

    def rewind(self) -> None:  # pragma: no cover - called by some calibrators only
        pass


def quantize_int8(source: str | Path, target: str | Path, *, method: str,
                  calibration: Iterable[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Write ``source`` quantised to int8 at ``target``; returns how (JSON-ready).

    Args:
        method: ``dynamic``: weights int8, activations quantised per batch at run time
            (``quantize_dynamic``, MatMul/Gemm weights only); ``static``: weights int8 per
            channel, activations uint8 with ranges calibrated (MinMax) on ``calibration``, in
            QDQ format (``quantize_static``).
        calibration: ``feeds`` dicts (static only), e.g. batches of the training split.

    Raises:
        OnnxError: the quantiser fails (one line).
    """
    import tempfile

    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_dynamic,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    try:
        with tempfile.TemporaryDirectory() as tmp:
            prepared = Path(tmp) / "prepared.onnx"
            try:  # shape inference + graph optimisation, as the quantisation guide advises
                quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
            except Exception:  # an opset the optimiser does not know: quantise the graph as is
                prepared = Path(source)
            if method == "dynamic":
                quantize_dynamic(str(prepared), str(target), weight_type=QuantType.QInt8)
                return {"method": "dynamic", "weights": "int8 per tensor",
                        "activations": "uint8, ranges per batch at run time",
                        "library": "onnxruntime.quantization.quantize_dynamic"}
            if method != "static":
                raise OnnxError(f"int8 method must be static or dynamic, got {method!r}")
            quantize_static(str(prepared), str(target), _Batches(calibration or ()),
                            quant_format=QuantFormat.QDQ, per_channel=True,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            calibrate_method=CalibrationMethod.MinMax)
            return {"method": "static", "format": "QDQ", "weights": "int8 per channel",
                    "activations": "uint8, MinMax ranges from the calibration batches",
                    "library": "onnxruntime.quantization.quantize_static"}
    except OnnxError:
        raise
    except Exception as exc:  # the quantiser's own errors
        raise OnnxError(f"cannot quantise to int8 ({type(exc).__name__}: "
                        f"{first_line(exc)[:200]})") from None
