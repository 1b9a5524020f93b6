"""Demo data: a class-folder subset of Fashion-MNIST from Debian's ``dataset-fashion-mnist``.

    python -m autotransfer.demo fashion-mnist data/fashion-mnist --per-class 100
"""

from __future__ import annotations

import argparse
import gzip
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", choices=["fashion-mnist"])
    parser.add_argument("out", type=Path)
    parser.add_argument("--per-class", type=int, default=100)
    parser.add_argument("--test-per-class", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    export_fashion_mnist(
        args.out, per_class=args.per_class, test_per_class=args.test_per_class, seed=args.seed
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
