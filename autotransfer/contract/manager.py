"""The plugin manager: builtin zoos, ``autotransfer`` entry points, lazy run-once loading.

A plugin that fails to import, implements a hook that does not exist, or raises inside a hook is
reported by name and left out; the other plugins go on working.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.metadata
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import pluggy

from autotransfer._version import __version__
from autotransfer.contract import hookspecs

#: The core's own features offered through the hooks (datasette's default plugins): always
#: loaded, whatever ``AUTOTRANSFER_LOAD_PLUGINS`` says. A layer above the contract adds its own
#: with :func:`add_default_plugin` when it is imported (the data layer adds the builtin
#: modalities), so that the contract names no module above it.
_DEFAULT_PLUGINS: dict[str, object] = {}
#: Builtin zoos are ordinary plugins, loaded by the same manager as third-party ones.
BUILTIN_PLUGINS: tuple[str, ...] = (
    "autotransfer_timm",
    "autotransfer_packaged",
    "autotransfer_hf_text",
    "autotransfer_hf_audio",
)
ENTRY_POINT_GROUP = "autotransfer"
LOAD_ENV = "AUTOTRANSFER_LOAD_PLUGINS"
TRACE_ENV = "AUTOTRANSFER_TRACE_HOOKS"
_BUILTIN = f"{__version__} (builtin)"

pm = pluggy.PluginManager("autotransfer")
pm.add_hookspecs(hookspecs)


@dataclass
class _State:
    loaded: bool = False
    tracing: bool = False
    versions: dict[str, str] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)


_state = _State()


def add_default_plugin(plugin: object, name: str) -> None:
    """Offer ``plugin`` (a module or object with hook implementations) as a default plugin.

    Default plugins load whatever ``AUTOTRANSFER_LOAD_PLUGINS`` says; one added after the
    plugins loaded is registered at once.
    """
    _DEFAULT_PLUGINS.setdefault(name, plugin)
    if _state.loaded:
        _register(name, partial(_itself, plugin), _BUILTIN)


def _itself(plugin: object) -> object:
    return plugin


def hook_names() -> list[str]:
    """The hooks of the plugin contract (``autotransfer.contract.hookspecs``)."""
    return sorted(n for n in dir(hookspecs) if hasattr(getattr(hookspecs, n), "autotransfer_spec"))


def report_plugin_error(name: str, message: str) -> None:
    """Record that plugin ``name`` is broken and say so on stderr, once."""
    if name not in _state.errors:
        print(f"autotransfer: plugin {name!r} {message}", file=sys.stderr)
    _state.errors[name] = message


def enable_tracing() -> None:
    """Print every hook call, its arguments and its result to stderr (``--trace-hooks``)."""
    if _state.tracing:
        return
    _state.tracing = True
    pm.trace.root.setwriter(lambda text: sys.stderr.write(f"autotransfer trace: {text}"))
    pm.enable_tracing()


def load_plugins() -> None:
    """Load the default plugins, the builtin zoos and installed entry points, once.

    ``AUTOTRANSFER_LOAD_PLUGINS`` is a comma-separated list of plugin names: when set, only
    those plugins load (builtin zoos included); when set to an empty string, none do. The
    default plugins (:func:`add_default_plugin`: the builtin modalities) load always.
    ``AUTOTRANSFER_TRACE_HOOKS=1`` traces every hook call.
    """
    if _state.loaded:
        return
    _state.loaded = True
    if os.environ.get(TRACE_ENV, "") not in ("", "0"):
        enable_tracing()
    wanted = os.environ.get(LOAD_ENV)
    allowed = None if wanted is None else {n.strip() for n in wanted.split(",") if n.strip()}

    for name, plugin in list(_DEFAULT_PLUGINS.items()):
        _register(name, partial(_itself, plugin), _BUILTIN)
    for module_name in BUILTIN_PLUGINS:
        if allowed is None or module_name in allowed:
            _register(module_name, partial(importlib.import_module, module_name), _BUILTIN)

    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if allowed is None or ep.name in allowed:
            version = ep.dist.version if ep.dist is not None else "?"
            _register(ep.name, ep.load, version)


def _register(name: str, load: Callable[[], Any], version: str) -> None:
    if pm.has_plugin(name) or name in _state.errors:
        return
    try:
        plugin = load()
    except Exception as exc:  # a broken plugin must not take the others down
        report_plugin_error(name, f"failed to import: {type(exc).__name__}: {exc}")
        return
    try:
        pm.register(plugin, name=name)
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        if pm.has_plugin(name):
            pm.unregister(name=name)
        report_plugin_error(name, _describe_invalid(plugin, exc))
        return
    _state.versions[name] = version


def _describe_invalid(plugin: object, exc: pluggy.PluginValidationError) -> str:
    known = hook_names()
    for attr in dir(plugin):
        function = getattr(plugin, attr, None)
        if hasattr(function, "autotransfer_impl") and attr not in known:
            close = difflib.get_close_matches(attr, known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            return f"implements unknown hook {attr!r}{hint} (hooks: {', '.join(known)})"
    return f"does not fit the hook contract: {exc}"


def call_hook_per_plugin(hook: str, *, passthrough: tuple[type[Exception], ...] = (),
                         **kwargs: Any) -> None:
    """Call ``hook`` on each plugin in turn; a plugin that raises is reported and skipped.

    ``kwargs`` values may be callables of the plugin name (``lambda plugin: ...``) wrapped in
    :class:`PerPlugin`, so that what a plugin registers can be traced back to it.
    ``passthrough``: errors that are not the plugin's fault (the network is down) and reach
    the caller instead.
    """
    load_plugins()
    caller = getattr(pm.hook, hook)
    implementations = list(reversed(caller.get_hookimpls()))  # pluggy's call order
    for impl in implementations:
        others = [i.plugin for i in implementations if i is not impl]
        arguments = {
            k: v.bind(impl.plugin_name) if isinstance(v, PerPlugin) else v
            for k, v in kwargs.items()
        }
        try:
            pm.subset_hook_caller(hook, remove_plugins=others)(**arguments)
        except passthrough:
            raise
        except Exception as exc:
            report_plugin_error(impl.plugin_name, f"failed in {hook}: {type(exc).__name__}: {exc}")


@dataclass(frozen=True)
class PerPlugin:
    """A hook argument made for each plugin: ``factory(plugin_name)``."""

    factory: Callable[[str], Any]

    def bind(self, plugin_name: str) -> Any:
        return self.factory(plugin_name)


def plugin_errors() -> dict[str, str]:
    """Plugins that failed to load or whose hooks raised, by name, with the reason."""
    load_plugins()
    return dict(_state.errors)


def get_plugins() -> list[dict[str, object]]:
    """Loaded plugins with their version and the hooks they implement."""
    load_plugins()
    plugins: list[dict[str, object]] = []
    for name, plugin in pm.list_name_plugin():
        hooks = sorted(h.name for h in pm.get_hookcallers(plugin) or [])
        plugins.append({"name": name, "version": _state.versions.get(name, "?"), "hooks": hooks})
    return sorted(plugins, key=lambda p: str(p["name"]))
