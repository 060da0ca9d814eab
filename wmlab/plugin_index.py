"""What the CLI knows about installed plugins without importing them.

Importing a method plugin imports torch and Lightning (10 s and more on a small machine),
and an env family its simulator. To answer ``wmlab list`` and to reject bad input
(an unknown preset, config key or task, a value of the wrong type) in a fraction of a
second, wmlab keeps a small JSON index of what it learnt the last time it imported each
plugin: its description, the fields and types of its ``Config``, its presets and env
presets, the observations it learns from and, for an env family whose task list is
fixed (:attr:`wmlab.envs.EnvFamily.fixed_tasks`), its tasks.

An entry is used only while its *fingerprint* matches: the plugin's distribution and
version, the path, modification time and size of every source file of the plugin's
top-level package, and the modification times of the environment's site-packages folders
(installing, upgrading or removing any package changes them). Anything else is imported as before, and the entry
is written again.

The index lives in ``$WMLAB_CACHE_DIR``, else ``$XDG_CACHE_HOME/wmlab``, else
``~/.cache/wmlab``, one file per Python environment; deleting it is always safe. The checks
here only reject what the full composition (:func:`wmlab.config.compose`, run later with
the imported plugins) would reject too: types the index cannot express exactly are
accepted here and checked there.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import sys
import tempfile
import typing
from importlib.util import find_spec
from pathlib import Path
from typing import Any, Optional

log = logging.getLogger(__name__)

INDEX_VERSION = 3
_SIMPLE = {"int": int, "float": float, "bool": bool, "str": str}
_MISSING_DEFAULT = "???"  # OmegaConf's MISSING


def cache_dir() -> Path:
    explicit = os.environ.get("WMLAB_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "wmlab"


def index_path() -> Path:
    """One index per Python environment (interpreter prefix and version)."""
    env = hashlib.sha1(f"{sys.prefix}|{sys.version}".encode()).hexdigest()[:12]
    return cache_dir() / f"plugins-{env}.json"


def _read() -> dict[str, Any]:
    try:
        data = json.loads(index_path().read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("version") != INDEX_VERSION:
        return {}
    entries = data.get("entries")
    return entries if isinstance(entries, dict) else {}


def _write(entries: dict[str, Any]) -> None:
    path = index_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".plugins-", suffix=".json")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump({"version": INDEX_VERSION, "entries": entries}, f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# --- fingerprints -----------------------------------------------------------------------


def _source_files(module: str) -> list[str]:
    """The source files of ``module``'s top-level package (or the module itself), found
    without importing it."""
    top = module.split(".")[0]
    spec = find_spec(top)
    if spec is None:
        return []
    if spec.submodule_search_locations:
        files = []
        for root in spec.submodule_search_locations:
            for folder, dirs, names in os.walk(root):
                dirs[:] = sorted(d for d in dirs if d != "__pycache__" and not d.startswith("."))
                files += [os.path.join(folder, n) for n in sorted(names) if n.endswith(".py")]
        return files
    return [spec.origin] if spec.origin and os.path.exists(spec.origin) else []


def _install_dirs() -> list[str]:
    """Where packages of this environment are installed (their modification times change
    whenever a package is installed, upgraded or removed)."""
    import site
    import sysconfig

    paths = sysconfig.get_paths()
    dirs = [paths.get("purelib"), paths.get("platlib")]
    if site.ENABLE_USER_SITE:
        dirs.append(site.getusersitepackages())
    return sorted({d for d in dirs if d})


def fingerprint(value: str, dist: str, version: str) -> str:
    h = hashlib.sha1(f"{INDEX_VERSION}|{value}|{dist}|{version}".encode())
    for path in [*_source_files(value.split(":")[0]), *_install_dirs()]:
        try:
            st = os.stat(path)
        except OSError:
            continue
        h.update(f"{path}|{st.st_mtime_ns}|{st.st_size}\n".encode())
    return h.hexdigest()


def _key(group: str, name: str) -> str:
    return f"{group}:{name}"


# --- writing entries --------------------------------------------------------------------


def _type_name(tp: Any) -> str:
    if isinstance(tp, str):
        return tp.replace("typing.", "").replace(" ", "")
    if isinstance(tp, type):
        return tp.__name__
    return str(tp).replace("typing.", "").replace(" ", "")


def _jsonable(value: Any) -> Any:
    """``value`` as JSON data if it round-trips exactly, else raise ``TypeError``."""
    text = json.dumps(value, default=_refuse)
    if json.loads(text) != value:
        raise TypeError("does not round-trip")
    return json.loads(text)


def _refuse(value: Any) -> Any:
    raise TypeError(f"{type(value).__name__} is not JSON data")


def _fields(config_cls: Any) -> Optional[list[list[Any]]]:
    """``[name, type, default]`` of every field (``[name, type]`` where the default is not
    JSON data)."""
    if not (isinstance(config_cls, type) and dataclasses.is_dataclass(config_cls)):
        return None
    rows = []
    for f in dataclasses.fields(config_cls):
        row = [f.name, _type_name(f.type)]
        if f.default is not dataclasses.MISSING:
            default = _optional(_jsonable, f.default)
            row += [default] if default is not None or f.default is None else []
        elif f.default_factory is not dataclasses.MISSING:
            default = _optional(lambda: _jsonable(f.default_factory()))  # noqa: B023
            row += [default] if default is not None else []
        rows.append(row)
    return rows


def _optional(fn, *args) -> Any:
    try:
        return fn(*args)
    except Exception:
        return None


def describe(group: str, obj: Any) -> dict[str, Any]:
    """What the index keeps of a loaded plugin ``obj`` (a method class or a family class)."""
    from wmlab import registry

    entry: dict[str, Any] = {
        "description": str(getattr(obj, "description", "") or ""),
        "config": _optional(_fields, getattr(obj, "Config", None)),
    }
    if group == registry.METHODS:
        entry["presets"] = _optional(_jsonable, dict(getattr(obj, "presets", {}) or {}))
        entry["env_presets"] = _optional(_jsonable, dict(getattr(obj, "env_presets", {}) or {}))
        entry["observations"] = _optional(_jsonable, list(getattr(obj, "observations", ("state",))))
    else:
        entry["tasks"] = (_optional(lambda: sorted(str(t) for t in obj().tasks()))
                          if getattr(obj, "fixed_tasks", False) is True else None)
        entry["always_uses_gl"] = getattr(obj, "always_uses_gl", False) is True
    return entry


def remember(plugin, obj: Any) -> None:
    """Record a plugin that has just loaded and passed the registry's checks (never raises)."""
    try:
        entries = _read()
        stamp = fingerprint(plugin.value, plugin.dist, plugin.version)
        key = _key(plugin.group, plugin.name)
        if entries.get(key, {}).get("fingerprint") == stamp:
            return
        entries[key] = {"value": plugin.value, "dist": plugin.dist, "version": plugin.version,
                        "fingerprint": stamp, **describe(plugin.group, obj)}
        _write(entries)
    except Exception as e:  # an unwritable cache only costs time
        log.debug("could not update the plugin index: %s", e)


def lookup(plugin) -> Optional[dict[str, Any]]:
    """The index entry of ``plugin`` (a :class:`wmlab.registry.PluginInfo`) if it is up to
    date, else ``None``."""
    entry = _read().get(_key(plugin.group, plugin.name))
    if not isinstance(entry, dict) or entry.get("value") != plugin.value:
        return None
    try:
        if entry.get("fingerprint") != fingerprint(plugin.value, plugin.dist, plugin.version):
            return None
    except Exception:
        return None
    return entry


# --- stand-ins for composing a config -----------------------------------------------------


def _field_type(name: str) -> Any:
    """The type of a recorded field where the index can say it exactly, else ``Any``."""
    if name in _SIMPLE:
        return _SIMPLE[name]
    for wrapper in ("Optional[", ):
        if name.startswith(wrapper) and name.endswith("]") and name[len(wrapper):-1] in _SIMPLE:
            return Optional[_SIMPLE[name[len(wrapper):-1]]]
    return typing.Any


def _config_class(title: str, fields: list[list[Any]]) -> type:
    spec = []
    for row in fields:
        name, type_name = row[0], row[1]
        tp = _field_type(type_name)
        if len(row) > 2:
            default = row[2]
        else:
            default = None if tp is typing.Any or type_name.startswith("Optional[") else _MISSING_DEFAULT
        if isinstance(default, (dict, list)):
            spec.append((str(name), tp, dataclasses.field(default_factory=lambda d=default: json.loads(json.dumps(d)))))
        else:
            spec.append((str(name), tp, dataclasses.field(default=default)))
    return dataclasses.make_dataclass(title, spec)


def method_stand_in(entry: dict[str, Any]) -> Optional[type]:
    """A class with what :func:`wmlab.config.compose` reads of a method, from its entry;
    ``None`` if the entry cannot stand in for it."""
    if entry.get("config") is None or entry.get("env_presets") is None or entry.get("observations") is None:
        return None
    attrs = {"Config": _config_class("IndexedConfig", entry["config"]),
             "env_presets": entry["env_presets"], "observations": tuple(entry["observations"])}
    if entry.get("presets") is not None:
        attrs["presets"] = entry["presets"]
    return type("IndexedMethod", (), attrs)


def family_stand_in(entry: dict[str, Any]) -> Optional[type]:
    if entry.get("config") is None:
        return None
    fields = entry["config"]
    return type("IndexedFamily", (), {"Config": _config_class("IndexedEnvConfig", fields) if fields else None,
                                      "always_uses_gl": bool(entry.get("always_uses_gl", False))})


def always_uses_gl(env: str) -> bool:
    """Whether the index says the family of ``env`` renders every task through OpenGL."""
    from wmlab import registry
    from wmlab.envs import split_family

    try:
        entry = lookup(registry.info(registry.ENVS, split_family(env)[0]))
    except Exception:  # an unknown family: the full checks say so later
        return False
    return bool(entry and entry.get("always_uses_gl"))


# --- early input checks -------------------------------------------------------------------


def check_input(method: str, env: str, *, presets=(), files=(), overrides=()):
    """Raise the error :func:`wmlab.config.compose` (and the env family) would raise for this
    input, as far as the index can tell without importing any plugin. Returns the config
    composed from the index when both plugins are in it (its core sections are the real
    ones: the CLI checks folders and the tracking store with it), else ``None``; the full
    composition still runs later.

    Checked always: the method and env family names, the override syntax, the core keys and
    their types. With up-to-date index entries of both plugins also: the task, the presets,
    the config files, the method's and the family's keys and the types of their fields."""
    from omegaconf import OmegaConf

    from wmlab import registry
    from wmlab.config import CoreConfig, EnvConfig, _env_section, _merge, compose, env_config_class, parse_overrides
    from wmlab.envs import check_listed_task, split_family

    layer = parse_overrides(overrides)
    m_entry = lookup(registry.info(registry.METHODS, method))
    family, task = split_family(env)
    f_entry = lookup(registry.info(registry.ENVS, family))
    if f_entry is not None and f_entry.get("tasks") is not None:
        check_listed_task(family, task, f_entry["tasks"])
    method_cls = method_stand_in(m_entry) if m_entry is not None else None
    family_cls = family_stand_in(f_entry) if f_entry is not None else None
    if method_cls is not None and family_cls is not None and hasattr(method_cls, "presets"):
        return compose(method, method_cls, env, presets=presets, files=files, overrides=overrides,
                       family_cls=family_cls)
    # a plugin not in the index: the overrides alone, on sections that take any key where
    # the plugin would say which
    cfg = OmegaConf.structured(CoreConfig)
    OmegaConf.set_struct(cfg, False)
    cfg.env = _env_section(env_config_class(family_cls)) if family_cls else OmegaConf.structured(EnvConfig)
    cfg.method = OmegaConf.structured(method_cls.Config) if method_cls else OmegaConf.create({})
    OmegaConf.set_struct(cfg, True)
    if family_cls is None:
        OmegaConf.set_struct(cfg.env, False)
    if method_cls is None:
        OmegaConf.set_struct(cfg.method, False)
    _merge(cfg, layer, "command-line override", family)
    return None
