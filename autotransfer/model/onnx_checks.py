"""The checks of an ONNX export: ONNX Runtime against PyTorch on the data, latency of each.

:func:`compare` runs the check split (validation, else test) through both and reports the top-1
agreement and the largest difference of a class probability, and the accuracy of each on the
validation and test splits; :func:`latencies` times PyTorch eager and the ONNX Runtime sessions
at batch 1 and at the evaluation batch, with :func:`autotransfer.finetune.cost.latency_seconds`
(the median pass of the quietest block, as a search measures ``latency_ms``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from autotransfer.finetune.onnx_graph import OnnxError


def check_split(data: Any) -> str:
    """The split an export is checked on: ``val``, else ``test``, else ``train``."""
    splits = data.splits()
    return next(s for s in ("val", "test", "train")
                if splits.get(s) is not None and len(splits[s]))


def _rows(inputs: Any, index: Any) -> Any:
    from autotransfer.data.batching import take

    return take(inputs, index)


def sample_batch(preprocess: Any, data: Any, *, rows: int = 2) -> Any:
    """The first ``rows`` samples of the check split, as model input on the CPU."""
    import torch

    if data is None:
        raise OnnxError("the ONNX export needs the data to trace and check the model")
    inputs, labels = preprocess.encode(data, check_split(data))
    index = torch.arange(min(rows, len(labels)))
    return preprocess.to_input(_rows(inputs, index), device=torch.device("cpu"))


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(-1, keepdims=True))
    return shifted / shifted.sum(-1, keepdims=True)


def probabilities(run: Any, preprocess: Any, data: Any, split: str,
                  batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """``(probabilities (N, K), labels (N,))`` of ``run`` (a torch module, or an ONNX Runtime
    session) on ``split``, batch by batch."""
    import torch

    from autotransfer.data import iterate_batches
    from autotransfer.finetune.onnx_graph import feeds

    inputs, labels = preprocess.encode(data, split)
    cpu = torch.device("cpu")
    out = []
    for batch, _ in iterate_batches(inputs, labels, batch_size, shuffle=False):
        x = preprocess.to_input(batch, device=cpu)
        if isinstance(run, torch.nn.Module):
            with torch.inference_mode():
                out.append(run(x).float().softmax(-1).numpy())
        else:
            out.append(softmax(run.run(["logits"], feeds(x))[0].astype(np.float64)))
    k = len(data.classes)
    return (np.concatenate(out) if out else np.zeros((0, k))), labels.numpy()


def compare(model: Any, session: Any, preprocess: Any, data: Any, *, batch_size: int,
            cache: dict | None = None) -> dict[str, Any]:
    """``session`` against ``model`` on the data (JSON-ready).

    Returns:
        ``split`` and ``n`` (the check split), ``agreement`` (share of samples with the same
        top-1 class), ``max_prob_diff`` (largest absolute difference of a class probability),
        and ``accuracy``: ``{split: {"pytorch": ..., "onnxruntime": ...}}`` for the validation
        and test splits. ``cache`` (a dict) keeps PyTorch's probabilities for a second
        session.
    """
    cache = {} if cache is None else cache
    split = check_split(data)
    found: dict[str, Any] = {"split": split}
    accuracy = {}
    for name in dict.fromkeys((split, "val", "test")):
        part = data.splits().get(name)
        if part is None or not len(part):
            continue
        if name not in cache:
            cache[name] = probabilities(model, preprocess, data, name, batch_size)
        expected, labels = cache[name]
        got, _ = probabilities(session, preprocess, data, name, batch_size)
        if name == split:
            found["n"] = len(labels)
            found["agreement"] = round(float((got.argmax(1) == expected.argmax(1)).mean()), 6)
            found["max_prob_diff"] = float(np.abs(got - expected).max())
        accuracy[name] = {"pytorch": round(float((expected.argmax(1) == labels).mean()), 6),
                          "onnxruntime": round(float((got.argmax(1) == labels).mean()), 6)}
    found["accuracy"] = accuracy
    return found


def latencies(timed: dict[str, Any], preprocess: Any, data: Any, *, batch_size: int,
              budget_s: float) -> dict[str, Any]:
    """Milliseconds of one forward pass of each of ``timed`` (name -> callable on a
    preprocessed batch) at batch 1 and at ``batch_size`` (rows of the check split), on the
    CPU, each with ``budget_s`` seconds of timed passes."""
    import torch

    from autotransfer.finetune.cost import latency_seconds

    inputs, labels = preprocess.encode(data, check_split(data))
    cpu = torch.device("cpu")
    found: dict[str, Any] = {}
    for rows in dict.fromkeys((1, max(1, min(batch_size, len(labels))))):
        x = preprocess.to_input(_rows(inputs, torch.arange(rows)), device=cpu)
        found[f"batch_{rows}"] = {
            name: round(1000 * latency_seconds(run, x, cpu, budget_s=budget_s), 3)
            for name, run in timed.items()}
    return found
