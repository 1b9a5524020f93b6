"""Images: decode once to uint8 tensors at the backbone's input size, batch, augment."""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from autotransfer.contract.hyperparameters import AUGMENTATIONS
from autotransfer.data._source import DataWarning, LabelledData, Split
from autotransfer.errors import DataError

if TYPE_CHECKING:  # torch loads on first use: listing backbones and zoos never needs it
    import torch

_RESAMPLE = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
}


@dataclass(frozen=True)
class ImagePreprocess:
    """Eval-time image transform matching a backbone's pretraining (timm's convention).

    The shorter side is resized to ``size / crop_pct``, the centre ``size`` x ``size`` crop is
    kept, and pixels are scaled to [0, 1] then normalised with ``mean`` and ``std``.
    """

    size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str = "bicubic"
    crop_pct: float = 0.875
    fixed_size: bool = False  # the model only takes ``size`` (e.g. a ViT's position table)
    augment: str = "none"

    @property
    def random_in_training(self) -> bool:
        """Whether training batches are augmented (``to_input(train=True)`` is random)."""
        return self.augment != "none"

    @property
    def training_views(self) -> int | None:
        """How many distinct inputs training can make of one image when that is finite:
        ``none`` 1, ``flip`` 2 (as is, mirrored); None for ``crop_flip`` (continuous)."""
        return {"none": 1, "flip": 2}.get(self.augment)

    def draw_views(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Which training view each of ``n`` images gets: int64 ``(n,)`` drawn with the very
        generator calls ``to_input(train=True)`` makes, so a cache of every view trains on
        exactly the inputs live augmentation would give (``flip`` only)."""
        return _draw_flips(n, generator).long()

    def to_view(self, batch: torch.Tensor, view: int, *, device: torch.device) -> torch.Tensor:
        """Training view ``view`` (< ``training_views``) of a uint8 batch, normalised on
        ``device``: 0 as is, 1 mirrored."""
        return self.normalize((batch.flip(-1) if view else batch).to(device, non_blocking=True))

    def with_size(self, size: int | None) -> ImagePreprocess:
        """This transform at input side ``size``; a fixed-size model keeps its own size."""
        return self if size is None or self.fixed_size else replace(self, size=int(size))

    def configure(self, params: dict) -> ImagePreprocess:
        """This transform with a trial's ``image_size`` and ``augment``."""
        configured = self.with_size(params.get("image_size"))
        return replace(configured, augment=params.get("augment") or "none")

    def encode(self, data: LabelledData, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        """The split as uint8 ``(N, 3, S, S)`` images plus labels, cached on ``data``."""
        return image_tensors(data, split, self)

    def to_input(
        self,
        batch: torch.Tensor,
        *,
        device: torch.device,
        train: bool = False,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Augment (when training) on the batch's device, then normalise on ``device``."""
        if train:
            batch = augment(batch, self.augment, generator)
        return self.normalize(batch.to(device, non_blocking=True))

    def normalize(self, batch: torch.Tensor) -> torch.Tensor:
        """uint8 ``(B, 3, H, W)`` -> normalised float32 on the same device."""
        import torch

        mean = torch.tensor(self.mean, device=batch.device).view(1, 3, 1, 1) * 255.0
        std = torch.tensor(self.std, device=batch.device).view(1, 3, 1, 1) * 255.0
        return (batch.float() - mean) / std


def to_rgb(image: Image.Image) -> Image.Image:
    """RGB for any PIL mode: grayscale, 16-bit, palette and alpha (composited on white)."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        array = np.asarray(image, dtype=np.float64)
        peak = array.max() or 1.0
        image = Image.fromarray((array * (255.0 / peak)).astype(np.uint8))
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def load_image(path: Path, preprocess: ImagePreprocess) -> np.ndarray:
    """Decode ``path`` to a uint8 ``(3, size, size)`` array; a bad file is a DataError."""
    try:
        with Image.open(path) as raw:
            image = to_rgb(raw)
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise DataError(f"{path}: unreadable image ({exc})") from None
    # timm's eval transform step for step (Resize(floor(size / crop_pct)) of the shorter side,
    # then CenterCrop), so that an exported model gets the same input from timm's own transforms
    size = preprocess.size
    short = max(size, math.floor(size / preprocess.crop_pct))
    width, height = image.size
    if width <= height:
        width, height = short, int(short * height / width)
    else:
        width, height = int(short * width / height), short
    if (width, height) != image.size:
        image = image.resize((width, height), _RESAMPLE.get(preprocess.interpolation))
    left, top = int(round((width - size) / 2.0)), int(round((height - size) / 2.0))
    image = image.crop((left, top, left + size, top + size))
    return np.ascontiguousarray(np.asarray(image, dtype=np.uint8).transpose(2, 0, 1))


def check_images(data: LabelledData, *, max_unreadable: float = 0.05) -> list[Path]:
    """Check every image before any trial; drop unreadable ones, warning with their names.

    Up to ``max_unreadable`` (a fraction of all images) are skipped with a ``DataWarning``
    that lists them; more is a DataError, since the data is then more likely at fault.
    Returns the skipped files.
    """
    bad: dict[Path, str] = {}
    for split in data.splits().values():
        for path in split.paths:
            try:
                with Image.open(path) as image:
                    image.verify()
                with Image.open(path) as image:  # verify() misses truncated pixel data
                    image.load()
            except Exception as exc:
                bad[path] = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if not bad:
        return []
    total = sum(len(s) for s in data.splits().values())
    listed = ", ".join(f"{p} ({why})" for p, why in list(bad.items())[:5])
    more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
    if len(bad) > max_unreadable * total:
        raise DataError(
            f"{len(bad)} of {total} images are unreadable (more than "
            f"{max_unreadable:.0%}): {listed}{more}"
        )
    for name, split in data.splits().items():
        keep = [i for i, p in enumerate(split.paths) if p not in bad]
        if len(keep) < len(split):
            setattr(data, name, split.subset(np.array(keep, dtype=np.int64)))
    warnings.warn(DataWarning(f"skipped {len(bad)} unreadable image(s): {listed}{more}"),
                  stacklevel=2)
    return list(bad)


def image_tensors(
    data: LabelledData, split: str, preprocess: ImagePreprocess
) -> tuple[torch.Tensor, torch.Tensor]:
    """The split decoded to uint8 ``(N, 3, S, S)`` plus labels, cached on ``data``."""
    import torch

    key = ("image", split, preprocess.size, preprocess.crop_pct, preprocess.interpolation)
    if key not in data.cache:
        part: Split = data.splits()[split]
        workers = min(8, os.cpu_count() or 1)
        with ThreadPoolExecutor(workers) as pool:  # PIL decodes without the GIL
            arrays = list(pool.map(lambda p: load_image(p, preprocess), part.paths))
        images = torch.from_numpy(np.stack(arrays))
        data.cache[key] = (images, torch.from_numpy(part.labels))
    return data.cache[key]


def take(inputs: Any, index: torch.Tensor) -> Any:
    """Rows ``index`` of a tensor, or of every tensor in a dict (text ids, audio features)."""
    if isinstance(inputs, dict):
        return {key: value[index] for key, value in inputs.items()}
    return inputs[index]


def iterate_batches(
    images: Any,
    labels: torch.Tensor,
    batch_size: int,
    *,
    shuffle: bool,
    generator: torch.Generator | None = None,
) -> Iterator[tuple[Any, torch.Tensor]]:
    """Batches of ``(encoded inputs, labels)``, in a seeded random order when ``shuffle``.

    ``images`` is what a preprocess's ``encode`` returned: a tensor or a dict of tensors.
    """
    import torch

    n = len(labels)
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    for start in range(0, n, batch_size):
        index = order[start : start + batch_size]
        yield take(images, index), labels[index]


def _draw_flips(n: int, generator: torch.Generator | None) -> torch.Tensor:
    import torch

    return torch.rand(n, generator=generator) < 0.5


def augment(batch: torch.Tensor, kind: str, generator: torch.Generator | None = None):
    """Train-time augmentation of a uint8 ``(B, 3, H, W)`` batch, on its own device.

    ``flip``: random horizontal flips. ``crop_flip``: flips plus a random shift of up to an
    eighth of the side (reflect padding), the classic small-image crop.
    """
    import torch

    if kind == "none":
        return batch
    if kind not in AUGMENTATIONS:
        raise ValueError(f"augment must be one of {AUGMENTATIONS}, got {kind=}")
    b, _, h, w = batch.shape
    flip = _draw_flips(b, generator)
    batch = torch.where(flip.to(batch.device).view(b, 1, 1, 1), batch.flip(-1), batch)
    if kind == "crop_flip":
        pad = max(1, min(h, w) // 8)
        padded = torch.nn.functional.pad(batch.float(), (pad, pad, pad, pad), mode="reflect")
        shifts = torch.randint(0, 2 * pad + 1, (b, 2), generator=generator).tolist()
        batch = torch.stack(
            [padded[i, :, dy : dy + h, dx : dx + w] for i, (dy, dx) in enumerate(shifts)]
        ).to(batch.dtype)
    return batch
