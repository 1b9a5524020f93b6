"""The plugin manager: builtin zoos, ``autotransfer`` entry points, lazy run-once loading."""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import sys
from dataclasses import dataclass, field

import pluggy

from autotransfer import __version__, hookspecs

#: Builtin zoos are ordinary plugins, loaded by the same manager as third-party ones.
BUILTIN_PLUGINS: tuple[str, ...] = (
    "autotransfer_timm",
    "autotransfer_packaged",
    "autotransfer_hf_text",
    "autotransfer_hf_audio",
)
ENTRY_POINT_GROUP = "autotransfer"
LOAD_ENV = "AUTOTRANSFER_LOAD_PLUGINS"
_BUILTIN = f"{__version__} (builtin)"

pm = pluggy.PluginManager("autotransfer")
pm.add_hookspecs(hookspecs)


@dataclass
class _State:
    loaded: bool = False
    versions: dict[str, str] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)


_state = _State()


def load_plugins() -> None:
    """Load builtin plugins and installed entry points, once.

    ``AUTOTRANSFER_LOAD_PLUGINS`` is a comma-separated list of plugin names: when set, only
    those plugins load (builtins included); when set to an empty string, none do. A plugin
    that fails to import is recorded in :func:`plugin_errors` and the others still load.
    """
    if _state.loaded:
        return
    _state.loaded = True
    wanted = os.environ.get(LOAD_ENV)
    allowed = None if wanted is None else {n.strip() for n in wanted.split(",") if n.strip()}

    for module_name in BUILTIN_PLUGINS:
        if allowed is not None and module_name not in allowed:
            continue
        _register(module_name, lambda m=module_name: importlib.import_module(m), _BUILTIN)

    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if allowed is not None and ep.name not in allowed:
            continue
        version = ep.dist.version if ep.dist is not None else "?"
        _register(ep.name, ep.load, version)
    pm.check_pending()


def _register(name: str, load, version: str) -> None:
    if pm.has_plugin(name):
        return
    try:
        pm.register(load(), name=name)
    except Exception as exc:  # a broken plugin must not take the others down
        _state.errors[name] = f"{type(exc).__name__}: {exc}"
        print(f"autotransfer: plugin {name!r} failed to load: {exc}", file=sys.stderr)
        return
    _state.versions[name] = version


def plugin_errors() -> dict[str, str]:
    """Plugins that failed to load, by name, with the reason."""
    load_plugins()
    return dict(_state.errors)


def get_plugins() -> list[dict[str, object]]:
    """Loaded plugins with their version and the hooks they implement."""
    load_plugins()
    plugins = []
    for name, plugin in pm.list_name_plugin():
        hooks = sorted(h.name for h in pm.get_hookcallers(plugin) or [])
        plugins.append({"name": name, "version": _state.versions.get(name, "?"), "hooks": hooks})
    return sorted(plugins, key=lambda p: str(p["name"]))
