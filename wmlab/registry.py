"""Plugin discovery through Python entry points.

Methods are entry points in the group ``wmlab.methods`` and env families in
``wmlab.envs``. The built-in plugins are declared in wmlab's own pyproject.toml exactly
like a third party's. Only the plugin that is asked for is imported; ``wmlab list``
imports each one that :mod:`wmlab.plugin_index` has not seen since it last changed, to
check it, and a plugin that fails to import is reported as a warning there while the
others keep working. Two installed distributions that declare a plugin of the same name
in one group shadow each other: using that name is an error naming both.
"""

from __future__ import annotations

import difflib
import warnings
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from wmlab import API_VERSION
from wmlab.errors import RegistryError

METHODS = "wmlab.methods"
ENVS = "wmlab.envs"
_KIND = {METHODS: "method", ENVS: "env family"}


@dataclass(frozen=True)
class PluginInfo:
    """One entry point and where it comes from."""

    name: str
    group: str
    value: str
    dist: str
    version: str

    @classmethod
    def from_entry_point(cls, ep: EntryPoint, group: str) -> "PluginInfo":
        dist = ep.dist
        return cls(ep.name, group, ep.value, dist.name if dist else "?", dist.version if dist else "?")


def _dist_label(ep: EntryPoint) -> str:
    dist = ep.dist
    return f"{dist.name} {dist.version}" if dist else "an unknown distribution"


def _scan(group: str) -> tuple[dict[str, EntryPoint], dict[str, list[EntryPoint]]]:
    """The entry points of ``group`` by name, and the names that several distributions
    declare (with all their entry points)."""
    found: dict[str, EntryPoint] = {}
    clashes: dict[str, list[EntryPoint]] = {}
    for ep in entry_points(group=group):
        first = found.setdefault(ep.name, ep)
        if first is not ep and _dist_label(first) != _dist_label(ep):
            clashes.setdefault(ep.name, [first]).append(ep)
    return found, clashes


def _entry_points(group: str) -> dict[str, EntryPoint]:
    return _scan(group)[0]


def _shadow_message(group: str, name: str, eps: list[EntryPoint]) -> str:
    where = " and ".join(f"{_dist_label(ep)} ({ep.value})" for ep in eps)
    return (f"{_KIND[group]} {name!r} is declared by {len(eps)} installed distributions, "
            f"{where}: one shadows the other; uninstall one of them or rename its entry point")


def names(group: str) -> list[str]:
    return sorted(_entry_points(group))


def info(group: str, name: str) -> PluginInfo:
    """Where plugin ``name`` comes from; :class:`RegistryError` if it is unknown or shadowed."""
    eps, clashes = _scan(group)
    if name not in eps:
        raise RegistryError(_unknown(group, name, sorted(eps)))
    if name in clashes:
        raise RegistryError(_shadow_message(group, name, clashes[name]))
    return PluginInfo.from_entry_point(eps[name], group)


def _unknown(group: str, name: str, valid: list[str]) -> str:
    kind = _KIND[group]
    close = difflib.get_close_matches(name, valid, n=3)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    return f"unknown {kind} {name!r}{hint}; valid: {', '.join(valid) or 'none installed'}"


def check_api_version(obj: Any, plugin: PluginInfo) -> None:
    """Refuse a plugin built for another major version of the contract."""
    declared = str(getattr(obj, "api_version", "")) or "none"
    if declared.split(".")[0] != API_VERSION.split(".")[0]:
        raise RegistryError(
            f"{_KIND[plugin.group]} {plugin.name!r} ({plugin.dist} {plugin.version}) was built for "
            f"wmlab API {declared}, but this wmlab provides API {API_VERSION}; "
            f"install a version of {plugin.dist} made for wmlab API {API_VERSION.split('.')[0]}.x"
        )


def load(group: str, name: str) -> tuple[Any, PluginInfo]:
    """Import one plugin by name; errors name the plugin and what is valid."""
    plugin = info(group, name)
    eps = _entry_points(group)
    try:
        obj = eps[name].load()
    except Exception as e:  # a broken plugin must not take the CLI down with a traceback
        raise RegistryError(
            f"{_KIND[group]} {name!r} from {plugin.dist} {plugin.version} failed to import "
            f"({plugin.value}): {type(e).__name__}: {e}"
        ) from e
    check_api_version(obj, plugin)
    if group == ENVS:  # (a method is recorded once load_method has checked it)
        _remember(plugin, obj)
    return obj, plugin


def _remember(plugin: PluginInfo, obj: Any) -> None:
    from wmlab import plugin_index

    plugin_index.remember(plugin, obj)


def load_method(name: str):
    from wmlab.api import Method

    cls, plugin = load(METHODS, name)
    if not (isinstance(cls, type) and issubclass(cls, Method)):
        raise RegistryError(f"method {name!r} ({plugin.value}) is not a subclass of wmlab.api.Method")
    if not hasattr(cls, "Config"):
        raise RegistryError(f"method {name!r} ({plugin.value}) declares no Config dataclass")
    _remember(plugin, cls)
    return cls, plugin


def load_env_family(name: str):
    cls, plugin = load(ENVS, name)
    return cls(), plugin


def survey(group: str) -> list[tuple[PluginInfo, str | None]]:
    """Every plugin of a group with ``None`` if it loads, else the problem (for ``wmlab list``).

    A plugin that loaded before and has not changed since (:mod:`wmlab.plugin_index`) is
    not imported again."""
    from wmlab import plugin_index

    rows = []
    eps, clashes = _scan(group)
    for name in sorted(eps):
        plugin = PluginInfo.from_entry_point(eps[name], group)
        if name in clashes:
            problem = _shadow_message(group, name, clashes[name])
            warnings.warn(problem, stacklevel=2)
            rows.append((plugin, problem))
            continue
        if plugin_index.lookup(plugin) is not None:
            rows.append((plugin, None))
            continue
        try:
            if group == METHODS:
                load_method(name)
            else:
                load(group, name)
            rows.append((plugin, None))
        except RegistryError as e:
            warnings.warn(str(e), stacklevel=2)
            rows.append((plugin, str(e)))
    return rows
