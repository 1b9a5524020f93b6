"""autotransfer: which pretrained backbone to fine-tune, how much to freeze, at which rates."""

from autotransfer.backbones import (
    Backbone,
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

__all__ = [
    "AutotransferError",
    "Backbone",
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
]
