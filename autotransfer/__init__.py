"""autotransfer: which pretrained backbone to fine-tune, how much to freeze, at which rates.

The user's API (lazy, so that ``import autotransfer`` stays free of torch). The parts are
sub-packages, from the bottom layer up: ``contract`` (what zoos and the core agree on), ``space``
(the search-space schema), ``data``, ``finetune``, ``model``, ``study`` and ``cli``; ``testing``
is for plugin authors' tests, and ``plugin`` is the plugin author's API.

Modules beside them: ``errors`` (the domain errors, one line each), ``listing`` (long lists in
one-line messages), ``outputs`` (output folders checked before any work) and ``demo`` (demo data
from packages).
"""

from autotransfer._version import __version__
from autotransfer.contract.backbone import Backbone, BackboneCatalogue, BackboneEntry
from autotransfer.contract.collect import get_backbone, get_registry
from autotransfer.contract.hookspecs import hookimpl
from autotransfer.errors import (
    AutotransferError,
    BackboneError,
    DataError,
    PluginError,
    SpaceError,
    StorageError,
)

#: The Python API that mirrors the CLI, imported on first use so that ``import autotransfer``
#: stays free of torch: ``autotransfer.search``, ``autotransfer.train``,
#: ``autotransfer.train_ensemble``, ``autotransfer.predict``, ``autotransfer.inspect``,
#: ``autotransfer.evaluate``. The parts behind them are packages of
#: other names (``autotransfer.study``, ``autotransfer.finetune``), as optuna keeps
#: ``optuna/study/study.py``.
_API = {
    "search": ("autotransfer.study.study", "search"),
    "train": ("autotransfer.model.refit", "train"),
    "train_ensemble": ("autotransfer.model.ensemble", "train_ensemble"),
    "predict": ("autotransfer.model.predict", "predict"),
    "inspect": ("autotransfer.data.inspect", "inspect"),
    "evaluate": ("autotransfer.study.results.evaluation", "evaluate"),
}


def __getattr__(name: str):
    if name in _API:
        import importlib

        module, attr = _API[name]
        value = getattr(importlib.import_module(module), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'autotransfer' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)


__all__ = [
    "AutotransferError",
    "Backbone",
    "BackboneCatalogue",
    "BackboneEntry",
    "BackboneError",
    "DataError",
    "PluginError",
    "SpaceError",
    "StorageError",
    "__version__",
    "evaluate",
    "get_backbone",
    "get_registry",
    "hookimpl",
    "inspect",
    "predict",
    "search",
    "train",
    "train_ensemble",
]
