"""autotransfer: which pretrained backbone to fine-tune, how much to freeze, at which rates."""

from autotransfer.backbones import (
    Backbone,
    BackboneCatalogue,
    BackboneEntry,
    get_backbone,
    get_registry,
)
from autotransfer.errors import (
    AutotransferError,
    BackboneError,
    DataError,
    PluginError,
    SpaceError,
    StorageError,
)
from autotransfer.hookspecs import hookimpl

__version__ = "0.1.0"

#: The Python API that mirrors the CLI, imported on first use so that ``import autotransfer``
#: stays free of torch: ``autotransfer.search``, ``autotransfer.train``, ``autotransfer.predict``.
_API = {
    "search": "autotransfer.study",
    "train": "autotransfer.refit",
    "predict": "autotransfer.inference",
}


def __getattr__(name: str):
    if name in _API:
        import importlib

        value = getattr(importlib.import_module(_API[name]), name)
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
    "get_backbone",
    "get_registry",
    "hookimpl",
    "predict",
    "search",
    "train",
]
