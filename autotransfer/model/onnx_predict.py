"""``autotransfer predict`` with ONNX Runtime alone: an export folder's ``model.onnx`` (or
``model.int8.onnx``) and its ``manifest.json`` (:func:`read_manifest`); no PyTorch model is
built. :func:`autotransfer.model.predict.predict` collects the inputs and calls :func:`run_onnx`.

The preprocessing is read from the manifest, step by step as it is written there (the plain
script of ``docs/train-predict.md`` does the same): images decoded by the package's decoder
(:func:`autotransfer.data._images.open_image`) then resized, cropped and normalised with numpy;
texts tokenised by the tokenizer saved in the folder; audio clips decoded by
:func:`autotransfer.data.load_audio` and turned into features by the saved feature extractor.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from autotransfer.errors import DataError, first_line

_RESAMPLE = ("nearest", "bilinear", "bicubic", "lanczos")


def image_array(path: Any, preprocess: dict[str, Any]) -> np.ndarray:
    """One image as float32 ``(3, size, size)``, by the manifest's ``preprocess`` (image).

    Raises:
        DataError: the file cannot be decoded.
    """
    from PIL import Image

    from autotransfer.data._images import open_image

    image = open_image(path)
    short, size = int(preprocess["resize"]), int(preprocess["size"])
    width, height = image.size
    scaled = ((short, int(short * height / width)) if width <= height
              else (int(short * width / height), short))
    resample = getattr(Image.Resampling, str(preprocess["interpolation"]).upper())
    image = image.resize(scaled, resample)
    left, top = round((scaled[0] - size) / 2), round((scaled[1] - size) / 2)
    pixels = np.asarray(image.crop((left, top, left + size, top + size)), dtype=np.float32)
    mean = np.asarray(preprocess["mean"], dtype=np.float32)
    std = np.asarray(preprocess["std"], dtype=np.float32)
    return ((pixels / 255.0 - mean) / std).transpose(2, 0, 1)


class Encoder:
    """Samples (paths, texts) -> ONNX Runtime feeds, by the manifest."""

    def __init__(self, folder: Path, manifest: dict[str, Any]) -> None:
        self.preprocess = manifest["preprocess"]
        self.kind = self.preprocess["kind"]
        self.inputs = [i["name"] for i in manifest["inputs"]]
        self.processor = None
        if self.kind in ("text", "audio"):
            import transformers

            transformers.utils.logging.disable_progress_bar()
            load = (transformers.AutoTokenizer if self.kind == "text"
                    else transformers.AutoFeatureExtractor)
            self.processor = load.from_pretrained(str(folder))

    def one(self, sample: Any) -> Any:
        """One sample decoded (a DataError names a bad file)."""
        if self.kind == "image":
            return image_array(sample, self.preprocess)
        if self.kind == "audio":
            from autotransfer.data import load_audio

            return load_audio(sample, int(self.preprocess["sampling_rate"]),
                              int(self.preprocess["n_samples"]))
        return sample

    def feeds(self, decoded: list[Any]) -> dict[str, np.ndarray]:
        """The feeds of decoded samples (one batch)."""
        p = self.preprocess
        if self.kind == "image":
            return {self.inputs[0]: np.stack(decoded)}
        if self.kind == "text":
            out = self.processor(decoded, truncation=True, max_length=int(p["max_length"]),
                                 padding="longest", return_tensors="np")
            return {n: np.asarray(out[n], dtype=np.int64) for n in self.inputs}
        out = self.processor(decoded, sampling_rate=int(p["sampling_rate"]), return_tensors="np",
                             **p.get("extractor_kwargs", {}))
        return {p["input_name"]: np.asarray(out[p["input_name"]], dtype=np.float32)}


def read_manifest(path: str | Path) -> tuple[Path, dict[str, Any]]:
    """``(model file, manifest)`` of an ONNX export: ``path`` is a ``.onnx`` file in an export
    folder, the folder, or a native model directory holding one.

    Raises:
        ModelDirError: no manifest there, or not one this autotransfer reads.
    """
    from autotransfer.model.export import ModelDirError
    from autotransfer.model.onnx_export import FOLDER, FORMAT, FORMAT_VERSION, MANIFEST

    path = Path(path)
    folder = path.parent if path.suffix == ".onnx" else path
    if (folder / FOLDER / MANIFEST).is_file() and not (folder / MANIFEST).is_file():
        folder = folder / FOLDER
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelDirError(f"{folder}: no {MANIFEST}; expected the onnx folder that "
                            "autotransfer train --export onnx writes") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelDirError(f"{folder / MANIFEST}: unreadable ({first_line(exc)})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ModelDirError(f"{folder / MANIFEST}: not an autotransfer ONNX manifest")
    if manifest.get("format_version", 0) > FORMAT_VERSION:
        raise ModelDirError(f"{folder / MANIFEST}: format version {manifest['format_version']}"
                            f" is newer than this autotransfer reads; upgrade autotransfer")
    model = path if path.suffix == ".onnx" else folder / manifest["model"]
    if not model.is_file():
        raise ModelDirError(f"{model}: no such ONNX file")
    return model, manifest


def is_onnx_export(path: str | Path) -> bool:
    """Whether ``path`` names an ONNX export (a ``.onnx`` file or a folder with a manifest)."""
    from autotransfer.model.onnx_export import MANIFEST

    path = Path(path)
    return path.suffix == ".onnx" or (path / MANIFEST).is_file()


def run_onnx(model_file: Path, manifest: dict[str, Any], names: list[str],
             samples: list[Any], *, batch_size: int) -> tuple[list[str], np.ndarray]:
    """``(names kept, probabilities (N, K))`` of the samples through ONNX Runtime on the CPU;
    an input that cannot be decoded is named in one warning and left out.

    Raises:
        DataError: no input can be read.
    """
    from autotransfer.data import DataWarning
    from autotransfer.finetune.onnx_graph import needs, session
    from autotransfer.model.onnx_checks import softmax

    needs()
    encoder = Encoder(model_file.parent, manifest)
    kept, decoded, bad = [], [], []
    for name, sample in zip(names, samples, strict=True):
        try:
            decoded.append(encoder.one(sample))
        except DataError as exc:
            bad.append(str(exc) if name in str(exc) else f"{name}: {exc}")
            continue
        kept.append(name)
    if bad:
        listed = "; ".join(bad[:5]) + (f"; and {len(bad) - 5} more" if len(bad) > 5 else "")
        if not kept:
            raise DataError(f"none of the {len(names)} inputs could be read: {listed}")
        warnings.warn(DataWarning(f"{len(bad)} of {len(names)} inputs could not be read and "
                                  f"have no prediction: {listed}"), stacklevel=3)
    run = session(model_file)
    rows = []
    for start in range(0, len(decoded), batch_size):
        logits = run.run(["logits"], encoder.feeds(decoded[start : start + batch_size]))[0]
        rows.append(softmax(logits.astype(np.float64)))
    return kept, np.concatenate(rows)
