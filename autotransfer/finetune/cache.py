"""Frozen-prefix activation cache: what the frozen groups output, computed once.

Frozen groups run in eval mode and never change, so their output for a split (under a given
augmented view, :mod:`autotransfer.finetune.cache_views`) is a pure function of

- the frozen part's tensors (parameters and buffers: a digest, so that other weights, a
  random init or a sliced position table are other entries),
- the freezing depth (how many groups are frozen, of how many),
- the split's encoded inputs (a digest of the tensors that ``Preprocess.encode`` returned: it
  covers the files, the texts, ``image_size``, ``max_length``, ``clip_seconds``, the tokenizer),
- the trial's hyperparameters that are not pure training settings (``pooling``, ...),
- for the training split under augmentation, which views it holds (every flip, or a bank of
  K random crops made with fixed seeds),
- the device and the autocast precision.

The cache key is a SHA-256 of exactly these, so any change is a miss. A trial computes its
prefix outputs once (a linear probe: the pooled features) and trains the rest of the body and
the head on them for every epoch; later trials with the same key reuse them.

Policy: an in-memory LRU on the trial's device, bounded in bytes (default: 2 GiB, at most a
quarter of the device's memory; ``AUTOTRANSFER_CACHE_MEMORY`` or ``--cache-memory``). An entry
larger than the bound serves its own trial only. Optionally a disk tier (``--cache-dir`` or
``AUTOTRANSFER_CACHE_DIR``) shared by the worker processes of a machine, bounded too
(``AUTOTRANSFER_CACHE_DISK``, default 10 GiB), oldest-used files deleted first. An entry the
disk tier's folder has no room for (checked with ``shutil.disk_usage`` before writing, or
``ENOSPC`` while writing) is kept in memory only, with one warning per cache naming the folder
and the room needed; the partial file is removed, never read as an entry.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import warnings
import weakref
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from autotransfer.errors import OptionError, PluginError
from autotransfer.finetune.sizes import parse_size
from autotransfer.space.hyperparameters import HYPERPARAMETERS

FORMAT = 2  # bump when what a cached entry holds changes (2: augmented views)
#: Hyperparameters that change only how the unfrozen part trains, never what the frozen
#: prefix outputs (declared on each: ``Hyperparameter.affects_features``). Every other
#: hyperparameter is part of the key (a new one is safe: a miss).
TRAINING_ONLY = frozenset(name for name, h in HYPERPARAMETERS.items() if not h.affects_features)
DEFAULT_MEMORY = 2 * 2**30
DEFAULT_DISK = 10 * 2**30


def default_memory_budget(device: torch.device) -> int:
    """2 GiB, but at most a quarter of the GPU's memory (CUDA) or of the machine's RAM."""
    if device.type == "cuda":
        total = torch.cuda.get_device_properties(device).total_memory
    else:
        try:
            total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (ValueError, OSError, AttributeError):  # not POSIX
            total = 4 * DEFAULT_MEMORY
    return min(DEFAULT_MEMORY, total // 4)


def nbytes(value: Any) -> int:
    """Bytes held by a tensor or a dict of tensors."""
    if isinstance(value, dict):
        return sum(nbytes(v) for v in value.values())
    return value.numel() * value.element_size()


def _hash_tensor(h, name: str, tensor: torch.Tensor) -> None:
    tensor = tensor.detach()
    h.update(f"{name}|{tuple(tensor.shape)}|{tensor.dtype}|".encode())
    if tensor.numel():
        flat = tensor.to("cpu").contiguous().reshape(-1).view(torch.uint8)
        h.update(memoryview(flat.numpy()))


def state_digest(module: nn.Module) -> str:
    """Digest of every parameter and buffer of ``module`` (names, shapes, dtypes, values)."""
    h = hashlib.blake2b(digest_size=16)
    for name, tensor in [*module.named_parameters(), *module.named_buffers()]:
        _hash_tensor(h, name, tensor)
    return h.hexdigest()


def value_digest(value: Any) -> str:
    """Digest of a tensor or a dict of tensors (encoded inputs)."""
    h = hashlib.blake2b(digest_size=16)
    items = sorted(value.items()) if isinstance(value, dict) else [("", value)]
    for name, tensor in items:
        _hash_tensor(h, name, tensor)
    return h.hexdigest()


@dataclass
class FrozenPrefix:
    """How a trial runs on cached activations: ``rest(prefix(x)) == body(x)``."""

    prefix: nn.Module
    rest: Callable[[Any], Any]
    digest: str  # of the prefix's tensors, taken before training starts


def _identity(x: Any) -> Any:
    return x


def frozen_prefix(backbone, frozen_ids: set[int], n_frozen: int, preprocess,
                  label: str = "backbone") -> FrozenPrefix | str:
    """The cacheable frozen part of a trial, or why there is none (a short reason).

    All groups frozen and every body parameter in them: the body itself (any zoo). Fewer:
    the zoo's ``Backbone.split``, checked to hold frozen parameters only. Random training
    input is planned apart (:func:`autotransfer.finetune.cache_views.plan_views`); ``preprocess`` is
    kept for callers.
    """
    if n_frozen == 0:
        return "nothing frozen"
    body = backbone.model
    n_groups = len(backbone.groups)
    if n_frozen == n_groups and all(id(p) in frozen_ids for p in body.parameters()):
        prefix, rest = body, _identity
    else:
        if backbone.split is None:
            return f"the zoo offers no split of {label} for a partial freeze"
        found = backbone.split(n_frozen)
        if found is None:
            return f"{label} cannot be cut after {n_frozen} of {n_groups} groups"
        prefix, rest = found
        trains = [p for p in prefix.parameters() if id(p) not in frozen_ids]
        if trains:
            raise PluginError(
                f"{label}: split({n_frozen}) returned a prefix with {len(trains)} trainable "
                "parameter(s); a prefix holds frozen groups only"
            )
    return FrozenPrefix(prefix, rest, state_digest(prefix))


@torch.no_grad()
def compute_activations(
    prefix: nn.Module, preprocess, inputs: Any, *, device: torch.device, autocast,
    memory_format: torch.memory_format = torch.contiguous_format, batch_size: int = 256,
    batch_check: Callable[[], None] | None = None,
    to_input: Callable[[Any], Any] | None = None,
) -> Any:
    """``prefix`` over every row of ``inputs`` (eval mode, no autograd), on ``device``.

    ``batch_check`` runs before each batch (it raises to stop, e.g. at a time budget).
    ``to_input(rows)`` makes the model input of a batch (default: the eval transform); an
    augmented view passes its own (see :mod:`autotransfer.finetune.cache_views`).
    """
    was_training = prefix.training
    prefix.eval()
    n = len(next(iter(inputs.values())) if isinstance(inputs, dict) else inputs)
    outputs = []
    try:
        for start in range(0, n, batch_size):
            if batch_check is not None:
                batch_check()
            rows = slice(start, start + batch_size)
            batch = ({k: v[rows] for k, v in inputs.items()} if isinstance(inputs, dict)
                     else inputs[rows])
            x = (to_input(batch) if to_input is not None
                 else preprocess.to_input(batch, device=device, train=False))
            if isinstance(x, torch.Tensor) and x.ndim == 4:
                x = x.contiguous(memory_format=memory_format)
            with autocast:
                outputs.append(prefix(x))
    finally:
        prefix.train(was_training)
    if isinstance(outputs[0], dict):
        return {k: torch.cat([o[k] for o in outputs]) for k in outputs[0]}
    if not isinstance(outputs[0], torch.Tensor):
        raise PluginError(f"a frozen prefix returned {type(outputs[0]).__name__}; "
                          "expected a tensor or a dict of tensors")
    return torch.cat(outputs)


@dataclass
class CacheStats:
    """Counts of an activation cache's lookups: memory hits, disk hits, computed, evicted."""

    hits: int = 0        # served from memory
    disk_hits: int = 0   # served from the disk tier
    computed: int = 0    # prefix passes run over a whole split
    evicted: int = 0


class ActivationCache:
    """Prefix activations by key: an LRU in memory bounded in bytes, plus an optional disk tier.

    One instance serves every trial of a search in a process (``TrialContext.cache``).

    Args:
        max_bytes: memory bound (None: :func:`default_memory_budget` of the device, or
            ``AUTOTRANSFER_CACHE_MEMORY``). 0 keeps nothing across trials.
        directory: disk tier folder (None: ``AUTOTRANSFER_CACHE_DIR``, or no disk tier).
        max_disk_bytes: disk bound (None: ``AUTOTRANSFER_CACHE_DISK``, or 10 GiB).
        views: K of a bank of random augmented views (None: ``AUTOTRANSFER_CACHE_VIEWS``, or
            :data:`~autotransfer.finetune.cache_views.DEFAULT_BANK_VIEWS`); 0: no bank.

    Example:
        >>> cache = ActivationCache(max_bytes=2**20)
        >>> cpu = torch.device("cpu")
        >>> cache.put("k", torch.zeros(4, 8), cpu)
        True
        >>> cache.get("k", cpu).shape
        torch.Size([4, 8])
    """

    def __init__(self, max_bytes: int | str | None = None, *, directory: str | Path | None = None,
                 max_disk_bytes: int | str | None = None, views: int | None = None) -> None:
        from autotransfer.finetune.cache_views import DEFAULT_BANK_VIEWS

        views = views if views is not None else os.environ.get("AUTOTRANSFER_CACHE_VIEWS")
        if views is not None and (not str(views).isdigit()):
            raise OptionError("cache_views", f" must be a whole number >= 0, got {views!r}")
        self.views = DEFAULT_BANK_VIEWS if views is None else int(views)
        self.max_bytes = parse_size(
            max_bytes if max_bytes is not None else os.environ.get("AUTOTRANSFER_CACHE_MEMORY"),
            what="max_bytes" if max_bytes is not None else "AUTOTRANSFER_CACHE_MEMORY")
        directory = directory or os.environ.get("AUTOTRANSFER_CACHE_DIR") or None
        self.directory = Path(directory).expanduser() if directory else None
        self.max_disk_bytes = parse_size(
            max_disk_bytes if max_disk_bytes is not None
            else os.environ.get("AUTOTRANSFER_CACHE_DISK"), what="AUTOTRANSFER_CACHE_DISK",
        ) or DEFAULT_DISK
        self._entries: OrderedDict[str, tuple[Any, int]] = OrderedDict()
        self._digests: dict[int, tuple[weakref.ref, str]] = {}
        self.stats = CacheStats()
        self._said_full = False  # the disk tier's folder was full once: said, not again

    def budget(self, device: torch.device) -> int:
        return self.max_bytes if self.max_bytes is not None else default_memory_budget(device)

    @property
    def bytes_held(self) -> int:
        return sum(size for _, size in self._entries.values())

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        """Drop every entry held in memory (the disk tier stays)."""
        self._entries.clear()

    def input_digest(self, inputs: Any) -> str:
        """:func:`value_digest` of encoded inputs, remembered while they live (they are cached
        on the data, so each split is hashed once per search)."""
        anchor = next(iter(inputs.values())) if isinstance(inputs, dict) else inputs
        from autotransfer.data.store import known_digest

        stored = known_digest(anchor)  # mapped from the encoded-data store: its key
        if stored is not None:
            return stored
        known = self._digests.get(id(anchor))
        if known is not None and known[0]() is anchor:
            return known[1]
        digest = value_digest(inputs)
        self._digests = {k: v for k, v in self._digests.items() if v[0]() is not None}
        self._digests[id(anchor)] = (weakref.ref(anchor), digest)
        return digest

    def get(self, key: str, device: torch.device) -> Any | None:
        """The entry for ``key`` on ``device`` (from memory, else from disk), or None."""
        if key in self._entries:
            self._entries.move_to_end(key)
            self.stats.hits += 1
            return self._entries[key][0]
        value = self._read(key, device)
        if value is not None:
            self.stats.disk_hits += 1
            self._keep(key, value, device)
        return value

    def put(self, key: str, value: Any, device: torch.device) -> bool:
        """Store ``value`` (memory, and disk when there is a tier); False when it is larger
        than the memory bound and so serves only the trial that computed it."""
        self._write(key, value)
        return self._keep(key, value, device)

    def _keep(self, key: str, value: Any, device: torch.device) -> bool:
        size, budget = nbytes(value), self.budget(device)
        if size > budget:
            return False
        self._entries[key] = (value, size)
        self._entries.move_to_end(key)
        while self.bytes_held > budget:
            self._entries.popitem(last=False)
            self.stats.evicted += 1
        return True

    # -- disk tier ----------------------------------------------------------------------------

    def _disk_full(self, exc: BaseException, needed: int) -> None:
        """Say once that the disk tier could not write an entry (it stays in memory)."""
        if not self._said_full:
            self._said_full = True
            assert self.directory is not None
            warnings.warn(CacheWarning(_disk_full_line(self.directory, exc, needed)),
                          stacklevel=4)

    def _path(self, key: str) -> Path:
        assert self.directory is not None
        return self.directory / f"{key}.pt"

    def _read(self, key: str, device: torch.device) -> Any | None:
        if self.directory is None:
            return None
        path = self._path(key)
        try:
            value = torch.load(path, map_location=device, weights_only=True)
            os.utime(path)  # recently used: evicted last
        except (FileNotFoundError, RuntimeError, EOFError, OSError):  # absent, half-deleted
            return None
        return value

    def _write(self, key: str, value: Any) -> None:
        if self.directory is None:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self._path(key)
        if path.exists():
            return
        cpu = ({k: v.cpu() for k, v in value.items()} if isinstance(value, dict)
               else value.cpu())
        if nbytes(cpu) > self.max_disk_bytes:
            return
        partial = path.with_suffix(f".{os.getpid()}.tmp")
        needed = nbytes(cpu) + 2**16  # the tensors, and the zip archive around them
        try:
            free = shutil.disk_usage(self.directory).free
            if needed > free:
                raise OSError(errno.ENOSPC, f"{_mib(needed)} needed, {_mib(free)} free")
            torch.save(cpu, partial)
            os.replace(partial, path)  # other workers see a whole file or none
        except (OSError, RuntimeError) as exc:  # torch says "unexpected pos" for ENOSPC
            partial.unlink(missing_ok=True)
            self._disk_full(exc, needed)
            return
        files = []
        for file in self.directory.glob("*.pt"):
            try:
                stat = file.stat()
            except FileNotFoundError:
                continue
            files.append((stat.st_mtime, stat.st_size, file))
        total = sum(size for _, size, _ in files)
        for _, size, file in sorted(files):  # oldest used first
            if total <= self.max_disk_bytes:
                break
            file.unlink(missing_ok=True)
            total -= size


def _mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"


class CacheWarning(UserWarning):
    """The activation cache's disk tier cannot hold an entry (it stays in memory)."""


def _disk_full_line(directory: Path, exc: BaseException, needed: int) -> str:
    """One line for an entry the disk tier could not write: ``exc`` is ``ENOSPC`` (from the
    room check or the write), another ``OSError``, or torch's ``RuntimeError`` for a write
    that stopped short (``unexpected pos``: the disk filled up while saving)."""
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        cause = f"no space left ({exc.strerror or 'disk full'})"
    elif isinstance(exc, OSError):
        cause = f"cannot write ({exc.strerror or exc})"
    else:
        cause = f"a write stopped short, most likely no space left ({_mib(needed)} needed)"
    return (f"activation cache folder {directory}: {cause}; entries are kept in memory only "
            "(free room there, or choose another folder with --cache-dir / "
            "AUTOTRANSFER_CACHE_DIR, or a lower AUTOTRANSFER_CACHE_DISK)")


def cache_key(digest: str, n_frozen: int, n_groups: int, split_digest: str,
              params: dict[str, Any], device: torch.device, precision: str,
              views: str = "") -> str:
    """SHA-256 of everything the prefix output depends on (see the module docstring).

    ``views`` names the augmented views an entry holds (``""``: the input as is, as for
    validation; ``ViewPlan.key`` otherwise); ``augment`` counts only through it, so that
    trials with other augmentations share their validation activations.
    """
    relevant = {k: v for k, v in sorted(params.items())
                if k not in TRAINING_ONLY and k != "augment"}
    payload = json.dumps(
        [FORMAT, digest, n_frozen, n_groups, split_digest, relevant, str(device), precision,
         views],
        sort_keys=True, default=str,
    )
    return hashlib.sha256(payload.encode()).hexdigest()

