"""Audio: decode once to fixed-length mono clips at the model's rate, then to model features."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from autotransfer.data.dataset import LabelledData
from autotransfer.data.hf_rows import readable
from autotransfer.data.store import encode_split
from autotransfer.errors import DataError

if TYPE_CHECKING:
    import torch


def _soundfile():
    try:
        import soundfile
    except ImportError:  # pragma: no cover - a dependency of autotransfer
        raise DataError("reading audio needs soundfile: pip install soundfile") from None
    return soundfile


#: a sample beyond this magnitude is absurd (full scale is 1.0; 1000 is 60 dB above it)
ABSURD_SAMPLE = 1e3


def _read(path: Path) -> tuple[np.ndarray, int]:
    """``(samples (frames, channels) float32, rate)``; a DataError says why a file is unusable."""
    soundfile = _soundfile()
    try:
        # a Path, or a dataset row (autotransfer.data.hf_rows.HFRow)
        wave, rate = soundfile.read(readable(path), dtype="float32", always_2d=True)
    except Exception as exc:  # libsndfile's errors for unreadable or unknown formats
        reason = str(exc).split(": ", 1)[-1] if str(exc) else type(exc).__name__
        raise DataError(f"{path}: not readable audio ({reason})") from None
    if wave.shape[0] == 0:
        raise DataError(f"{path}: empty audio (no samples)")
    if not np.isfinite(wave).all():
        raise DataError(f"{path}: holds NaN or infinite samples")
    peak = float(np.abs(wave).max())
    if peak > ABSURD_SAMPLE:
        raise DataError(f"{path}: absurd sample values (up to {peak:.3g}; full scale is 1)")
    return wave, rate


def load_audio(path: Path, sampling_rate: int, n_samples: int) -> np.ndarray:
    """``path`` as float32 mono at ``sampling_rate``: stereo mixed down (the channels'
    mean, as Hugging Face ``datasets`` does), other rates resampled, cut to the first
    ``n_samples`` or zero-padded to them.

    Raises:
        DataError: the file is not audio, empty, or holds NaN, infinite or absurd samples.
    """
    wave, rate = _read(path)
    mono = wave.mean(axis=1)
    if rate != sampling_rate:
        import soxr

        # resample only what the clip keeps (plus a margin for the filter)
        keep = int(np.ceil(n_samples * rate / sampling_rate)) + 64
        mono = soxr.resample(mono[:keep], rate, sampling_rate).astype(np.float32)
    clip = np.zeros(n_samples, dtype=np.float32)
    clip[: min(n_samples, len(mono))] = mono[:n_samples]
    return clip


def audio_problem(path: Path) -> tuple[str | None, str | None]:
    """``(problem, note)`` of one clip, decoded whole: a problem makes it unusable (not audio,
    empty, NaN / infinite / absurd samples); the note flags a clip whose channels cancel out
    in the stereo downmix (silent to the model although not silent)."""
    try:
        wave, _ = _read(path)
    except DataError as exc:
        return str(exc).removeprefix(f"{path}: "), None
    peak = float(np.abs(wave).max())
    if wave.shape[1] > 1 and peak > 1e-4 and float(np.abs(wave.mean(axis=1)).max()) < 1e-4 * peak:
        return None, "silent after the stereo downmix (its channels cancel out)"
    return None, None


def write_samples(folder: Path, n: int) -> list[Path]:
    """``n`` one-second 16 kHz sine WAVs in ``folder`` (conformance tests)."""
    soundfile = _soundfile()
    paths = []
    t = np.arange(16_000) / 16_000
    for i in range(n):
        paths.append(folder / f"{i}.wav")
        soundfile.write(paths[-1], 0.3 * np.sin(2 * np.pi * (220 + 110 * i) * t), 16_000)
    return paths


@dataclass(frozen=True)
class AudioPreprocess:
    """A checkpoint's feature extractor applied once per split to fixed-length clips.

    Attributes:
        extractor: a Hugging Face feature extractor (``__call__(clips, sampling_rate=...)``).
        input_name: the model input it produces (``input_values`` or ``input_features``).
        sampling_rate: the rate the model was trained at; other rates are resampled.
        clip_seconds: clips are cut or zero-padded to this length.
        frame_multiple: the clip length in samples is rounded to a multiple of this (Whisper:
            two mel hops, so that its convolutions give whole positions).
        extractor_kwargs: passed to the extractor with the clips.
        length_kwarg: the extractor's argument that takes the clip length in samples (Whisper:
            ``max_length``, so that it pads to the clip instead of to 30 s).
    """

    extractor: Any
    input_name: str
    sampling_rate: int
    clip_seconds: float = 5.0
    frame_multiple: int = 1
    extractor_kwargs: tuple[tuple[str, Any], ...] = ()
    length_kwarg: str | None = None
    name: str = ""

    @property
    def n_samples(self) -> int:
        frames = max(1, round(self.clip_seconds * self.sampling_rate / self.frame_multiple))
        return frames * self.frame_multiple

    random_in_training = False  # to_input(train=True) is deterministic

    def configure(self, params: dict[str, Any]) -> AudioPreprocess:
        seconds = params.get("clip_seconds")
        return self if seconds is None else replace(self, clip_seconds=float(seconds))

    def clips(self, paths: list[Path]) -> np.ndarray:
        """Decoded clips ``(N, n_samples)``, several files at a time."""
        workers = min(8, os.cpu_count() or 1)
        with ThreadPoolExecutor(workers) as pool:  # libsndfile and soxr release the GIL
            arrays = list(
                pool.map(lambda p: load_audio(p, self.sampling_rate, self.n_samples), paths)
            )
        return np.stack(arrays) if arrays else np.zeros((0, self.n_samples), np.float32)

    def features(self, clips: np.ndarray) -> torch.Tensor:
        """The extractor's output for ``clips``, as one float32 tensor."""
        import torch

        kwargs = dict(self.extractor_kwargs)
        if self.length_kwarg:
            kwargs[self.length_kwarg] = self.n_samples
        out = []
        for start in range(0, len(clips), 64):
            chunk = list(clips[start : start + 64])
            values = self.extractor(
                chunk, sampling_rate=self.sampling_rate, return_tensors="np", **kwargs
            )[self.input_name]
            out.append(torch.from_numpy(np.asarray(values, dtype=np.float32)))
        return torch.cat(out)

    def encode(self, data: LabelledData, split: str):
        """``({input_name: features}, labels)`` for ``split``, cached on ``data``."""
        import torch

        key = ("audio", split, self.name or id(self.extractor), self.sampling_rate, self.n_samples)
        if key not in data.cache:
            part = data.splits()[split]
            named = ["audio", self.name, self.input_name, self.sampling_rate, self.n_samples,
                     dict(self.extractor_kwargs), self.length_kwarg] if self.name else None
            encoded = encode_split(data, part, named, lambda: self.chunks(part.paths))
            data.cache[key] = (encoded, torch.from_numpy(part.labels))
        return data.cache[key]

    def chunks(self, paths: list[Path], chunk: int = 64):
        """``{input_name: features}`` for ``chunk`` files at a time."""
        for start in range(0, len(paths), chunk):
            features = self.features(self.clips(paths[start : start + chunk]))
            yield {self.input_name: features.numpy()}

    def to_input(self, batch, *, device, train: bool = False, generator=None):
        return {k: v.to(device, non_blocking=True) for k, v in batch.items()}
