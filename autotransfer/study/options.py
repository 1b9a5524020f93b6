"""The options of a search, as one validated object.

:class:`SearchOptions` holds what ``autotransfer.search(...)`` takes, checks it when it is
built (an :class:`~autotransfer.errors.OptionError` names the parameter by its Python name),
and travels unchanged to worker processes. The CLI maps its flags to these fields in one place
(``autotransfer.cli.app``), so the core never names a flag.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autotransfer.data.options import DataOptions
from autotransfer.errors import OptionError
from autotransfer.study.storage import DEFAULT_HEARTBEAT, DEFAULT_STORAGE
from autotransfer.study.trackers import TRACKERS

#: The pre-screen's rankings (``prescreen_by``); the first is the default.
PRESCREEN_METHODS = ("logme", "knn", "params", "imagenet")


@dataclass(frozen=True)
class SearchOptions:
    """Everything a search is asked to do; see :func:`autotransfer.study.study.search`.

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
    modality: str | None = None
    text_column: str = "text"
    label_column: str = "label"
    image_column: str | None = None
    audio_column: str | None = None
    data_store: str | Path | None = None  # see autotransfer.data.store
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
    references: bool = True  # enqueue the reference trials (autotransfer.study.references)
    transfer_effect: bool | None = None  # None: when enough trials completed
    track: str | None = None  # an experiment tracker (autotransfer.study.trackers)
    tracking_uri: str | None = None  # its URI (MLflow: else MLFLOW_TRACKING_URI)

    def __post_init__(self) -> None:
        from autotransfer.finetune.sizes import parse_size  # no torch: a bad option fails at once

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
    def data_options(self) -> DataOptions:
        """How the search reads its data (``load_data``'s options besides the path)."""
        return DataOptions.of(modality=self.modality, text_column=self.text_column,
                              label_column=self.label_column, image_column=self.image_column,
                              audio_column=self.audio_column, data_store=self.data_store)

    @property
    def cache_options(self) -> dict[str, Any] | None:
        """The ``ActivationCache`` arguments (None: caching is off)."""
        if not self.cache:
            return None
        from autotransfer.finetune.sizes import parse_size

        return {"max_bytes": parse_size(self.cache_memory, what="cache_memory"),
                "directory": self.cache_dir, "views": self.cache_views}

    @property
    def keep_dir(self) -> str | None:
        """The artifact folder of ``keep_best`` (None when off)."""
        return str((Path(self.out) / "artifacts").resolve()) if self.keep_best else None
