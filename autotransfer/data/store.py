"""Encoded splits on disk, memory-mapped: decoded once per (data, preprocessing), shared.

Each split's encoded inputs (uint8 images at the backbone's size, audio features at its rate,
token ids) are written once into a folder of ``.npy`` files and then memory-mapped read-only
(copy-on-write) by every trial and every worker process of the machine: the pages live in the
kernel's page cache, counted once however many processes map them, and never as the processes'
anonymous memory. A search's anonymous memory then holds a batch, not a split.

Why numpy memmap rather than Arrow (``datasets``): the encoded inputs are fixed-shape arrays, and
a memmap is one ``torch.from_numpy`` away from a tensor with no copy, so a shuffled batch is one
C-speed gather (``tensor[index]``), exactly as from memory. Arrow would store them as nested lists
and convert every batch through its formatter (a Python-level copy per batch).

Layout: ``DIR/<key>/`` holds one ``<name>.npy`` per input tensor and ``meta.json``, where
``<key>`` is a SHA-256 of the format version, the versions of the decoding libraries
(autotransfer, Pillow, soundfile, soxr, transformers, tokenizers), the split's content (each
file's path, size and modification time in nanoseconds, each text, or each dataset row's
fingerprint; in order) and the preprocessing (e.g. image size, crop, interpolation; tokenizer
and ``max_length``). Writing goes
to ``DIR/<key>.<pid>.tmp/`` then one ``rename``, under an exclusive ``flock`` on ``DIR/<key>.lock``
so that concurrent workers encode a split once and the others wait and map it; a reader sees a
whole entry or none. The folder is bounded (``AUTOTRANSFER_STORE_DISK``, default 20 GiB): after a
write, least recently used entries go first (an entry a process still maps stays readable until
it closes; Linux keeps unlinked files alive).

Where: ``LabelledData.store`` (a folder or ``"memory"``; set by ``search(data_store=...)``,
``--data-store``), else ``AUTOTRANSFER_DATA_STORE``, else ``AUTOTRANSFER_CACHE_DIR/encoded``,
else ``$XDG_CACHE_HOME/autotransfer/encoded`` (``~/.cache/autotransfer/encoded``). ``memory``
keeps today's behaviour: each process decodes each split into its own memory. A store that
cannot be written (read-only, full disk) falls back to memory with a ``DataWarning``. Before
writing, the room an entry needs is checked against the disk's free room
(``shutil.disk_usage``) and then reserved (``os.posix_fallocate``), so that a disk filling up is
an ``OSError`` (``ENOSPC``) and that fallback, never a ``SIGBUS`` in a memory-mapped write; a
partial folder left by a process that died is removed by the next writer.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import json
import math
import os
import re
import shutil
import warnings
import weakref
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from autotransfer.data.dataset import DataWarning, LabelledData, Split
from autotransfer.errors import DataError

if TYPE_CHECKING:  # torch loads on first use: listing backbones and zoos never needs it
    import torch

FORMAT = 1  # bump when what an entry holds, or how samples are decoded, changes
MEMORY = "memory"
DEFAULT_DISK = 20 * 2**30
Chunks = Iterable[dict[str, np.ndarray]]
# digests of stored tensors, so that the activation cache keys them without reading them all
_DIGESTS: dict[int, tuple[weakref.ref, str]] = {}


def store_directory(data: LabelledData | None = None) -> Path | None:
    """The folder encoded splits go to, or None for memory (see the module docstring)."""
    choice = getattr(data, "store", None)
    if choice is None:
        choice = os.environ.get("AUTOTRANSFER_DATA_STORE") or None
    if choice is None:
        cache = os.environ.get("AUTOTRANSFER_CACHE_DIR")
        if cache:
            return Path(cache).expanduser() / "encoded"
        xdg = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
        return Path(xdg).expanduser() / "autotransfer" / "encoded"
    if str(choice).lower() in (MEMORY, "none", "off"):
        return None
    return Path(choice).expanduser()


def split_fingerprint(part: Split) -> str:
    """A digest of what a split's samples are: files by path, size and mtime; texts; rows."""
    h = hashlib.blake2b(digest_size=16)
    if part.texts is not None:
        for text in part.texts:
            h.update(text.encode("utf-8", "surrogatepass") + b"\0")
    for item in part.paths:
        fingerprint = getattr(item, "fingerprint", None)
        if fingerprint is not None:
            h.update(fingerprint().encode() + b"\0")
        else:
            stat = Path(item).stat()
            h.update(f"{Path(item).resolve()}|{stat.st_size}|{stat.st_mtime_ns}\0".encode())
    return h.hexdigest()


@functools.cache
def decoder_versions() -> tuple[str, ...]:
    """Versions of what decodes and encodes samples: a new one may encode differently."""
    from importlib.metadata import PackageNotFoundError, version

    found = []
    for name in ("autotransfer", "pillow", "soundfile", "soxr", "transformers", "tokenizers"):
        try:
            found.append(f"{name}={version(name)}")
        except PackageNotFoundError:
            found.append(f"{name}=-")
    return tuple(found)


def store_key(part: Split, preprocessing: Any) -> str:
    """The entry of ``part`` encoded with ``preprocessing`` (a JSON-able description)."""
    payload = json.dumps([FORMAT, decoder_versions(), split_fingerprint(part), len(part),
                          preprocessing], sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()


def known_digest(anchor: torch.Tensor) -> str | None:
    """The store key of a tensor mapped from the store (None for any other tensor)."""
    found = _DIGESTS.get(id(anchor))
    return found[1] if found is not None and found[0]() is anchor else None


def encode_split(
    data: LabelledData,
    part: Split,
    preprocessing: Any,
    chunks: Callable[[], Chunks],
) -> dict[str, torch.Tensor]:
    """A split's encoded inputs as tensors: mapped from the store, or in memory.

    Args:
        data: the dataset (its ``store`` choice).
        part: the split.
        preprocessing: what, besides the samples, determines the encoding (JSON-able);
            None when it cannot be named across processes (then the split stays in memory).
        chunks: makes an iterator of ``{name: array (b, ...)}`` over the split, in order.

    Returns:
        ``{name: tensor (N, ...)}``, memory-mapped when stored.
    """
    directory = store_directory(data)
    if directory is not None and preprocessing is not None and len(part):
        key = store_key(part, preprocessing)
        try:
            arrays = _stored(directory, key, len(part), chunks)
        except OSError as exc:
            reason = exc.strerror if exc.errno == errno.ENOSPC and exc.strerror else exc
            warnings.warn(DataWarning(
                f"encoded-data store {directory} not usable ({reason}); keeping the split in "
                "memory (free room there, or choose another folder with --data-store / "
                "AUTOTRANSFER_DATA_STORE)"), stacklevel=3)
        else:
            import torch  # first use: torch loads only when a split is encoded

            tensors = {name: torch.from_numpy(array) for name, array in arrays.items()}
            for name, tensor in tensors.items():
                _DIGESTS[id(tensor)] = (weakref.ref(tensor), f"store:{key}:{name}")
            return tensors
    found: dict[str, list[np.ndarray]] = {}
    for chunk in chunks():
        for name, array in chunk.items():
            found.setdefault(name, []).append(array)
    import torch

    return {name: torch.from_numpy(np.concatenate(arrays)) for name, arrays in found.items()}


def _size(value: str | None) -> int | None:
    """``"20G"``, ``"512M"`` or a byte count -> bytes (the activation cache's notation)."""
    if not value:
        return None
    found = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?\s*", value.lower())
    if not found:
        raise DataError(f"AUTOTRANSFER_STORE_DISK must be a size such as 20G, got {value!r}")
    return int(float(found.group(1)) * 2 ** (10 * " kmgt".index(found.group(2) or " ")))


def _open(entry: Path) -> dict[str, np.ndarray]:
    meta = json.loads((entry / "meta.json").read_text())
    with contextlib.suppress(OSError):  # a store shared read-only stays usable
        os.utime(entry)  # recently used: evicted last
    return {name: np.load(entry / f"{name}.npy", mmap_mode="c") for name in meta["arrays"]}


def _stored(directory: Path, key: str, n: int, chunks: Callable[[], Chunks]
            ) -> dict[str, np.ndarray]:
    """The entry ``key`` mapped, written first (once, under a lock) when absent."""
    entry = directory / key
    if (entry / "meta.json").is_file():
        return _open(entry)
    directory.mkdir(parents=True, exist_ok=True)
    with _locked(directory / f"{key}.lock"):
        if not (entry / "meta.json").is_file():  # another process may have written it meanwhile
            _clear_stale(directory, key)
            _write(entry, n, chunks())
            _evict(directory, keep=entry)
    return _open(entry)


class _locked:
    """An exclusive ``flock`` on ``path`` (no lock where fcntl does not exist: rename still
    keeps entries whole, a split may then be encoded twice)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __enter__(self) -> _locked:
        self.handle = open(self.path, "a+b")  # noqa: SIM115 - closed in __exit__
        try:
            import fcntl

            fcntl.flock(self.handle, fcntl.LOCK_EX)
        except ImportError:  # pragma: no cover - not POSIX
            pass
        return self

    def __exit__(self, *exc: Any) -> None:
        self.handle.close()  # releases the lock


def _clear_stale(directory: Path, key: str) -> None:
    """Remove ``<key>.<pid>.tmp`` folders of processes that no longer run (killed mid-write);
    the caller holds the entry's lock, so no live writer of ``key`` is in there."""
    for partial in directory.glob(f"{key}.*.tmp"):
        pid = partial.name[len(key) + 1 : -len(".tmp")]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            shutil.rmtree(partial, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's process: alive
        return True
    return True


def _mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"


def _reserve(path: Path, first: dict[str, np.ndarray], n: int) -> None:
    """Check that the ``.npy`` files of ``n`` rows like ``first``'s fit in the free room of
    ``path``'s disk, then allocate each file's blocks (``posix_fallocate``): writing into a
    memory map of blocks the disk cannot supply kills the process with ``SIGBUS``.

    Raises:
        OSError: ``ENOSPC``, naming the folder, the room needed and the room free.
    """
    needed = sum(n * array.dtype.itemsize * math.prod(array.shape[1:]) + 4096  # rows + header
                 for array in first.values())
    free = shutil.disk_usage(path).free
    if needed > free:
        raise OSError(errno.ENOSPC, f"no space left on device: {path.parent} needs "
                      f"{_mib(needed)} for this split, {_mib(free)} free")
    if not hasattr(os, "posix_fallocate"):  # pragma: no cover - not POSIX
        return
    for file in path.glob("*.npy"):
        with open(file, "r+b") as handle:
            try:
                os.posix_fallocate(handle.fileno(), 0, file.stat().st_size)
            except OSError as exc:
                if exc.errno == errno.ENOSPC:
                    raise OSError(errno.ENOSPC, f"no space left on device: {path.parent} "
                                  f"needs {_mib(needed)} for this split") from None
                if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
                    raise


def _write(entry: Path, n: int, chunks: Iterator[dict[str, np.ndarray]]) -> None:
    """Write chunks into ``.npy`` memmaps in a temporary folder, then rename it to ``entry``.

    Raises:
        OSError: the folder cannot be written or its disk has no room for the entry
            (``ENOSPC``, checked before any byte of data is written).
    """
    partial = entry.with_name(f"{entry.name}.{os.getpid()}.tmp")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    try:
        arrays: dict[str, np.memmap] = {}
        filled = 0
        for chunk in chunks:
            size = len(next(iter(chunk.values())))
            if not arrays:
                for name, array in chunk.items():
                    arrays[name] = np.lib.format.open_memmap(
                        partial / f"{name}.npy", mode="w+", dtype=array.dtype,
                        shape=(n, *array.shape[1:]))
                _reserve(partial, chunk, n)
            for name, array in chunk.items():
                if name not in arrays:  # a tensor the first chunk did not hold
                    arrays[name] = np.lib.format.open_memmap(
                        partial / f"{name}.npy", mode="w+", dtype=array.dtype,
                        shape=(n, *array.shape[1:]))
                arrays[name][filled : filled + size] = array
            filled += size
        if filled != n:
            raise RuntimeError(f"encoded {filled} samples, expected {n}")
        for array in arrays.values():
            array.flush()
        del arrays
        (partial / "meta.json").write_text(json.dumps({"format": FORMAT, "n": n, "arrays": sorted(
            p.stem for p in partial.glob("*.npy"))}))
        try:
            os.rename(partial, entry)  # other workers see a whole entry or none
        except OSError:
            if not (entry / "meta.json").is_file():
                raise
    finally:
        shutil.rmtree(partial, ignore_errors=True)


def _evict(directory: Path, keep: Path) -> None:
    """Delete least recently used entries until the store fits its bound."""
    bound = _size(os.environ.get("AUTOTRANSFER_STORE_DISK")) or DEFAULT_DISK
    entries = []
    for entry in directory.iterdir():
        if not entry.is_dir() or entry.suffix == ".tmp":
            continue
        try:
            size = sum(f.stat().st_size for f in entry.iterdir())
            entries.append((entry.stat().st_mtime, size, entry))
        except FileNotFoundError:  # evicted by another process meanwhile
            continue
    total = sum(size for _, size, _ in entries)
    for _, size, entry in sorted(entries):
        if total <= bound:
            break
        if entry != keep:
            shutil.rmtree(entry, ignore_errors=True)
            (directory / f"{entry.name}.lock").unlink(missing_ok=True)
            total -= size
