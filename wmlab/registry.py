"""Plugin discovery through Python entry points.

Methods are entry points in the group ``wmlab.methods`` and env families in
``wmlab.envs``. The built-in plugins are declared in wmlab's own pyproject.toml exactly
like a third party's. Only the plugin that is asked for is imported; ``wmlab list``
imports each one to check it, and a plugin that fails to import is reported as a
warning there while the others keep working.
"""

from __future__ import annotations

import difflib
import warnings
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from wmlab.api import API_VERSION
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


def _entry_points(group: str) -> dict[str, EntryPoint]:
    found: dict[str, EntryPoint] = {}
    for ep in entry_points(group=group):
        found.setdefault(ep.name, ep)  # the first distribution on sys.path wins, as for imports
    return found


def names(group: str) -> list[str]:
    return sorted(_entry_points(group))


def info(group: str, name: str) -> PluginInfo:
    eps = _entry_points(group)
    if name not in eps:
        raise RegistryError(_unknown(group, name, sorted(eps)))
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
    return obj, plugin


def load_method(name: str):
    from wmlab.api import Method

    cls, plugin = load(METHODS, name)
    if not (isinstance(cls, type) and issubclass(cls, Method)):
        raise RegistryError(f"method {name!r} ({plugin.value}) is not a subclass of wmlab.api.Method")
    if not hasattr(cls, "Config"):
        raise RegistryError(f"method {name!r} ({plugin.value}) declares no Config dataclass")
    return cls, plugin


def load_env_family(name: str):
    cls, plugin = load(ENVS, name)
    return cls(), plugin


def survey(group: str) -> list[tuple[PluginInfo, str | None]]:
    """Every plugin of a group with ``None`` if it loads, else the problem (for ``wmlab list``)."""
    rows = []
    for name in names(group):
        plugin = info(group, name)
        try:
            load(group, name)
            rows.append((plugin, None))
        except RegistryError as e:
            warnings.warn(str(e), stacklevel=2)
            rows.append((plugin, str(e)))
    return rows
