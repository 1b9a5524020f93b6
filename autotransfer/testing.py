"""Conformance checks and fakes for plugin authors' tests (and this project's own).

In a plugin's test suite::

    from autotransfer.testing import check_backbone

    def test_my_backbones_conform():
        check_backbone("myzoo/tiny-net")   # raises ConformanceError naming what broke

Lazy catalogues: :func:`check_catalogue` (a zoo's ``BackboneCatalogue`` lists and looks up
what it should, and building the registry does not list it) and :func:`check_plugin_is_light`
(loading the plugin imports no model library).

Fakes: :class:`FakeZoo` (a plugin offering tiny real CNNs), :func:`registered_plugin`
(register a plugin for the duration of a ``with`` block) and :class:`DeterministicPruner`.
Services: :func:`throwaway_postgres` (a real PostgreSQL server for the length of a ``with``).
"""

from __future__ import annotations

import contextlib
import copy
import gc
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from autotransfer._catalogue_check import check_catalogue as check_catalogue
from autotransfer._catalogue_check import check_plugin_is_light as check_plugin_is_light
from autotransfer.backbones import (
    Backbone,
    BackboneEntry,
    Preprocess,
    get_registry,
    reset_registry,
)
from autotransfer.data import ImagePreprocess, LabelledData, Split, take
from autotransfer.errors import AutotransferError
from autotransfer.hookspecs import hookimpl
from autotransfer.layers import check_groups, freeze, group_names, param_groups, train_mode

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
    """Check one backbone against the contract of DESIGN.md; raise ConformanceError if not.

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
    """A tiny real dataset of ``n`` samples of ``modality`` written under ``folder``."""
    rng = np.random.default_rng(0)
    labels = np.arange(n) % 2
    paths: list[Path] = []
    texts = None
    if modality == "image":
        from PIL import Image

        for i in range(n):
            paths.append(folder / f"{i}.png")
            Image.fromarray(rng.integers(0, 255, (37, 53, 3), dtype=np.uint8)).save(paths[-1])
    elif modality == "audio":
        import soundfile

        for i in range(n):
            paths.append(folder / f"{i}.wav")
            t = np.arange(16_000) / 16_000
            soundfile.write(paths[-1], 0.3 * np.sin(2 * np.pi * (220 + 110 * i) * t), 16_000)
    else:
        texts = [f"sample text number {i}, a little longer each time" + " more" * i
                 for i in range(n)]
    split = Split(paths, labels, texts)
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
    return ConformanceReport(
        id=entry.id, dim=backbone.dim, n_groups=len(backbone.groups),
        n_params=sum(p.numel() for p in model.parameters()),
        n_head_params=sum(p.numel() for n, p in model.named_parameters() if n in set(head)),
        seconds=0.0,
    )


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


class TinyCNN(nn.Module):
    """A real, tiny CNN (stem, blocks with BatchNorm and dropout, pooled features)."""

    def __init__(self, width: int = 8, depth: int = 3) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, width, 3, 2, 1), nn.BatchNorm2d(width), nn.ReLU())
        self.blocks = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(width, width, 3, 1, 1), nn.BatchNorm2d(width), nn.ReLU(),
                nn.Dropout(0.1),
            )
            for _ in range(depth)
        )
        self.norm = nn.BatchNorm2d(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for block in self.blocks:
            x = x + block(x)
        return self.norm(x).mean((2, 3))


def tiny_cnn_backbone(pretrained: bool = True, width: int = 8, depth: int = 3) -> Backbone:
    """A TinyCNN as a Backbone; ``pretrained`` only changes the seed of its weights."""
    torch.manual_seed(1 if pretrained else 2)
    model = TinyCNN(width, depth)
    matcher = {"stem": r"^stem", "blocks": [(r"^blocks\.(\d+)", None), (r"^norm", (99999,))]}
    return Backbone(
        model=model,
        dim=width,
        groups=group_names([n for n, _ in model.named_parameters()], matcher),
        preprocess=ImagePreprocess(32, (0.5,) * 3, (0.5,) * 3, "bilinear", 1.0),
        channels_last=True,
    )


class FakeZoo:
    """A plugin offering ``fake/tiny-cnn`` and ``fake/tiny-cnn-wide`` (tiny real CNNs)."""

    @hookimpl
    def register_backbones(self, register: Callable[[BackboneEntry], None]) -> None:
        register(BackboneEntry("fake/tiny-cnn", "image", loader=tiny_cnn_backbone, params=1_600,
                               description="a tiny CNN for tests"))
        register(BackboneEntry(
            "fake/tiny-cnn-wide", "image",
            loader=lambda pretrained=True: tiny_cnn_backbone(pretrained, width=16),
            description="a wider tiny CNN for tests",
        ))


@contextlib.contextmanager
def registered_plugin(plugin: object, name: str = "fake-zoo") -> Iterator[object]:
    """Register ``plugin`` and rebuild the registry; always unregister afterwards."""
    from autotransfer.plugins import load_plugins, pm

    load_plugins()
    pm.register(plugin, name=name)
    reset_registry()
    try:
        yield plugin
    finally:
        pm.unregister(name=name)
        reset_registry()


class DeterministicPruner:
    """An Optuna pruner that prunes exactly the trials it is told to, at a given step.

    ``DeterministicPruner({1: 1})`` prunes trial 1 once it has reported step 1; a callable
    ``(trial_number, step) -> bool`` works too.
    """

    def __new__(cls, prune_at: dict[int, int] | Callable[[int, int], bool]):
        import optuna

        class _Pruner(optuna.pruners.BasePruner):
            def prune(self, study, trial) -> bool:
                step = trial.last_step
                if step is None:
                    return False
                if callable(prune_at):
                    return bool(prune_at(trial.number, step))
                return trial.number in prune_at and step >= prune_at[trial.number]

        return _Pruner()


# -- services ---------------------------------------------------------------------------------


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def throwaway_postgres(password: str = "s3cret") -> Iterator[str]:
    """Start a PostgreSQL cluster in a temporary folder on 127.0.0.1 and a free port; yield the
    URL of a database owned by user ``at`` with ``password``; stop and delete it afterwards.

    Needs the server binaries (Debian: ``apt-get install postgresql``); as root, the server runs
    as the ``postgres`` user, since ``initdb`` refuses root.
    """
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        raise AutotransferError("PostgreSQL server missing: apt-get install postgresql")
    bindir = Path(found[-1]).parent
    as_postgres: list[str] = []
    root = Path(tempfile.mkdtemp(prefix="autotransfer-pg-"))
    if os.geteuid() == 0:
        as_postgres = ["runuser", "-u", "postgres", "--"]
        shutil.chown(root, "postgres")
    port = free_port()
    data = root / "data"

    def run(*args: str) -> None:
        subprocess.run([*as_postgres, *args], check=True, capture_output=True, timeout=120)

    try:
        run(str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust",
            "-E", "UTF8")
        run(str(bindir / "pg_ctl"), "-D", str(data), "-w", "-l", str(root / "log"), "-o",
            f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c max_connections=200",
            "start")
        try:
            for sql in (f"CREATE USER at PASSWORD '{password}'", "CREATE DATABASE at OWNER at"):
                run(str(bindir / "psql"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres",
                    "-v", "ON_ERROR_STOP=1", "-c", sql)
            yield f"postgresql+psycopg://at:{password}@127.0.0.1:{port}/at"
        finally:
            run(str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop")
    finally:
        shutil.rmtree(root, ignore_errors=True)
