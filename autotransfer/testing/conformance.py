"""The conformance check a zoo's test suite runs on each of its backbones.

In a plugin's test suite::

    from autotransfer.testing import check_backbone

    def test_my_backbones_conform():
        check_backbone("myzoo/tiny-net")   # raises ConformanceError naming what broke
"""

from __future__ import annotations

import copy
import gc
import tempfile
import time
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from autotransfer.contract.backbone import Backbone, BackboneEntry, Preprocess
from autotransfer.contract.collect import get_modality, get_registry
from autotransfer.contract.groups import check_groups
from autotransfer.data import LabelledData, Split, take
from autotransfer.errors import PluginError
from autotransfer.finetune.freezing import freeze, train_mode
from autotransfer.finetune.optim import param_groups

FREEZE_FRACTIONS = (0.0, 0.5, 1.0)


class ConformanceError(AssertionError):
    """A backbone breaks the contract; the message names the backbone and the check."""


@dataclass
class ConformanceReport:
    id: str
    dim: int
    n_groups: int
    n_params: int
    n_head_params: int
    seconds: float


def _fail(backbone_id: str, check: str, detail: str) -> None:
    raise ConformanceError(f"{backbone_id}: {check}: {detail}")


def check_backbone(
    entry: BackboneEntry | str,
    *,
    pretrained: bool = False,
    options: dict[str, Any] | None = None,
    batch_size: int = 2,
    image_size: int | None = 64,
) -> ConformanceReport:
    """Check one backbone against the plugin contract (docs/plugins); raise ConformanceError if not.

    Checks: it loads as a ``Backbone``; forward maps a batch to finite ``(B, dim)`` features;
    its groups cover every parameter exactly once, input first, with the head last; freezing at
    0, 0.5 and 1 freezes ``floor(f * n_groups)`` groups whose weights and normalisation
    statistics then stay fixed through a training step while the rest trains; preprocessing
    is deterministic; and the model is freed once dropped (GPU memory back to baseline).

    Args:
        entry: a registered id or an entry.
        pretrained: load pretrained weights (needs them to be reachable).
        options: loader options, such as ``{"weights": path}``.
        batch_size: the batch used for forward and training checks.
        image_size: input side for image backbones (None: the backbone's own size).
    """
    entry = get_registry().get(entry) if isinstance(entry, str) else entry
    started = time.perf_counter()
    cuda = torch.cuda.is_available()
    baseline = torch.cuda.memory_allocated() if cuda else 0
    backbone = entry.load(pretrained=pretrained, **(options or {}))
    if not isinstance(backbone, Backbone):
        _fail(entry.id, "load", f"returned {type(backbone).__name__}, expected Backbone")
    report = _check_loaded(entry, backbone, batch_size, image_size)
    model_ref = weakref.ref(backbone.model)
    del backbone
    gc.collect()
    if model_ref() is not None:
        _fail(entry.id, "memory", "the model is still referenced after the backbone is dropped")
    if cuda and torch.cuda.memory_allocated() > baseline:
        _fail(entry.id, "memory", "CUDA memory did not return to its baseline")
    report.seconds = time.perf_counter() - started
    return report


def _sample_data(modality: str, folder: Path, n: int) -> LabelledData:
    """A tiny real dataset of ``n`` samples of ``modality`` written under ``folder`` by the
    modality registry's sample writer."""
    kind = get_modality(modality)
    if kind.sample is None:
        raise PluginError(f"the {modality} modality has no sample writer; give it one "
                          "(Modality.sample) to check its backbones")
    samples = kind.sample(folder, n)
    labels = np.arange(n) % 2
    split = Split(samples, labels) if kind.files else Split([], labels, samples)
    return LabelledData(modality, ["a", "b"], split, split, None, folder)


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    return torch.equal(torch.as_tensor(a), torch.as_tensor(b))


def _sample_inputs(entry: BackboneEntry, backbone: Backbone, batch_size: int, image_size):
    """A batch through the backbone's own preprocessing (the Preprocess protocol), twice."""
    pre = backbone.preprocess
    if not isinstance(pre, Preprocess):
        _fail(entry.id, "preprocess", f"{type(pre).__name__} does not implement Preprocess")
    params = {"image_size": image_size, "augment": "none", "max_length": 32, "clip_seconds": 1.0}
    pre = pre.configure(params)
    if backbone.configure is not None:
        backbone.configure(params)
    with tempfile.TemporaryDirectory() as folder:
        data = _sample_data(entry.modality, Path(folder), batch_size)
        inputs, _ = pre.encode(data, "train")
        data.cache.clear()
        again, _ = pre.encode(data, "train")
    if not _equal(inputs, again):
        _fail(entry.id, "preprocess", "the same samples preprocessed twice differ")
    x = pre.to_input(take(inputs, torch.arange(batch_size)), device=torch.device("cpu"))
    if backbone.channels_last and isinstance(x, torch.Tensor):
        x = x.contiguous(memory_format=torch.channels_last)
    return x


def _check_loaded(entry, backbone: Backbone, batch_size: int, image_size) -> ConformanceReport:
    model = backbone.model
    try:
        head = check_groups(model, backbone.groups)
    except ValueError as exc:
        _fail(entry.id, "groups", str(exc))
    if not backbone.groups:
        _fail(entry.id, "groups", "no layer groups: nothing could be frozen")
    order = {name: i for i, (name, _) in enumerate(model.named_parameters())}
    firsts = [min(order[n] for n in group) for group in backbone.groups]
    if firsts[0] != min(firsts):
        _fail(entry.id, "groups", "the first group is not the input end of the network")
    early = [n for n in head if order[n] < max(order[n] for n in backbone.groups[0])]
    if early:
        _fail(entry.id, "groups", f"head parameter {early[0]!r} comes before the first group")

    x = _sample_inputs(entry, backbone, batch_size, image_size)
    model.eval()
    with torch.inference_mode():
        features = model(x)
    if tuple(features.shape) != (batch_size, backbone.dim):
        _fail(entry.id, "forward", f"gave {tuple(features.shape)}, expected "
              f"({batch_size}, {backbone.dim})")
    if not torch.isfinite(features).all():
        _fail(entry.id, "forward", "features are not finite")

    if backbone.split is not None:
        _check_split(entry.id, backbone, x, features)
    for fraction in FREEZE_FRACTIONS:
        _check_freezing(entry.id, backbone, x, fraction)
    if backbone.lora_targets is not None:
        _check_lora_targets(entry.id, backbone)
    return ConformanceReport(
        id=entry.id, dim=backbone.dim, n_groups=len(backbone.groups),
        n_params=sum(p.numel() for p in model.parameters()),
        n_head_params=sum(p.numel() for n, p in model.named_parameters() if n in set(head)),
        seconds=0.0,
    )


def _check_lora_targets(backbone_id: str, backbone: Backbone) -> None:
    """``lora_targets``: regexes that match modules peft can adapt (linear, convolution,
    embedding layers), inside the layer groups."""
    from autotransfer.errors import BackboneError
    from autotransfer.finetune.methods.lora import declared_targets

    try:
        names = declared_targets(backbone.model, backbone.lora_targets, backbone_id)
    except BackboneError as exc:
        _fail(backbone_id, "lora_targets", str(exc).removeprefix(f"{backbone_id}: "))
    grouped = {n for g in backbone.groups for n in g}
    kinds = (torch.nn.Linear, torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d,
             torch.nn.Embedding)
    for name in names:
        module = backbone.model.get_submodule(name)
        if not isinstance(module, kinds):
            _fail(backbone_id, "lora_targets", f"{name!r} is a {type(module).__name__}; LoRA "
                  "adapts linear, convolution and embedding layers")
        if f"{name}.weight" not in grouped:
            _fail(backbone_id, "lora_targets", f"{name!r} is in no layer group")


def _check_split(backbone_id: str, backbone: Backbone, x, features) -> None:
    """``split(k)``: a prefix of frozen groups only, and ``rest(prefix(x)) == model(x)``."""
    n = len(backbone.groups)
    by_name = dict(backbone.model.named_parameters())
    for k in sorted({1, n // 2, n} - {0}):
        found = backbone.split(k)
        if found is None:
            continue
        prefix, rest = found
        allowed = {id(by_name[name]) for group in backbone.groups[:k] for name in group}
        if any(id(p) not in allowed for p in prefix.parameters()):
            _fail(backbone_id, f"split({k})", "the prefix holds parameters of later groups")
        with torch.inference_mode():
            again = rest(prefix(x))
        if not torch.allclose(again, features, rtol=1e-4, atol=1e-4):
            _fail(backbone_id, f"split({k})", "rest(prefix(x)) differs from model(x)")


def _check_freezing(backbone_id: str, backbone: Backbone, x, fraction: float) -> None:
    torch.manual_seed(0)
    body = copy.deepcopy(backbone.model)
    model = nn.ModuleDict({"body": body, "head": nn.Linear(backbone.dim, 3)})
    groups = [[f"body.{n}" for n in g] for g in backbone.groups]
    frozen = freeze(model, groups, fraction)
    expected = {n for g in groups[: int(fraction * len(groups) + 1e-9)] for n in g}
    if frozen != expected:
        _fail(backbone_id, f"freeze {fraction}", "frozen parameters are not the first groups")
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    train_mode(model, frozen)
    if fraction == 1.0:
        with torch.no_grad():
            if not torch.equal(body(x), body(x)):
                _fail(backbone_id, "freeze 1.0", "a fully frozen body is not deterministic")
    optimizer = torch.optim.SGD(param_groups(model, groups, lr=0.1), lr=0.1)
    features = body(x)
    loss = nn.functional.cross_entropy(model["head"](features), torch.arange(len(features)) % 3)
    loss.backward()
    optimizer.step()
    state = model.state_dict()
    frozen_modules_names = {n.rsplit(".", 1)[0] for n in frozen}
    for key, value in state.items():
        owner = key.rsplit(".", 1)[0]
        if (key in frozen or owner in frozen_modules_names) and not torch.equal(value, before[key]):
            _fail(backbone_id, f"freeze {fraction}", f"{key} changed although frozen")
    trained = [k for k in state if k not in frozen and not torch.equal(state[k], before[k])]
    if not any(k.startswith("head.") for k in trained):
        _fail(backbone_id, f"freeze {fraction}", "the head did not train")
    if fraction == 0.0 and not any(k.startswith("body.") for k in trained):
        _fail(backbone_id, "freeze 0.0", "no body parameter trained with nothing frozen")


# -- fakes ------------------------------------------------------------------------------------


# -- services ---------------------------------------------------------------------------------




