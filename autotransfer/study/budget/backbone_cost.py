"""Each backbone's cost, measured once per study before its expensive trials: a timed step.

The step loads the backbone, builds the trial's model (the :class:`~autotransfer.finetune.
trainer.Trainer` of the space's default configuration, every layer trained, no activation
cache) on a few training samples, trains ``WARMUP_BATCHES + TIMED_BATCHES`` batches (the first
ones are a warm-up: allocation, lazy initialisation; in a fresh search process the first three
ran 4x slower than the rest, which made the first backbone look 3x dearer than it is) and
evaluates one batch twice (the first is a warm-up too:
it decodes the samples and builds the inference kernels). It records, per backbone id:

- ``load_seconds``: loading the weights;
- ``train_sample_seconds``: one training sample's forward, backward and optimizer step (the
  median timed batch over its size);
- ``eval_sample_seconds``: one sample's forward pass without gradients (validation, and the
  frozen prefix the activation cache computes once);
- ``size`` (the input size it ran at: ``image_size``, ``max_length`` or ``clip_seconds``),
  ``batch_size``, and the split sizes ``n_train`` and ``n_val``.

The record is a study user attribute (``backbone_costs``, like the pre-screen's), written once
under the study lock: a resumed study and every worker reuse it. :func:`estimate` turns it into
seconds for a configuration: ``load + (n_train + n_val) * eval * f + epochs * (1 - f) *
(n_train * train + n_val * eval)``, where ``f`` is the frozen fraction (the frozen prefix runs
once through the activation cache; the trained part runs every epoch) and per-sample costs
scale with the input size (pixels for ``image_size``, linearly for the others). Methods other
than a full fine-tune are counted as one (the backward pass still crosses the body).
"""

from __future__ import annotations

import statistics
import time
from typing import Any

from autotransfer.contract.collect import get_registry
from autotransfer.errors import BackboneError, first_line
from autotransfer.finetune.records import StudyRecord, set_costs
from autotransfer.space.hyperparameters import HYPERPARAMETERS
from autotransfer.space.methods import method_traits

WARMUP_BATCHES = 3  # the first batches of a process ran 4x slower than the next ones
TIMED_BATCHES = 3
SIZE_KEYS = ("image_size", "max_length", "clip_seconds")


def _size(params: dict[str, Any]) -> tuple[str, float] | None:
    for key in SIZE_KEYS:
        if params.get(key) is not None:
            return key, float(params[key])
    return None


def step_params(space) -> dict[str, Any]:
    """The timed step's hyperparameters: the default configuration (the reference trial's,
    clipped into the space), every layer trained by a full fine-tune."""
    from autotransfer.study.references.trials import reference_params

    found = dict(next((p for kind, p in reference_params(space) if kind == "default"),
                      reference_params(space)[0][1]))
    found.pop("backbone", None)
    params = space.resolve(found)
    return {**params, "freeze_fraction": 0.0, "method": "finetune", "augment": "none"}


def measure_cost(entry, spec, data, params: dict[str, Any], device, *, seed: int = 0,
                 trust_remote_code: bool = False) -> dict[str, Any]:
    """Time one backbone's step (see the module docstring) on ``data``'s first samples.

    Returns:
        ``{load_seconds, train_sample_seconds, eval_sample_seconds, size, size_key,
        batch_size, n_train, n_val}`` (seconds; ``size`` None when the space sets none).
    """
    import numpy as np
    import torch

    from autotransfer.data import LabelledData
    from autotransfer.finetune.trainer import Trainer

    steps = WARMUP_BATCHES + TIMED_BATCHES
    batch = max(2, min(int(params["batch_size"]), len(data.train) // steps))
    n = min(len(data.train), batch * steps)
    rng = np.random.default_rng(seed)
    index = np.sort(rng.permutation(len(data.train))[:n])
    val_index = np.arange(min(len(data.val), batch))
    sample = LabelledData(data.modality, data.classes, data.train.subset(index),
                          data.val.subset(val_index), None, data.source)
    sample.store = "memory"  # a few samples: never written to the shared store
    start = time.perf_counter()
    torch.manual_seed(seed)
    backbone = entry.load(pretrained=spec.pretrained,
                          **spec.load_options(entry, trust_remote_code=trust_remote_code))
    load_seconds = time.perf_counter() - start
    stamps: list[float] = []
    trainer = Trainer(backbone, sample, {**params, "batch_size": batch}, device=device,
                      metric="accuracy", seed=seed, cache=False, label=spec.id,
                      evaluate_val=False, batch_check=lambda: stamps.append(time.perf_counter()))
    trainer.fit(1, lambda _result: stamps.append(time.perf_counter()))
    # stamps: the fit's start (before encoding), then before each batch, then the epoch's end
    durations = [b - a for a, b in zip(stamps[1:], stamps[2:], strict=False)][WARMUP_BATCHES:]
    step = statistics.median(durations) if durations else max(0.0, stamps[-1] - stamps[0])
    trainer.evaluate("val", batch_size=len(val_index))  # warm-up: encoding, inference kernels
    start = time.perf_counter()
    trainer.evaluate("val", batch_size=len(val_index))
    eval_seconds = time.perf_counter() - start
    size = _size(params)
    return {
        "load_seconds": round(load_seconds, 4),
        "train_sample_seconds": step / batch,
        "eval_sample_seconds": eval_seconds / max(1, len(val_index)),
        "size": None if size is None else size[1],
        "size_key": None if size is None else size[0],
        "batch_size": batch,
        "n_train": len(data.train),
        "n_val": len(data.val),
    }


def measure_costs(study, lock, space, data, device, *, seed: int = 0,
                  trust_remote_code: bool = False, say=None,
                  load_failures: dict[str, str] | None = None) -> dict[str, dict[str, Any]]:
    """The study's measured cost of every backbone of ``space`` (see the module docstring):
    read back when recorded (a resumed study, a worker), else timed now and recorded.

    A backbone whose step fails is left out (its trials then show the error); the others are
    measured. The step runs under the study lock, so that workers starting together time each
    backbone once: the others wait for it (seconds) and read it back. Returns
    ``{backbone id: cost}``; ``load_failures`` (when given) receives ``{label: error}`` of the
    backbones whose loader failed (a :class:`BackboneError`: :mod:`autotransfer.study.loadable`).
    """
    with lock.held():
        known = StudyRecord.of(study).costs
        if known is not None and all(b.id in known for b in space.backbones):
            return known
        costs = dict(known or {})
        params = step_params(space)
        for spec in space.backbones:
            if spec.id in costs:
                continue
            entry = get_registry().get(spec.id)
            try:
                costs[spec.id] = measure_cost(entry, spec, data, params, device, seed=seed,
                                              trust_remote_code=trust_remote_code)
            except Exception as exc:  # the trials report what is wrong with the backbone
                if isinstance(exc, BackboneError) and load_failures is not None:
                    load_failures[spec.label] = first_line(exc, 1000)  # the caller skips it
                elif say:
                    say(f"cost of {spec.label}: not measured ({type(exc).__name__}: "
                        f"{first_line(exc, 1000)})")
                continue
            if say:
                cost = costs[spec.id]
                say(f"cost of {spec.label}: ~{epoch_seconds(cost, params):.1f}s per epoch "
                    f"(timed step, {cost['batch_size']} samples a batch)")
        set_costs(study, costs)
    return costs


def label_seconds(space, costs: dict[str, dict[str, Any]]) -> dict[str, float]:
    """Seconds per epoch of a full fine-tune per backbone label of ``space`` (the measured
    ones), at the timed step's configuration."""
    params = step_params(space)
    return {b.label: epoch_seconds(costs[b.id], params) for b in space.backbones
            if b.id in costs}


def recorded(study) -> dict[str, dict[str, Any]]:
    """The study's measured costs (``{}`` when none were measured)."""
    return StudyRecord.of(study).costs or {}


def _scale(cost: dict[str, Any], params: dict[str, Any]) -> float:
    """How much one sample costs at ``params``' input size relative to the measured one."""
    key, measured = cost.get("size_key"), cost.get("size")
    if not key or not measured or params.get(key) is None:
        return 1.0
    ratio = float(params[key]) / float(measured)
    return ratio**2 if key == "image_size" else ratio


def epoch_seconds(cost: dict[str, Any], params: dict[str, Any]) -> float:
    """One epoch of a full fine-tune at ``params``' input size: training and validation."""
    scale = _scale(cost, params)
    return scale * (cost["n_train"] * cost["train_sample_seconds"]
                    + cost["n_val"] * cost["eval_sample_seconds"])


def estimate(cost: dict[str, Any], params: dict[str, Any], epochs: int = 1) -> float:
    """Seconds for a trial of ``params`` to train ``epochs`` epochs (load included); see the
    module docstring for the formula. ``epochs=1`` is the time to its first report."""
    frozen = min(1.0, max(0.0, float(params.get("freeze_fraction", 0.0))))
    if not method_traits(params.get("method", HYPERPARAMETERS["method"].default)
                         ).cost_follows_freezing:
        frozen = 0.0  # LoRA, BitFit, LayerNorm: the backward pass still crosses the body
    scale = _scale(cost, params)
    prefix = scale * (cost["n_train"] + cost["n_val"]) * cost["eval_sample_seconds"] * frozen
    return cost["load_seconds"] + prefix + epochs * (1.0 - frozen) * epoch_seconds(cost, params)


def estimate_for(study, backbone_id: str, params: dict[str, Any], epochs: int = 1
                 ) -> float | None:
    """:func:`estimate` from the study's record, None when the backbone was not measured."""
    cost = recorded(study).get(backbone_id)
    return None if cost is None else estimate(cost, params, epochs)


def references_only(space, costs: dict[str, dict[str, Any]], left: float) -> str | None:
    """A warning when ``left`` seconds fit the reference trials of ``space`` (every epoch, by
    :func:`estimate` from ``costs``) and no other trial after them; None when more fits or a
    backbone's cost is unknown (one backbone: its own trials measure it)."""
    from autotransfer.study.references.trials import reference_params

    ids = {b.label: b.id for b in space.backbones}
    planned = reference_params(space)
    if not planned or any(ids.get(p["backbone"]) not in costs for _kind, p in planned):
        return None

    def seconds(params: dict[str, Any]) -> float:
        own = space.resolve({k: v for k, v in params.items() if k != "backbone"})
        return estimate(costs[ids[params["backbone"]]], own, space.epochs)

    references = sum(seconds(p) for _kind, p in planned)
    cheapest = min(seconds(p) for kind, p in planned if kind != "linear_probe") if any(
        kind != "linear_probe" for kind, _p in planned) else min(seconds(p) for _k, p in planned)
    if references + cheapest <= left:
        return None
    if left <= 0:
        return ("warning: the time budget is spent before the first trial (the start-up and "
                "the timed step of each backbone took it; the references need about "
                f"{references:.0f}s more): give a larger --time-budget, or a space with fewer "
                "backbones, fewer epochs or a smaller input size")
    fits = (f"fits the {len(planned)} reference trials at most" if references <= left else
            f"fits only part of the {len(planned)} reference trials")
    return (f"warning: the time budget ({left:.0f}s left) {fits} (about {references:.0f}s by "
            "the timed step), nothing the search would sample after them: give a larger "
            "--time-budget, or a space with fewer backbones, fewer epochs or a smaller input "
            "size")
