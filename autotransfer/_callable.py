"""The two parts whose names are also user API functions: ``autotransfer.search`` and
``autotransfer.train``.

``autotransfer.search(...)`` runs a search and ``autotransfer.train(...)`` refits a model, but
``autotransfer/search/`` and ``autotransfer/train/`` are also the packages of those parts, and
Python binds a package to its parent's attribute as soon as it is imported. So each of the two
packages is callable: calling it calls the function, whichever was imported first.
"""

from __future__ import annotations

import importlib
import sys
import types

#: package -> (module, function) that calling the package runs.
FUNCTIONS = {
    "autotransfer.search": ("autotransfer.search.study", "search"),
    "autotransfer.train": ("autotransfer.model.refit", "train"),
}


class CallablePackage(types.ModuleType):
    """A package that, called, runs the user API function of the same name."""

    def __call__(self, *args, **kwargs):
        module, name = FUNCTIONS[self.__name__]
        return getattr(importlib.import_module(module), name)(*args, **kwargs)


def make_callable(name: str) -> None:
    """Make the package ``name`` (already in ``sys.modules``) callable."""
    sys.modules[name].__class__ = CallablePackage
