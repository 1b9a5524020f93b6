"""A third-party plugin, written outside the core: a ``vector`` modality and a zoo for it.

A sample is a ``.vec`` file holding one line of ``DIM`` numbers. The plugin brings what a
modality needs (its file suffix, a per-file check run before trial 1, a sample writer for the
conformance check, the folder reader), a tiny MLP zoo, ``toyvec/mlp``, whose preprocess reads
the files, and a model format (``torch.save`` of the body). Like a real plugin it imports only
``autotransfer.plugin`` and public libraries; no core file knows it
(``tests/test_modality_plugin.py`` runs a search on it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from autotransfer.plugin import (
    Backbone,
    BackboneEntry,
    Modality,
    ModelFormat,
    group_names,
    hookimpl,
    model_with_saved_head,
    read_files,
    save_linear_head,
)

SUFFIX = ".vec"
DIM = 8


def read_vector(path: Path) -> np.ndarray:
    """The numbers of one ``.vec`` file, ``(DIM,)`` float32 (ValueError when not numbers)."""
    return np.array(path.read_text().split(), dtype=np.float32)


def vector_problem(path: Path) -> tuple[str | None, str | None]:
    """The modality's per-file check: ``(problem, note)``."""
    try:
        vector = read_vector(path)
    except (OSError, ValueError) as exc:
        return f"not a vector ({type(exc).__name__})", None
    if vector.shape != (DIM,):
        return f"{vector.size} numbers, expected {DIM}", None
    if not np.isfinite(vector).all():
        return "holds NaN or inf", None
    return None, None


def write_vector(path: Path, vector: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(" ".join(f"{v:.5f}" for v in vector) + "\n")
    return path


def write_samples(folder: Path, n: int) -> list[Path]:
    """``n`` random vectors written under ``folder`` (the conformance check's samples)."""
    rng = np.random.default_rng(0)
    return [write_vector(folder / f"s{i}{SUFFIX}", rng.normal(size=DIM)) for i in range(n)]


class VectorPreprocess:
    """Reads a split's files into a float tensor ``(N, DIM)``, once per dataset."""

    random_in_training = False  # no augmentation

    def configure(self, params: dict[str, Any]) -> VectorPreprocess:
        return self

    def encode(self, data: Any, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        key = ("vector", split)
        if key not in data.cache:
            part = getattr(data, split)
            rows = [read_vector(Path(p)) for p in part.paths] or [np.zeros((0, DIM))]
            inputs = torch.from_numpy(np.stack(rows).astype(np.float32).reshape(-1, DIM))
            data.cache[key] = (inputs, torch.as_tensor(part.labels, dtype=torch.long))
        return data.cache[key]

    def to_input(self, batch: torch.Tensor, *, device: torch.device, train: bool = False,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        return batch.to(device)


class MLP(nn.Module):
    """A stem and two residual blocks: pooled features ``(B, 16)``."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Linear(DIM, 16), nn.ReLU())
        self.blocks = nn.ModuleList(nn.Sequential(nn.Linear(16, 16), nn.ReLU()) for _ in range(2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for block in self.blocks:
            x = x + block(x)
        return x


def mlp_backbone(pretrained: bool = True) -> Backbone:
    torch.manual_seed(1 if pretrained else 2)
    model = MLP()
    matcher = {"stem": r"^stem", "blocks": [(r"^blocks\.(\d+)", None)]}
    return Backbone(model=model, dim=16, preprocess=VectorPreprocess(),
                    groups=group_names([n for n, _ in model.named_parameters()], matcher))


def _export(model, preprocess, out: Path, classes: list[str]) -> dict[str, Any]:
    torch.save(model.body.state_dict(), out / "body.pt")
    save_linear_head(model.head[-1], out)
    return {"preprocess": {"kind": "vector"}}


def _load(directory: Path, meta: dict[str, Any], trust_remote_code: bool = False):
    backbone = mlp_backbone()
    backbone.model.load_state_dict(torch.load(directory / "body.pt", weights_only=True))
    return model_with_saved_head(backbone, meta, directory)


class VectorPlugin:
    """The plugin: the ``vector`` modality, the ``toyvec`` zoo and its model format."""

    @hookimpl
    def register_modalities(self, register) -> None:
        register(Modality("vector", frozenset({SUFFIX}), "vector file", vector_problem,
                          write_samples, read_files))

    @hookimpl
    def register_backbones(self, register) -> None:
        register(BackboneEntry("toyvec/mlp", "vector", loader=mlp_backbone, params=832,
                               description="a tiny MLP over .vec files"))

    @hookimpl
    def register_model_formats(self, register) -> None:
        register(ModelFormat("toyvec-torch", can_export=lambda body, m: isinstance(body, MLP),
                             export=_export, load=_load, modality="vector"))
