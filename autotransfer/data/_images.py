"""Images: decode once to uint8 tensors at the backbone's input size, batch, augment."""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from autotransfer.data.dataset import LabelledData, Split
from autotransfer.data.hf_rows import readable
from autotransfer.data.store import encode_split
from autotransfer.errors import DataError
from autotransfer.space.hyperparameters import AUGMENTATIONS

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


def _scaled_to_uint8(image: Image.Image) -> Image.Image:
    """A 16/32-bit integer or float (``F``) image as 8-bit grayscale, by the rule in the docs.

    ``I;16*``: divided by 257 (65535 -> 255), the bit depth and not the brightest pixel, as
    torchvision's ``ToDtype`` does for 16-bit PNGs. ``I`` (32-bit integer): values within
    0..255 are kept, within 0..65535 treated as 16-bit, otherwise the value range is stretched
    to 0..255. ``F``: values within 0..1 are multiplied by 255, otherwise the value range is
    stretched. NaN becomes 0.
    """
    array = np.asarray(image, dtype=np.float64)
    if image.mode.startswith("I;16"):
        scaled = array / 257.0
    else:
        array = np.nan_to_num(array, nan=0.0, posinf=0.0, neginf=0.0)
        low, high = (float(array.min()), float(array.max())) if array.size else (0.0, 0.0)
        if image.mode == "F" and low >= 0.0 and high <= 1.0:
            scaled = array * 255.0
        elif image.mode == "I" and low >= 0.0 and high <= 255.0:
            scaled = array
        elif image.mode == "I" and low >= 0.0 and high <= 65535.0:
            scaled = array / 257.0
        else:
            scaled = (array - low) * (255.0 / (high - low)) if high > low else array * 0.0
    return Image.fromarray(np.clip(np.rint(scaled), 0, 255).astype(np.uint8))


def to_rgb(image: Image.Image) -> Image.Image:
    """RGB for any PIL mode: grayscale, 16/32-bit and float (scaled, see ``_scaled_to_uint8``),
    CMYK, palette with transparency and alpha (composited on white)."""
    if image.mode.startswith("I") or image.mode == "F":
        image = _scaled_to_uint8(image)
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def open_image(path: Path) -> Image.Image:
    """The image at ``path`` as a photo viewer shows it, in RGB: the one decoder of the package.

    The first frame of an animated GIF or multi-page TIFF; EXIF orientation applied
    (``PIL.ImageOps.exif_transpose``); then :func:`to_rgb`.

    Raises:
        DataError: the file cannot be decoded (names it and Pillow's reason), or is over
            Pillow's decompression-bomb limit (:mod:`autotransfer.data.pixels`).
    """
    from autotransfer.data.pixels import quiet_pillow_warning, warn_large

    quiet_pillow_warning()  # warn_large names the file instead
    try:  # path: a Path, or a dataset row (autotransfer.data.hf_rows.HFRow)
        with Image.open(readable(path)) as raw:
            raw.seek(0)
            warn_large(path, raw)
            return to_rgb(ImageOps.exif_transpose(raw))
    except Image.DecompressionBombError as exc:  # names the file and how to allow it (#26)
        from autotransfer.data.pixels import open_large

        return open_large(path, exc, open_image)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError) as exc:
        raise DataError(f"{path}: unreadable image ({exc})") from None


def load_image(path: Path, preprocess: ImagePreprocess) -> np.ndarray:
    """Decode ``path`` to a uint8 ``(3, size, size)`` array; a bad file is a DataError."""
    image = open_image(path)
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


def image_problem(path: Path) -> tuple[str | None, str | None]:
    """``(problem, None)``: why the image cannot be used (decoded fully, as training will), or
    ``(None, None)``."""
    try:
        open_image(path)
    except DataError as exc:
        return str(exc).removeprefix(f"{path}: ").replace(f" '{path}'", ""), None
    return None, None


def write_samples(folder: Path, n: int) -> list[Path]:
    """``n`` small random RGB PNGs in ``folder`` (conformance tests)."""
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        paths.append(folder / f"{i}.png")
        Image.fromarray(rng.integers(0, 255, (37, 53, 3), dtype=np.uint8)).save(paths[-1])
    return paths


def image_tensors(
    data: LabelledData, split: str, preprocess: ImagePreprocess
) -> tuple[torch.Tensor, torch.Tensor]:
    """The split decoded to uint8 ``(N, 3, S, S)`` plus labels, cached on ``data``."""
    import torch

    key = ("image", split, preprocess.size, preprocess.crop_pct, preprocess.interpolation)
    if key not in data.cache:
        part: Split = data.splits()[split]
        encoded = encode_split(data, part, ["image", *key[2:]],
                               lambda: image_chunks(part.paths, preprocess))
        data.cache[key] = (encoded["images"], torch.from_numpy(part.labels))
    return data.cache[key]


def image_chunks(paths: list[Path], preprocess: ImagePreprocess, chunk: int = 256):
    """``{"images": uint8 (b, 3, S, S)}`` for ``chunk`` files at a time, decoded by threads
    (PIL decodes and resizes without the GIL), so that a split never sits in memory whole."""
    with ThreadPoolExecutor(min(8, os.cpu_count() or 1)) as pool:
        for start in range(0, len(paths), chunk):
            arrays = list(pool.map(lambda p: load_image(p, preprocess),
                                   paths[start : start + chunk]))
            yield {"images": np.stack(arrays)}


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
