"""Old module paths, kept for one release: importing one warns and gives the moved names.

The flat modules of 0.1 (``autotransfer.layers``, ``autotransfer.cache``, ...) moved into the
parts (``contract``, ``train``, ``model``, ``search``). As timm does for its renamed modules
(``timm/models/hub.py``: ``from ._hub import *`` plus a ``FutureWarning``), each old path still
imports, warns once, and holds the names of the modules it was split into. The shims are served
by an import hook rather than by files, so that the old files count as *moved* for git's rename
detection and branches made before the move merge into the new layout.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings

#: old module -> the modules that now hold its names (the first one wins a clash).
MOVED: dict[str, tuple[str, ...]] = {
    "autotransfer.backbones": ("autotransfer.contract.backbone", "autotransfer.contract.registry"),
    "autotransfer.hookspecs": ("autotransfer.contract.hookspecs",),
    "autotransfer.plugins": ("autotransfer.contract.manager",),
    "autotransfer.layers": ("autotransfer.contract.groups", "autotransfer.train.freezing",
                            "autotransfer.train.optim"),
    "autotransfer.space": ("autotransfer.contract.space", "autotransfer.contract.hyperparameters"),
    "autotransfer.hub": ("autotransfer.contract.hub",),
    "autotransfer.training": ("autotransfer.train.trainer", "autotransfer.train.device",
                              "autotransfer.train.metrics", "autotransfer.train.optim"),
    "autotransfer.cache": ("autotransfer.train.cache", "autotransfer.contract.stages"),
    "autotransfer.refit": ("autotransfer.model.refit",),
    "autotransfer.export": ("autotransfer.model.export",),
    "autotransfer.inference": ("autotransfer.model.predict",),
    "autotransfer.study": ("autotransfer.search.study", "autotransfer.search.objective",
                           "autotransfer.search.pruners", "autotransfer.search.dashboard"),
    "autotransfer.workers": ("autotransfer.search.workers",),
    "autotransfer.storage": ("autotransfer.search.storage",),
    "autotransfer.prescreen": ("autotransfer.search.prescreen",),
    "autotransfer.history": ("autotransfer.search.history",),
    "autotransfer.budget": ("autotransfer.search.warm_start",),
    "autotransfer.keep": ("autotransfer.search.artifacts",),
    "autotransfer.report": ("autotransfer.search.report",),
}


class _Shim(importlib.abc.Loader):
    def create_module(self, spec):  # the default module object
        return None

    def exec_module(self, module) -> None:
        targets = MOVED[module.__name__]
        warnings.warn(
            f"{module.__name__} is deprecated and goes in the next release; import from "
            f"{' / '.join(targets)} (plugin authors: autotransfer.plugin)",
            FutureWarning,
            stacklevel=2,
        )
        for target in reversed(targets):
            moved = importlib.import_module(target)
            module.__dict__.update(
                {k: v for k, v in vars(moved).items() if not k.startswith("__")}
            )


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path, target=None):
        if fullname in MOVED:
            return importlib.util.spec_from_loader(fullname, _Shim())
        return None


def install() -> None:
    """Serve the old paths (idempotent; called by ``autotransfer/__init__.py``)."""
    # First in line: an editable install's finder would otherwise serve a stale old file.
    if not any(isinstance(finder, _Finder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _Finder())
