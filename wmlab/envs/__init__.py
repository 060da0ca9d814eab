"""Env families: the contract an env plugin implements, and ``--env`` parsing.

An *env family* is a set of related tasks behind one plugin (``dmc`` is dm_control's
suite, ``atari`` the Atari 2600 games of ale-py). A family is a class registered under
the entry-point group ``wmlab.envs`` (resolved by :mod:`wmlab.registry`); it turns a
task name and the ``env`` section of the config into a torchrl env whose TensorDicts
follow :mod:`wmlab.keys`:

* reset and step data carry ``observation`` (``float32`` vector or ``uint8 [C, H, W]``,
  C = 3 for RGB, 1 for grayscale) and ``is_init``;
* ``action`` is a ``float32`` vector; for discrete actions (``EnvSpecs.discrete``) a
  one-hot vector over the choices;
* step data carry ``("next", "reward")`` (``float32 [1]``, summed over the repeated
  frames), ``("next", "done")``, ``("next", "terminated")`` and ``("next", "truncated")``;
* one step is one *policy step* of ``env.action_repeat`` frames, and an episode is
  ``env.episode_steps // env.action_repeat`` policy steps unless the task ends earlier;
* a composite observation (a goal-conditioned task's ``desired_goal``, a state vector
  beside pixels) carries its other entries at the root of reset and step data (and under
  ``"next"``), each declared in :attr:`wmlab.api.EnvSpecs.extra_obs`.

Settings: the ``env`` section of the config holds the keys every family shares
(:class:`wmlab.config.EnvConfig`: ``name``, ``obs``, ``action_repeat``,
``episode_steps``, ``image_size``, ``grayscale``) plus the fields of the family's own
:attr:`EnvFamily.Config` dataclass (``env.camera`` for ``dmc``, ``env.sticky_actions``
for ``atari``); :func:`wmlab.config.compose` builds that section from the family named by
``--env``, so a key of another family is an error. See docs/envs.md.

``--env cheetah-run`` names a task of the default family (``dmc``); ``--env fam:task``
names the family explicitly.
"""

from __future__ import annotations

import atexit
import dataclasses
import difflib
import threading
import time
import weakref
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from wmlab.errors import EnvError

#: family used when ``--env`` carries no ``family:`` prefix
DEFAULT_FAMILY = "dmc"

__all__ = ["DEFAULT_FAMILY", "EnvFamily", "NoConfig", "base_env", "check_frames",
           "close_at_exit", "split_family", "step_rate"]


@dataclass
class NoConfig:
    """The settings of a family that has none besides the core ``env`` keys."""


def check_frames(cfg: Any, task: str) -> tuple[int, int, int]:
    """``env.action_repeat``, ``env.episode_steps`` and ``env.image_size`` of ``cfg``,
    checked the same way for every family (``task`` names the env in the message):
    ``(repeat, episode_steps, image_size)``; :class:`EnvError` names a bad value."""
    repeat = int(cfg.action_repeat)
    if repeat < 1:
        raise EnvError(f"env.action_repeat must be >= 1, got {repeat}")
    episode_steps = int(cfg.episode_steps)
    if episode_steps < repeat:
        raise EnvError(f"env.episode_steps ({episode_steps} frames) must be at least "
                       f"env.action_repeat ({repeat}) for {task}")
    image_size = int(cfg.image_size)
    if image_size < 1:
        raise EnvError(f"env.image_size must be >= 1, got {image_size}")
    return repeat, episode_steps, image_size


def base_env(env, cls: type, family: str):
    """The ``cls`` env under ``env`` and any torchrl ``TransformedEnv`` layers around it
    (families use it to reach their own env from what :meth:`EnvFamily.make` returned);
    ``TypeError`` naming ``family`` if there is none."""
    from torchrl.envs import TransformedEnv

    seen = env
    while isinstance(seen, TransformedEnv):
        seen = seen.base_env
    if not isinstance(seen, cls):
        raise TypeError(f"not an env built by the {family} family: {type(env).__name__}")
    return seen


#: objects holding a GL context or renderer, still open; closed at exit before the GL
#: library's own exit hook tears the display down (else their __del__ prints EGL errors)
_OPEN_AT_EXIT: "weakref.WeakSet[Any]" = weakref.WeakSet()
_EXIT_LOCK = threading.Lock()


def _close_open() -> None:
    for obj in list(_OPEN_AT_EXIT):
        try:
            obj.close()
        except Exception:  # the display may already be gone at shutdown
            pass


def close_at_exit(obj: Any) -> None:
    """Call ``obj.close()`` at interpreter exit if ``obj`` is still alive; call it once
    ``obj``'s GL context exists. atexit runs hooks last-in first-out and a GL backend
    (mujoco's EGL) registers its own when its first context is made, so the hook is moved
    behind it here: it runs first."""
    with _EXIT_LOCK:
        if obj not in _OPEN_AT_EXIT:
            _OPEN_AT_EXIT.add(obj)
            atexit.unregister(_close_open)
            atexit.register(_close_open)


def step_rate(env: Any, seconds: float) -> float:
    """Policy steps per second of a torchrl env with random actions (family benchmarks)."""
    td = env.reset()
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        _, td = env.step_and_maybe_reset(env.rand_action(td))
        n += 1
    return n / (time.perf_counter() - start)


def split_family(env_arg: str) -> tuple[str, str]:
    """Split an ``--env`` argument into ``(family, task)``.

    ``"cheetah-run"`` -> ``("dmc", "cheetah-run")``; ``"fam:task"`` -> ``("fam", "task")``.
    Raises :class:`EnvError` for an empty name or an empty family/task around the colon.
    """
    if not isinstance(env_arg, str) or not env_arg.strip():
        raise EnvError("empty env name: pass --env TASK (e.g. cheetah-run) or --env FAMILY:TASK; "
                       "`wmlab list` shows the families")
    family, sep, task = env_arg.partition(":")
    if not sep:
        return DEFAULT_FAMILY, env_arg
    if not family or not task:
        raise EnvError(f"malformed env name {env_arg!r}: expected TASK or FAMILY:TASK, "
                       f"e.g. cheetah-run or {DEFAULT_FAMILY}:cheetah-run; `wmlab list` shows the families")
    return family, task


class EnvFamily:
    """Base class of env families (see the module docstring for what an env must yield).

    A family is instantiated without arguments. Subclasses implement :meth:`tasks`,
    :meth:`make`, :meth:`specs` and :meth:`render`; :meth:`validate` has a generic
    implementation based on :meth:`tasks`.

    ``Config`` is a dataclass of the family's own settings, a default and a docstring under
    every field, with names that differ from the core ``env`` keys; they become keys of the
    ``env`` section (``env.camera=2``) for the family's tasks only. A family without
    settings of its own keeps the empty default (and one that declares no ``Config`` at
    all, written before families had one, gets the core keys only).
    """

    #: major.minor version of this contract the family was written for
    api_version: ClassVar[str] = "1.0"
    #: one line shown by ``wmlab list``
    description: ClassVar[str] = ""
    #: the family's own settings (a dataclass); its fields join the ``env`` section
    Config: ClassVar[type] = NoConfig
    #: True if :meth:`tasks` lists exactly the names :meth:`validate` accepts and depends on
    #: nothing but the installed packages: the CLI may then reject an unknown ``--env``
    #: from a list kept since the family was last imported (:mod:`wmlab.plugin_index`)
    fixed_tasks: ClassVar[bool] = False

    def settings(self, cfg: Any) -> Any:
        """This family's :attr:`Config` holding the values of the ``env`` section ``cfg``.

        A field that ``cfg`` lacks keeps its default (a section made from the core
        :class:`wmlab.config.EnvConfig` alone, as a test may pass); a composed config
        always has them all.
        """
        values = {}
        for f in dataclasses.fields(self.Config):
            try:
                value = getattr(cfg, f.name)
            except AttributeError:  # OmegaConf's missing-key error is one too
                continue
            values[f.name] = _plain(value)
        return self.Config(**values)

    def tasks(self) -> list[str]:
        """Every valid task name of the family, e.g. ``["acrobot-swingup", ...]``."""
        raise NotImplementedError

    def validate(self, name: str) -> str:
        """Return ``name`` if it is a task of this family, else raise :class:`EnvError`.

        The error names the bad name, lists close matches and points at ``wmlab list``.
        """
        tasks = self.tasks()
        if name in tasks:
            return name
        raise EnvError(unknown_name_message(name, tasks, what=f"{type(self).__name__} task"))

    def make(self, name: str, cfg: Any, *, seed: int):
        """Build the torchrl env (an ``EnvBase``) for task ``name``.

        ``cfg`` is the ``env`` config section: the core fields of
        :class:`wmlab.config.EnvConfig` and the fields of :attr:`Config` (read them through
        :meth:`settings`); ``seed`` seeds the task's randomness (initial states, targets).
        """
        raise NotImplementedError

    def specs(self, env: Any, cfg: Any):
        """The :class:`wmlab.api.EnvSpecs` of an env built by :meth:`make` with ``cfg``."""
        raise NotImplementedError

    def render(self, env: Any, size: int) -> np.ndarray:
        """A ``uint8 [size, size, 3]`` picture of ``env``'s current state (for videos).

        Works for state-based envs too.
        """
        raise NotImplementedError

    #: every task renders through MuJoCo's OpenGL (``uses_gl`` is True whatever the task):
    #: kept in the plugin index, so the CLI finds a missing GL library before it imports a
    #: method. Optional, False by default.
    always_uses_gl: ClassVar[bool] = False

    def uses_gl(self, name: str, cfg: Any) -> bool:
        """Whether rendering task ``name`` (pixel observations, videos) needs an OpenGL
        context through MuJoCo (``MUJOCO_GL``): the CLI then checks that one can be made
        before any env step (:func:`wmlab.gl.require`). Optional: ``always_uses_gl`` by
        default."""
        return bool(self.always_uses_gl)

    def eval_metrics(self, env: Any, last: Any) -> dict[str, float]:
        """Metrics of one evaluation episode besides its return, from its last step:
        ``last`` is the step TensorDict of the episode's last policy step (its ``"next"``
        entries hold the final observation, e.g. a goal task's ``achieved_goal`` and
        ``desired_goal``), ``env`` the eval env that ran it. The evaluation logs the mean
        over its episodes of each as ``eval/<name>``. Optional: none by default."""
        return {}


def _plain(value: Any) -> Any:
    """OmegaConf containers as plain dicts and lists, anything else as it is."""
    from omegaconf import DictConfig, ListConfig, OmegaConf

    if isinstance(value, (DictConfig, ListConfig)):
        return OmegaConf.to_container(value, resolve=True)
    return value


def unknown_name_message(name: str, valid: list[str], *, what: str = "env", listing: int = 0) -> str:
    """``unknown <what> 'x'; did you mean: a, b?`` (difflib matches), else ``unknown <what>
    'x'; valid: 80 names, e.g. a, b, c, ...``; with at most ``listing`` valid names, all of them
    instead: ``...; valid: a, b, c``."""
    if 0 < len(valid) <= listing:
        return f"unknown {what} {name!r}; valid: {', '.join(valid)}"
    close = difflib.get_close_matches(name, valid, n=5, cutoff=0.6)
    if close:
        return f"unknown {what} {name!r}; did you mean: {', '.join(close)}?"
    shown = sorted(valid)
    some = f"{len(shown)} names, e.g. {', '.join(shown[:8])}, ..." if len(shown) > 8 else ", ".join(shown)
    return f"unknown {what} {name!r}; valid: {some or 'none'}"


def check_listed_task(family: str, task: str, tasks: list[str]) -> None:
    """:class:`EnvError` unless ``task`` is one of a fixed-task family's ``tasks``
    (:attr:`EnvFamily.fixed_tasks`), as the plugin index and ``wmlab config`` check it."""
    if task not in tasks:
        raise EnvError(unknown_name_message(task, tasks, what=f"{family} task", listing=30))
