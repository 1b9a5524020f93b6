"""The options of a search, as one validated object.

:class:`SearchOptions` holds what ``autotransfer.search(...)`` takes, checks it when it is
built (an :class:`~autotransfer.errors.OptionError` names the parameter by its Python name),
and travels unchanged to worker processes. The CLI maps its flags to these fields in one place
(``autotransfer.cli.app``), so the core never names a flag.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from autotransfer.data.options import DataOptions
from autotransfer.errors import OptionError
from autotransfer.finetune.sizes import parse_size
from autotransfer.study.store.storage import DEFAULT_HEARTBEAT, DEFAULT_STORAGE
from autotransfer.study.trackers import TRACKERS

#: The pre-screen's rankings (``prescreen_by``); the first is the default.
PRESCREEN_METHODS = ("logme", "knn", "params", "imagenet")


@dataclass(frozen=True)
class SearchOptions:
    """Everything a search is asked to do; :func:`autotransfer.study.study.search` takes these
    fields as keywords (the data's as ``data_options`` or their keywords, see :meth:`build`).

    Attributes:
        data: images or audio (class sub-folders, train/val[/test] folders, a path,label
            CSV), text (a CSV, TSV or JSONL file, or a folder of train/val/test files), a
            Hugging Face dataset, or a plugin modality's files.
        space: a search-space YAML file (or a parsed :class:`SearchSpace`).
        trials: the study's total number of trials, over all workers (None: until timeout).
            A trial of a dead worker that is retried is replaced by its retry.
        timeout: stop starting new trials after this many seconds (Optuna's meaning: the trial
            running then finishes, and the results are written after it).
        time_budget: the whole call, from now to the last file written, ends within this many
            seconds (:mod:`autotransfer.study.budget.timebudget`): the running trial stops at an
            epoch or batch boundary and completes with its last scored epoch (pruned before
            its first score; reason ``time budget: ...``),
            a trial that cannot reach its first report in time does not start, and the
            deadline is stored with the study so that every worker of it stops by the same time.
        storage: an SQLAlchemy URL; the study resumes when its name exists there, and workers
            started anywhere with the same storage and study name join it.
        study_name: defaults to ``<data folder>-<space file>``.
        out: where ``best.yaml`` and ``leaderboard.csv`` are written.
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``; with several GPUs, ``auto`` and
            ``cuda`` give worker i the GPU ``i % n_gpus``.
        seed: seeds the split and each trial's training; a worker's sampler is seeded with
            ``seed`` plus its worker number in the study, so that workers sample differently.
        workers: worker processes on this machine (1: trials run in this process). Each gets
            ``cores // workers`` torch threads.
        heartbeat: seconds between heartbeats of a running trial; a trial silent for three
            intervals is failed and retried by the next worker that starts a trial.
        trust_remote_code: passed to backbones whose loader takes it (Hugging Face models);
            code shipped with a checkpoint never runs otherwise.
        data_options: how the data is read (:class:`~autotransfer.data.options.DataOptions`:
            the modality, detected when None; the columns of a table or a Hugging Face
            dataset; the folder of the encoded-data store shared by this machine's workers, or
            ``"memory"``, default: see :mod:`autotransfer.data.store`); recorded in
            ``best.yaml`` so that ``train`` reads the same.
        keep_best: keep the best trial's model (an Optuna artifact under ``out/artifacts``,
            replaced when a better trial finishes) and unpack it into ``out/best-model``.
        cache: reuse the frozen groups' outputs across epochs and trials (see
            :mod:`autotransfer.finetune.cache`); False computes them every step.
        cache_memory: the cache's memory bound per process, e.g. ``"2G"`` (default: 2 GiB,
            at most a quarter of the device's memory).
        cache_dir: a folder for a disk tier of the cache, shared by this machine's workers.
        cache_views: K, the random augmented views per training sample that the cache holds
            for ``crop_flip`` and other continuous augmentations (an approximation of live
            augmentation; default 8, at most the epochs; 0: such trials train live). Finite
            augmentations (``flip``) always cache every view
            (:mod:`autotransfer.finetune.cache_views`).
        compile: run the trained part of each trial through ``torch.compile``.
        prescreen: keep the K backbones that rank best on frozen features (see
            :mod:`autotransfer.study.prescreen`); a study keeps its first pre-screen when resumed.
        prescreen_by: the pre-screen's ranking, one of :data:`PRESCREEN_METHODS` (default
            ``prescreen.DEFAULT_BY``).
        history: record every completed trial and the dataset's meta-features in the
            storage's transfer-history tables (:mod:`autotransfer.study.store.history`); None: yes,
            unless the environment sets ``AUTOTRANSFER_HISTORY=0``.
        warm_start: enqueue up to N best configurations of the most similar past datasets in
            the transfer history (once per study).
        references: enqueue a linear probe and the first fine-tune of each backbone
            (:mod:`autotransfer.space.first_finetune`) before any trial is sampled (once per
            study;
            :mod:`autotransfer.study.references.trials`).
        transfer_effect: train the best configuration again from random weights at the end
            and report the difference; None: when at least 8 trials completed.
        track: ``"mlflow"`` or ``"wandb"``: mirror the search into that experiment tracker,
            every epoch of every trial (:mod:`autotransfer.study.trackers`); one that cannot
            be reached is a warning and the search goes on.
        tracking_uri: the tracker's URI (MLflow: default ``MLFLOW_TRACKING_URI``; W&B: the
            server's base URL).

    Raises:
        OptionError: a value out of range, naming the field (``trials must be >= 1, got 0``).
    """

    data: str | Path
    space: Any  # a YAML path or a parsed SearchSpace
    trials: int | None = None
    timeout: float | None = None
    time_budget: float | None = None
    storage: str = DEFAULT_STORAGE
    study_name: str | None = None
    out: str | Path = "autotransfer-out"
    device: str = "auto"
    seed: int = 0
    workers: int = 1
    heartbeat: int = DEFAULT_HEARTBEAT
    trust_remote_code: bool = False
    data_options: DataOptions = field(default_factory=DataOptions)
    keep_best: bool = False
    cache: bool = True
    cache_memory: str | int | None = None
    cache_dir: str | Path | None = None
    cache_views: int | None = None
    compile: bool = False
    prescreen: int | None = None
    prescreen_by: str | None = None
    history: bool | None = None
    warm_start: int | None = None
    references: bool = True  # enqueue the reference trials (autotransfer.study.references.trials)
    transfer_effect: bool | None = None  # None: when enough trials completed
    track: str | None = None  # an experiment tracker (autotransfer.study.trackers)
    tracking_uri: str | None = None  # its URI (MLflow: else MLFLOW_TRACKING_URI)

    @classmethod
    def build(cls, data: str | Path, space: Any, *, data_options: DataOptions | None = None,
              **keywords: Any) -> SearchOptions:
        """From ``search``'s keywords: the fields above, and the data options either as
        ``data_options`` or as keywords (``modality``, ``text_column``, ``label_column``,
        ``image_column``, ``audio_column``, any ``ROLE_column``, ``columns``, ``data_store``),
        which override it.

        Raises:
            OptionError: a keyword that is neither a field nor a data option (with a close
                match), or a value out of range.
        """
        names = {f.name for f in fields(cls)} - {"data", "space", "data_options"}
        given = {k: v for k, v in keywords.items() if k in names}
        data_keys = {k: v for k, v in keywords.items() if k not in names}
        for key in data_keys:
            if key not in ("modality", "data_store", "columns") and not key.endswith("_column"):
                close = difflib.get_close_matches(key, [*names, "modality", "data_store"], n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise OptionError(key, f": unknown search option{hint}")
        read = DataOptions.of(**data_keys)
        read = read.over(data_options) if data_options is not None else read
        return cls(data=data, space=space, data_options=read, **given)

    def __post_init__(self) -> None:
        for name in ("trials", "workers", "prescreen", "warm_start"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise OptionError(name, f" must be >= 1, got {value}")
        if self.time_budget is not None and not self.time_budget > 0:
            raise OptionError("time_budget", f" must be > 0 seconds, got {self.time_budget}")
        if self.heartbeat < 1:
            raise OptionError("heartbeat", f" must be >= 1 second, got {self.heartbeat}")
        if self.prescreen_by is not None and self.prescreen_by not in PRESCREEN_METHODS:
            raise OptionError("prescreen_by", f" must be one of {', '.join(PRESCREEN_METHODS)}, "
                                              f"got {self.prescreen_by!r}")
        parse_size(self.cache_memory, what="cache_memory")
        if self.cache_views is not None and self.cache_views < 0:
            raise OptionError("cache_views", f" must be >= 0, got {self.cache_views}")
        if self.track is not None and self.track not in TRACKERS:
            raise OptionError("track", f" must be one of {', '.join(TRACKERS)}, "
                                       f"got {self.track!r}")

    @property
    def data_store(self) -> str | Path | None:
        """Where encoded splits are kept (``data_options.data_store``)."""
        return self.data_options.data_store

    @property
    def cache_options(self) -> dict[str, Any] | None:
        """The ``ActivationCache`` arguments (None: caching is off)."""
        if not self.cache:
            return None

        return {"max_bytes": parse_size(self.cache_memory, what="cache_memory"),
                "directory": self.cache_dir, "views": self.cache_views}

    @property
    def keep_dir(self) -> str | None:
        """The artifact folder of ``keep_best`` (None when off)."""
        return str((Path(self.out) / "artifacts").resolve()) if self.keep_best else None
