"""Configuration: typed sections, presets and overrides, composed with OmegaConf.

Order of composition (later wins)::

    core defaults (dataclasses below, then configs/defaults.yaml)
      <- env preset      (configs/envs/<domain>.yaml, then configs/envs/<domain>-<task>.yaml;
                          for FAMILY:TASK, configs/envs/<family>.yaml, then <family>-<task>.yaml)
      <- method defaults (the plugin's typed Config) and its env_presets
      <- presets         (--preset NAME: configs/presets/NAME.yaml or configs/experiments/NAME.yaml,
                          and the method's own preset of that name)
      <- --config FILE   (repeatable, in order)
      <- key=value overrides

Every key is typed; an unknown key or a value of the wrong type is an error naming it.
The ``env`` section holds the core keys (:class:`EnvConfig`) plus the fields of the env
family's own ``Config`` (the family named by ``--env``; only that one is imported), so
``env.camera`` exists for dm_control tasks and ``env.sticky_actions`` for Atari games.
The result is read-only.
"""

from __future__ import annotations

import dataclasses
import fnmatch
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Optional, Sequence

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from wmlab.envs import DEFAULT_FAMILY, split_family
from wmlab.errors import ConfigError, RegistryError


@dataclass
class RunConfig:
    seed: int = 1
    """Seed of everything (torch, numpy, envs); eval envs use seed + 10_000."""
    steps: int = 500_000
    """Training budget in env steps (simulator frames, i.e. policy steps x action repeat)."""
    name: Optional[str] = None
    """MLflow run name, kept if the experiment has no run of that name yet, else suffixed
    with 4 hex digits; default ``<method>-<env>-s<seed>-<4 hex digits>``."""
    accelerator: str = "auto"
    """Lightning accelerator: auto, cpu, gpu."""
    devices: Any = 1
    """Lightning devices: a count, a list of indices or ``auto``."""
    precision: str = "32-true"
    """Lightning precision: 32-true, bf16-mixed, 16-mixed. A mixed setting autocasts the
    updates (Lightning) and acting, planning included (the core, around ``Policy.act``).
    On a CPU with bfloat16 matrix units (Intel AMX, AVX512-BF16) ``bf16-mixed`` about
    halves TD-MPC's update and planning time (``benchmarks/fit_throughput.py --precision``);
    a CPU without them computes bfloat16 products in float32 units, with no such gain."""
    strategy: str = "auto"
    """Lightning strategy, e.g. ddp (each rank collects with its own seed and buffer)."""
    nodes: int = 1
    """Lightning ``num_nodes``: machines of a DDP run, each running ``devices`` ranks."""
    threads: int = 0
    """torch intra-op threads; 0 keeps torch's default (every core, or ``$OMP_NUM_THREADS``)."""
    reuse_memory: bool = False
    """Keep host memory that large tensors free for the next ones (Linux with glibc; set for the
    whole process when the run is built, see :mod:`wmlab.memory`): glibc otherwise maps every
    block over 32 MiB afresh and unmaps it when freed, so each large tensor of an update faults
    in zeroed pages. On one CPU core it made Dreamer's update-only loop 1.36x as fast from pixels
    (0.075 -> 0.103 updates/s, peak resident memory 15.7 -> 17.1 GB) and 1.17x from states
    (walker-walk, the paper's 50 x 50 batch; two processes one after the other). Off by
    default: the process keeps its peak resident memory and more (Dreamer from pixels at that
    batch, a small replay: 4.61 GiB after 10 updates, 4.90 after 60, in steps; 1.94-2.01 GiB,
    peak 3.46, without it; the memory in use stayed at 0.49 GiB in both). Of a growth measured
    earlier over 150 updates (``benchmarks/reuse_memory_rss.py``: 16.05 -> 17.17 GiB with the
    setting, 13.25 -> 13.97 without), the part in live allocations (11.92 -> 12.57 GiB) was
    the benchmark's discarded Lightning Trainers and their optimizers' moments, about 48 MiB
    each, waiting in reference cycles for Python's rare full collection; the loop now
    collects them at the end of every gradient stage."""
    compile: str = "off"
    """``torch.compile`` the submodules the method names (``Method.compiled_modules``, e.g.
    TD-MPC's latent dynamics, reward, Q and policy nets; the RSSM's cells, encoder, decoder
    and heads): ``off``, or a torch.compile mode: ``default``, ``reduce-overhead`` (CUDA
    graphs on a GPU), ``max-autotune``. Each module compiles at its first call (tens of
    seconds; a graph per input shape and grad mode: DreamerV2's ``debug`` preset compiled 29
    graphs in 70 s on one CPU core); while it does, a line says so at most every 10 s, and
    the run's last line totals graphs and seconds. Needs a C++ compiler. Weights and
    checkpoints are the same as eager's. In the CUDA-graph modes (``reduce-overhead``,
    ``max-autotune``) a compiled module's GPU outputs are copies, since a graph rewrites its
    outputs at its next replay. On an H200, compiling
    DreamerV2's modules in ``reduce-overhead`` took one to several minutes, and the update
    then ran 0.95x eager's speed from pixels (the README's Benchmarks): what runs between
    the modules still launches kernel by kernel. Measure before compiling a long run.
    ``benchmarks/fit_throughput.py --compile MODE`` measures it against eager in one run: on
    one CPU core, TD-MPC at the paper's sizes ran 1.06x the updates/s and planned 1.11x as
    fast, Dreamer from states 1.15x the updates/s but acted 0.67x as fast at batch 1 (the
    README's Benchmarks)."""
    envs: int = 1
    """Training envs stepping together (a torchrl SerialEnv when > 1), for every method:
    replay methods store every env's steps (the train ratio counts policy steps over all
    envs), on-policy methods get rollouts ``[envs, T]``, search stages run candidates'
    episodes ``envs`` at a time. Env ``i`` is seeded ``run.seed + i``."""


@dataclass
class EnvConfig:
    """The ``env`` keys every env family shares. A family adds its own (its ``Config``,
    e.g. ``camera`` for dm_control, ``sticky_actions`` for Atari): :func:`compose` builds
    the section from these and the fields of the family named by ``--env``."""

    name: str = ""
    """The env as given to ``--env`` (set by it): a dm_control ``domain-task``, or
    ``family:task`` (``atari:pong``, ``gym:CartPole-v1``)."""
    obs: str = "state"
    """``state`` (the task's state vector) or ``pixels`` (64x64 RGB, or grayscale, see
    ``grayscale``). Atari games are pixels only."""
    action_repeat: int = 2
    """Simulator frames per policy step."""
    episode_steps: int = 1000
    """Episode length in simulator frames (dm_control's time limit; Atari: 108000; a
    gymnasium task also ends at its own limit)."""
    image_size: int = 64
    """Side of rendered square images."""
    grayscale: bool = False
    """Pixels as one grayscale channel ``[1, H, W]`` instead of RGB ``[3, H, W]`` (Atari's
    env preset turns it on, as DreamerV2); a family that cannot give grayscale (dm_control)
    rejects it."""


@dataclass
class ReplayConfig:
    capacity: int = 1_000_000
    """Replay capacity in policy steps (a method's DataSpec may ask for another)."""
    device: str = "auto"
    """Where the replay lives: ``auto`` (the training device) or an explicit device."""


@dataclass
class EvalConfig:
    every: int = 10_000
    """Evaluate every this many env steps (0 disables periodic evaluation)."""
    episodes: int = 10
    """Deterministic-policy episodes per evaluation."""
    envs: int = 1
    """Eval envs running episodes side by side, one batched policy call per step for all of
    them (each takes the next episode when its own ends): fewer, larger policy calls where
    acting is costly (planning, imagination). Env ``i`` is seeded ``i`` after the first, so
    every evaluation sees the same episodes; 1 runs them one after the other."""
    video: bool = True
    """Record the first episode of each evaluation as an mp4."""
    video_size: int = 256
    """Side in pixels of video frames, rendered for the video (not the model's input size,
    ``env.image_size``)."""
    final: bool = True
    """Also evaluate when training ends."""


@dataclass
class CheckpointConfig:
    every: int = 50_000
    """Checkpoint at the first episode end after every this many env steps (0: only at the end)."""
    minutes: float = 5.0
    """Also checkpoint at the first episode end after this many minutes since the last
    checkpoint, so a crash loses minutes of work at most (0: by env steps only). Ctrl-C and
    SIGTERM write one too, at the next safe point."""
    dir: str = "checkpoints"
    """Checkpoints go to ``<dir>/<mlflow run id>/``."""
    replay: bool = True
    """Save the replay buffer with the checkpoint (needed for an exact resume). Without it a
    resumed run first collects a prefill's worth with its current policy (env steps that
    count, and earn no updates), then trains on what it collects from there."""


@dataclass
class TrackingConfig:
    uri: Optional[str] = None
    """MLflow tracking URI; default ``$MLFLOW_TRACKING_URI``, else the local store ./mlflow/."""
    experiment: str = "wmlab"
    """MLflow experiment name."""
    log_every: int = 50
    """Log training metrics every this many updates."""
    parent: Optional[str] = None
    """Id of an MLflow run this run is nested under (tag ``mlflow.parentRunId``); a sweep
    sets it for each of its runs."""


@dataclass
class CoreConfig:
    run: RunConfig = field(default_factory=RunConfig)
    env: EnvConfig = field(default_factory=EnvConfig)
    replay: ReplayConfig = field(default_factory=ReplayConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    method: Any = None


def configs_dir() -> Path:
    """The YAML presets shipped with wmlab (top-level ``configs/``, installed as ``wmlab.configs``)."""
    return Path(str(resources.files("wmlab.configs")))


def _load_yaml(path: Path, what: str) -> DictConfig:
    try:
        loaded = OmegaConf.load(path)
    except FileNotFoundError:
        raise ConfigError(f"{what} not found: {path}") from None
    except (OmegaConfBaseException, yaml.YAMLError, ValueError, OSError) as e:
        detail = " ".join(str(e).split())
        raise ConfigError(f"cannot read {what} {path}: {detail}") from None
    if not isinstance(loaded, DictConfig):
        raise ConfigError(f"{what} {path} must hold a mapping of sections, e.g. 'run: {{steps: 1000}}'")
    return loaded


PRESET_DIRS = ("presets", "experiments")


def available_presets(method_cls) -> list[str]:
    files = {p.stem for d in PRESET_DIRS for p in (configs_dir() / d).glob("*.yaml")}
    return sorted(files | set(getattr(method_cls, "presets", {})))


def parse_overrides(overrides: Sequence[str]) -> DictConfig:
    """``["method.lr=3e-4", "run.steps=1000"]`` -> a config tree; malformed items are errors."""
    for item in overrides:
        key, sep, _ = item.partition("=")
        if not sep or not key or any(not part.isidentifier() for part in key.split(".")):
            raise ConfigError(
                f"malformed override {item!r}: expected key=value with a dotted key, "
                f"e.g. run.steps=100000 or method.lr=3e-4"
            )
    try:
        return OmegaConf.from_dotlist(list(overrides))
    except OmegaConfBaseException as e:
        raise ConfigError(f"malformed override: {e}") from None


def _merge(base: DictConfig, layer: Any, source: str, family: str = "") -> DictConfig:
    try:
        return OmegaConf.merge(base, layer)
    except OmegaConfBaseException as e:
        key = getattr(e, "full_key", None) or ""
        msg = str(e).splitlines()[0]
        if "Key" in type(e).__name__ or "not in struct" in msg or "Could not override" in msg:
            whose = (f" (the env keys of the {family} family: the core ones and its own)"
                     if family and key.startswith("env.") else "")
            raise ConfigError(f"unknown config key {key!r} (from {source}); "
                              f"valid keys: {_valid_keys_near(base, key)}{whose}") from None
        section = _value_over_section(base, layer)
        if section is not None:
            keys = _valid_keys_near(base, section + ".KEY")
            raise ConfigError(f"{section!r} is a section, not a value (from {source}); set its keys, e.g. "
                              f"{section}.KEY=VALUE" + (f"; valid keys: {keys}" if keys else "")) from None
        if msg.startswith("Incompatible value 'None'") or (msg.startswith("field '") and "is not Optional" in msg):
            msg = f"it needs a value ({key}=VALUE); an empty one is None"
        raise ConfigError(f"bad value for {key!r} (from {source}): {msg}") from None


def _value_over_section(base: Any, layer: Any, prefix: str = "") -> str | None:
    """The dotted key at which ``layer`` gives a plain value (``run=5``) where ``base`` has a
    section, if any."""
    if not isinstance(base, DictConfig) or not isinstance(layer, (dict, DictConfig)):
        return None
    for key, value in layer.items():
        node = base._get_node(key) if key in base else None
        if isinstance(node, DictConfig):
            if value is not None and not isinstance(value, (dict, DictConfig)):
                return f"{prefix}{key}"
            found = _value_over_section(node, value, f"{prefix}{key}.")
            if found is not None:
                return found
    return None


def _valid_keys_near(cfg: DictConfig, key: str) -> str:
    parts = key.split(".") if key else []
    node: Any = cfg
    prefix = []
    for part in parts[:-1]:
        if isinstance(node, DictConfig) and part in node:
            node = node[part]
            prefix.append(part)
        else:
            break
    if not isinstance(node, DictConfig):
        node = cfg
        prefix = []
    names = [".".join(prefix + [str(k)]) for k in node.keys()]
    return ", ".join(names)


def _family_and_task(name: str) -> tuple[str, str]:
    """``"cheetah-run"`` -> ``("dmc", "cheetah-run")``, ``"atari:pong"`` -> ``("atari", "pong")``."""
    family, sep, task = name.partition(":")
    return (family, task) if sep else (DEFAULT_FAMILY, name)


def env_preset_stems(env_name: str) -> list[str]:
    """Names of the env presets (``configs/envs/<stem>.yaml``) for ``--env``, general first.

    dm_control, ``cheetah-run`` or ``dmc:cheetah-run``: ``cheetah``, ``cheetah-run``;
    another family, ``atari:pong``: ``atari`` (every game), ``atari-pong``.
    """
    family, task = _family_and_task(env_name)
    if family == DEFAULT_FAMILY:
        return list(dict.fromkeys([task.split("-", 1)[0], task]))
    return [family, f"{family}-{task}"]


def env_pattern_matches(env_name: str, pattern: str) -> bool:
    """Whether a method's ``env_presets`` glob applies to ``--env env_name``.

    ``FAMILY:GLOB`` (``atari:*``) matches that family's tasks; a glob without a family
    (``*``, ``cartpole-*``) matches tasks of the default family (dm_control) only, so a
    method's DMC settings never leak into another family's envs."""
    (family, task), (p_family, p_task) = _family_and_task(env_name), _family_and_task(pattern)
    return fnmatch.fnmatchcase(family, p_family) and fnmatch.fnmatchcase(task, p_task)


def env_config_class(family: Any) -> type:
    """The dataclass of the ``env`` section for an env family (class or instance): the
    core :class:`EnvConfig` fields, then the fields of the family's ``Config``.

    A family without a ``Config`` gets :class:`EnvConfig`. :class:`RegistryError` if its
    ``Config`` is not a dataclass, has a field without a default or redefines a core key.
    """
    own = getattr(family, "Config", None)
    label = getattr(family, "__name__", type(family).__name__)
    if own is None or own is EnvConfig:
        return EnvConfig
    if not (isinstance(own, type) and dataclasses.is_dataclass(own)):
        raise RegistryError(f"env family {label}: its Config must be a dataclass, got {own!r}")
    fields = {f.name for f in dataclasses.fields(own)}
    clash = sorted(fields & {f.name for f in dataclasses.fields(EnvConfig)})
    if clash:
        raise RegistryError(f"env family {label}: its Config redefines core env keys "
                            f"{', '.join(clash)}; use other names")
    if not fields:
        return EnvConfig
    try:  # bases in this order put the core fields first
        return dataclasses.make_dataclass(f"{own.__name__}EnvConfig", [], bases=(own, EnvConfig))
    except TypeError as e:  # a field without a default after the core ones
        raise RegistryError(f"env family {label}: every field of its Config needs a default "
                            f"({e})") from None


def _env_section(schema: type) -> DictConfig:
    """The typed ``env`` section of ``schema``; its free-form mappings (``Dict[str, Any]``
    fields, e.g. the gym family's ``kwargs``) take new keys (``env.kwargs.continuous=false``)."""
    section = OmegaConf.structured(schema)
    for key in section:
        node = section._get_node(key)
        if isinstance(node, DictConfig) and OmegaConf.get_type(node) is dict:
            OmegaConf.set_struct(node, False)
    return section


def _env_family(env_name: str) -> tuple[str, Any]:
    """``(family name, family class)`` of ``--env env_name``; imports that family only."""
    from wmlab import registry

    family, _ = split_family(env_name)
    cls, _ = registry.load(registry.ENVS, family)
    return family, cls


def env_config(env_name: str, **values: Any) -> DictConfig:
    """The ``env`` section for ``--env env_name`` with defaults and ``values`` (and no
    presets): what a family's ``make`` takes, for scripts and tests. An unknown key is a
    :class:`ConfigError` naming the valid ones."""
    _, family_cls = _env_family(env_name)
    schema = _env_section(env_config_class(family_cls))
    layer = {"name": env_name, **values}
    return _merge(OmegaConf.create({"env": schema}), {"env": layer}, "env_config").env


def _without_stale_env_keys(saved: Any, schema: type) -> Any:
    """A checkpoint's config without ``env`` keys that the family's section no longer has.

    Every ``env`` section once carried the dm_control and Atari settings together; a run
    saved then keeps resuming (its config was valid when saved)."""
    container = OmegaConf.to_container(OmegaConf.create(saved), resolve=False)
    env = container.get("env") if isinstance(container, dict) else None
    if isinstance(env, dict):
        known = {f.name for f in dataclasses.fields(schema)}
        container["env"] = {k: v for k, v in env.items() if k in known}
    return container


def compose(
    method_name: str,
    method_cls,
    env_name: str,
    *,
    presets: Sequence[str] = (),
    files: Sequence[str | Path] = (),
    overrides: Sequence[str] = (),
    base: DictConfig | None = None,
    family_cls: Any = None,
) -> DictConfig:
    """Build the resolved, read-only config of a run (see the module docstring for the order).

    ``base`` (a resumed run's saved config) is applied after the presets, before files
    and overrides; with it the env presets are not applied again (the saved config holds
    what they gave, and a key added since it was saved keeps its default, so an old run
    resumes as it was). The ``env`` section's keys come from the family of ``env_name``
    (:func:`env_config_class`), imported through the registry unless ``family_cls`` is
    given."""
    if family_cls is None:
        family, family_cls = _env_family(env_name)
    else:
        family = split_family(env_name)[0]
    env_schema = env_config_class(family_cls)
    cfg = OmegaConf.structured(CoreConfig)
    OmegaConf.set_struct(cfg, False)
    cfg.env = _env_section(env_schema)
    cfg.method = OmegaConf.structured(method_cls.Config)
    OmegaConf.set_struct(cfg, True)
    cdir = configs_dir()

    layers: list[tuple[Any, str]] = []
    defaults = cdir / "defaults.yaml"
    if defaults.exists():
        layers.append((_load_yaml(defaults, "core defaults"), str(defaults)))
    layers.append(({"env": {"name": env_name}}, "--env"))
    # a saved config already holds what its env presets gave; replayed, they would also set
    # keys added since it was saved, changing an old run (such keys keep their defaults)
    for stem in env_preset_stems(env_name) if base is None else ():
        path = cdir / "envs" / f"{stem}.yaml"
        if path.exists():
            layers.append((_load_yaml(path, "env preset"), str(path)))
    for pattern, layer in getattr(method_cls, "env_presets", {}).items() if base is None else ():
        if env_pattern_matches(env_name, pattern):
            layers.append((layer, f"{method_name} env preset {pattern!r}"))
    for preset in presets:
        # "{method}" and "{env}" in a preset's name stand for this run's, so one sweep over
        # several methods can give each its own preset (e.g. "{method}-cartpole-swingup-small")
        preset = preset.replace("{method}", method_name).replace("{env}", env_name)
        found = False
        for folder in PRESET_DIRS:
            path = cdir / folder / f"{preset}.yaml"
            if path.exists():
                layers.append((_load_yaml(path, "preset"), str(path)))
                found = True
        if preset in getattr(method_cls, "presets", {}):
            layers.append((method_cls.presets[preset], f"{method_name} preset {preset!r}"))
            found = True
        if not found:
            path_hint = ("; a YAML file of your own goes with --config FILE"
                         if preset.endswith((".yaml", ".yml")) or "/" in preset else "")
            raise ConfigError(f"unknown preset {preset!r} for method {method_name!r}; "
                              f"valid presets: {', '.join(available_presets(method_cls)) or 'none'}{path_hint}")
    if base is not None:
        layers.append((_without_stale_env_keys(base, env_schema), "the checkpoint's config"))
    for f in files:
        layers.append((_load_yaml(Path(f), "config file"), str(f)))
    if overrides:
        layers.append((parse_overrides(overrides), "command-line override"))

    for layer, source in layers:
        cfg = _merge(cfg, layer, source, family)
    _validate(cfg, method_cls, method_name)
    OmegaConf.set_readonly(cfg, True)
    return cfg


#: Lightning's precision settings (checked here, before Lightning is imported, which takes seconds)
PRECISIONS = ("32-true", "32", "16-mixed", "16", "bf16-mixed", "bf16", "16-true", "bf16-true",
              "64-true", "64", "transformer-engine", "transformer-engine-float16")
#: ``run.compile``: off, or a mode of :func:`torch.compile`
COMPILE_MODES = ("off", "default", "reduce-overhead", "max-autotune")
#: the largest ``run.seed``: numpy seeds take 0 to 2**32 - 1, and a run also seeds envs, eval
#: envs and DDP ranks at offsets above ``run.seed`` (see :mod:`wmlab.loop`)
MAX_SEED = 2**31 - 1


def _validate(cfg: DictConfig, method_cls, method_name: str = "this method") -> None:
    try:  # an interpolation (${run.steps}) that names no key or gives a value of the wrong type
        OmegaConf.to_container(cfg, resolve=True)
    except OmegaConfBaseException as e:
        key = getattr(e, "full_key", None) or ""
        msg = str(e).splitlines()[0]
        raise ConfigError(f"bad value for {key!r}: {msg}") from None
    kinds = ("state", "pixels")
    if cfg.env.obs not in kinds:
        raise ConfigError(f"env.obs={cfg.env.obs!r} is not valid; valid: {', '.join(kinds)}")
    supported = getattr(method_cls, "observations", ("state",))
    if cfg.env.obs not in supported:
        raise ConfigError(f"{method_name} learns from {', '.join(supported)}, not env.obs={cfg.env.obs}; "
                          f"set env.obs={supported[0]}")
    positive = ["run.steps", "run.envs", "env.action_repeat", "env.episode_steps", "env.image_size",
                "replay.capacity", "eval.episodes", "eval.envs", "eval.video_size"]
    for key in positive:
        if OmegaConf.select(cfg, key) <= 0:
            raise ConfigError(f"{key} must be positive, got {OmegaConf.select(cfg, key)}")
    zero = {"run.threads": "torch's default", "eval.every": "no periodic evaluation",
            "checkpoint.every": "only at the end", "checkpoint.minutes": "not by time",
            "tracking.log_every": "no training metrics"}
    for key, meaning in zero.items():
        if OmegaConf.select(cfg, key) < 0:
            raise ConfigError(f"{key} must be >= 0 (0: {meaning}), got {OmegaConf.select(cfg, key)}")
    if not 0 <= cfg.run.seed <= MAX_SEED:
        raise ConfigError(f"run.seed must be between 0 and {MAX_SEED}, got {cfg.run.seed}")
    precision = str(cfg.run.precision)
    if precision not in PRECISIONS:
        raise ConfigError(f"run.precision={precision!r} is not valid; valid: {', '.join(PRECISIONS)}")
    if str(cfg.run.compile) not in COMPILE_MODES:
        raise ConfigError(f"run.compile={cfg.run.compile}; valid: {', '.join(COMPILE_MODES)}")


def to_yaml(cfg: DictConfig) -> str:
    return OmegaConf.to_yaml(cfg)


def flatten(cfg: DictConfig) -> dict[str, Any]:
    """``{"method.lr": 0.001, ...}`` for MLflow params."""
    out: dict[str, Any] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, f"{prefix}{k}.")
        else:
            out[prefix[:-1]] = node

    walk(OmegaConf.to_container(cfg, resolve=True), "")
    return out
