"""The dm_control suite as an env family (``--env cheetah-run`` or ``--env dmc:cheetah-run``).

How an env is put together (inside out)::

    dm_control control.Environment   time limit = (episode_steps // action_repeat)
        |                            * action_repeat frames
    _RepeatedDMC (dm_env level)      repeats the action, sums the reward, ends the episode
        |                            after episode_steps // action_repeat policy steps,
        |                            builds ``observation`` (flat float32 state, or one
        |                            rendered uint8 [3, H, W] frame per policy step)
    _TorchDMC (DMControlWrapper)     torchrl env: reward float32 [1], done/terminated/
        |                            truncated, float32 bounded action box
    TransformedEnv(InitTracker())    adds ``is_init``

Action repeat sits below rendering so a pixel env renders once per policy step; torchrl's
``frame_skip`` (or ``FrameSkipTransform``) would render every repeated frame.

Rendering uses one ``mujoco.Renderer`` per env and size, reused for every frame. With
``env.fast_render`` (the default) shadows and reflections are off and multisampling is
disabled (``model.vis.quality.offsamples = 0``, set before the renderer's GL buffers are
created). ``MUJOCO_GL`` defaults to ``egl`` (headless) when unset.

Measured on the project machine (2 CPU cores, Mesa llvmpipe through EGL, cheetah-run,
64x64, one process, random actions, other jobs sharing the cores, so ranges over runs;
``python -m wmlab.envs.dmc`` re-measures):

* render alone: fast settings 520-880 frames/s (about 290 at 256x256, 245 at 480x480,
  for videos); MuJoCo's defaults (shadows, reflections, 4x multisampling) 41-48 frames/s
  with a reused renderer, about 24 through dm_control's ``physics.render``;
* torchrl env, ``action_repeat=2``, ``rand_action`` + ``step_and_maybe_reset`` loop:
  state 1,800-2,700 policy steps/s (3,600-5,400 frames/s); pixels with fast rendering
  540-640 policy steps/s (1,080-1,290 frames/s); pixels with ``fast_render=false``
  34-46 policy steps/s.

State envs never create a renderer; :meth:`DMControl.render` opens one on first use
(for evaluation videos).
"""

from __future__ import annotations

import os

# Headless OpenGL by default. This must happen before mujoco is first imported: mujoco
# picks its GL backend (and PyOpenGL its platform) at import time.
os.environ.setdefault("MUJOCO_GL", "egl")

import ctypes.util  # noqa: E402
from collections import OrderedDict, deque  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from typing import Any  # noqa: E402


def _import_simulator() -> BaseException | None:
    """Import mujoco and dm_control; return the GL backend's import error, if any.

    Both load the GL backend named by ``MUJOCO_GL`` at import time, and a missing
    library (no libEGL/libOSMesa) makes the import itself fail (PyOpenGL raises
    AttributeError, ImportError or OSError). Then import them with GL disabled, so state
    envs still work, and keep the error for pixel envs and videos to report.
    """
    try:
        import mujoco  # noqa: F401
        from dm_control import suite  # noqa: F401
        return None
    except Exception as e:
        wanted = os.environ.get("MUJOCO_GL", "")
        os.environ["MUJOCO_GL"] = "disable"
        try:
            import mujoco  # noqa: F401,F811
            from dm_control import suite  # noqa: F401,F811
        finally:
            os.environ["MUJOCO_GL"] = wanted  # child processes see the user's choice
        return e


_GL_IMPORT_ERROR = _import_simulator()

import dm_env  # noqa: E402
import mujoco  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from dm_control import suite  # noqa: E402
from dm_control.rl import control  # noqa: E402
from dm_env import specs as dm_specs  # noqa: E402
from torchrl.envs import DMControlWrapper, InitTracker, TransformedEnv  # noqa: E402

from wmlab.api import EnvSpecs  # noqa: E402
from wmlab.envs import (EnvFamily, base_env, check_frames, close_at_exit,  # noqa: E402
                        unknown_name_message)
from wmlab.errors import EnvError  # noqa: E402

__all__ = ["DMControl", "DMControlConfig", "FrameRenderer"]

_OBS_KINDS = ("state", "pixels")


# --------------------------------------------------------------------------------------
# rendering


def _renderer_class():
    """``mujoco.Renderer``, or an :class:`EnvError` explaining why GL is unavailable."""
    from wmlab import gl

    if gl.problem() is not None:  # the CLI found it before importing mujoco
        raise EnvError(gl.message(gl.problem()))
    if _GL_IMPORT_ERROR is not None:
        raise EnvError(_gl_message(_GL_IMPORT_ERROR)) from _GL_IMPORT_ERROR
    renderer_cls = getattr(mujoco, "Renderer", None)
    # mujoco leaves GLContext out when its backend was disabled or failed to import
    # (e.g. mujoco was imported by someone else before MUJOCO_GL was set)
    if renderer_cls is None or not hasattr(mujoco, "GLContext"):
        raise EnvError(_gl_message(RuntimeError(
            "mujoco was imported without a usable GL backend; MUJOCO_GL must be set "
            "before mujoco is first imported")))
    return renderer_cls


_GL_LIBRARIES = {"egl": ("EGL", "libEGL.so.1"), "osmesa": ("OSMesa", "libOSMesa.so")}


def _gl_message(cause: BaseException) -> str:
    from wmlab import gl

    lib = _GL_LIBRARIES.get(gl.wanted().lower())
    if lib is not None and ctypes.util.find_library(lib[0]) is None:
        # PyOpenGL's own error for a missing library is an opaque AttributeError
        what = f"{lib[1]} is not installed"
    else:
        what = " ".join(f"{type(cause).__name__}: {cause}".split())
    return gl.message(what)


class FrameRenderer:
    """Renders a dm_control physics from one camera at ``size x size``, reusing one
    ``mujoco.Renderer`` (GL context, scene, buffers) for every frame.

    With ``fast=True``: no shadows, no reflections, no multisampling. Raises
    :class:`EnvError` if no GL backend can start.
    """

    def __init__(self, physics, size: int, camera: int, fast: bool = True):
        model = physics.model.ptr
        # The offscreen buffer is sized when the renderer's GL context is made: the
        # multisampling and size settings must be on the model before that.
        if fast:
            model.vis.quality.offsamples = 0
        model.vis.global_.offwidth = max(int(model.vis.global_.offwidth), size)
        model.vis.global_.offheight = max(int(model.vis.global_.offheight), size)
        renderer_cls = _renderer_class()
        try:
            self._renderer = renderer_cls(model, size, size)
        except Exception as e:  # EGL/OSMesa init failures surface as several types
            raise EnvError(_gl_message(e)) from e
        close_at_exit(self)
        if fast:
            flags = self._renderer.scene.flags
            flags[mujoco.mjtRndFlag.mjRND_SHADOW] = 0
            flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = 0
        self._model = model
        self.size = size
        self.camera = camera

    def __call__(self, physics) -> np.ndarray:
        """A new ``uint8 [size, size, 3]`` frame of the physics' current state."""
        if physics.model.ptr is not self._model:
            raise RuntimeError("FrameRenderer used with another model than it was built for")
        self._renderer.update_scene(physics.data.ptr, camera=self.camera)
        return self._renderer.render()

    def close(self) -> None:
        """Free the GL context (idempotent)."""
        renderer = getattr(self, "_renderer", None)
        if renderer is not None:
            self._renderer = None
            try:
                renderer.close()
            except Exception:  # the display may already be gone at shutdown
                pass


# --------------------------------------------------------------------------------------
# the dm_env-level env


class _RepeatedDMC(dm_env.Environment):
    """dm_env wrapper: action repeat, episode length, and the ``observation`` entry.

    One ``step`` runs ``repeat`` frames of the wrapped dm_control env with the same
    action (fewer if the task ends), sums their rewards, and renders at most once.
    The episode is truncated (``LAST`` with discount 1) after ``policy_steps`` steps.
    """

    def __init__(self, env: control.Environment, *, repeat: int, policy_steps: int,
                 obs_kind: str, image_size: int, camera: int, fast_render: bool, name: str,
                 frame_stack: int = 1):
        self._env = env
        self.frame_stack = frame_stack
        self._stack: deque[np.ndarray] = deque(maxlen=frame_stack)
        self._repeat = repeat
        self._frame_limit = policy_steps * repeat
        self._frames = 0
        self.obs_kind = obs_kind
        self.image_size = image_size
        self.camera = camera
        self.fast_render = fast_render
        self.name = name
        self._renderers: dict[int, FrameRenderer] = {}
        # fixed key order for the flat state vector: the order of the task's spec
        state_spec = env.observation_spec()
        self._state_keys = list(state_spec)
        state_dim = sum(int(np.prod(s.shape)) for s in state_spec.values())
        if obs_kind == "pixels":
            self._obs_spec = dm_specs.Array((3 * frame_stack, image_size, image_size), np.uint8, "observation")
            # open GL now, so a missing library fails at construction, not mid-run
            self._renderer(image_size)
        else:
            self._obs_spec = dm_specs.Array((state_dim,), np.float32, "observation")
        act = env.action_spec()
        self._action_spec = dm_specs.BoundedArray(
            act.shape, np.float32, act.minimum.astype(np.float32),
            act.maximum.astype(np.float32), "action")

    # dm_control attributes that torchrl's DMControlWrapper and DMControl.render use
    @property
    def physics(self):
        return self._env.physics

    @property
    def task(self):
        return self._env.task

    def control_timestep(self) -> float:
        return self._env.control_timestep()

    def _renderer(self, size: int) -> FrameRenderer:
        renderer = self._renderers.get(size)
        if renderer is None:
            renderer = FrameRenderer(self._env.physics, size, self.camera, self.fast_render)
            self._renderers[size] = renderer
        return renderer

    def render(self, size: int) -> np.ndarray:
        """``uint8 [size, size, 3]`` frame of the current state from ``self.camera``."""
        return self._renderer(size)(self._env.physics)

    def _observe(self, observation: OrderedDict, first: bool = False) -> OrderedDict:
        if self.obs_kind == "pixels":
            frame = np.ascontiguousarray(self.render(self.image_size).transpose(2, 0, 1))
            if self.frame_stack == 1:
                return OrderedDict(observation=frame)
            if first:  # an episode starts with its first frame repeated
                self._stack.extend([frame] * self.frame_stack)
            self._stack.append(frame)
            obs = np.concatenate(self._stack)  # oldest first: [3 * frame_stack, H, W]
        else:
            obs = np.concatenate([np.asarray(observation[k], dtype=np.float32).ravel()
                                  for k in self._state_keys])
        return OrderedDict(observation=obs)

    def reset(self) -> dm_env.TimeStep:
        self._frames = 0
        ts = self._env.reset()
        return ts._replace(observation=self._observe(ts.observation, first=True))

    def step(self, action) -> dm_env.TimeStep:
        reward = 0.0  # summed in float64 like dm_control's rewards, cast once at the end
        discount = 1.0
        for _ in range(self._repeat):
            ts = self._env.step(action)
            if ts.first():  # stepped after LAST: dm_control started a new episode
                self._frames = 0
                return ts._replace(observation=self._observe(ts.observation, first=True))
            self._frames += 1
            reward += ts.reward
            discount *= ts.discount
            if ts.last():
                break
        step_type = ts.step_type
        if self._frames >= self._frame_limit:
            # our limit is authoritative: dm_control's float time limit agrees with it
            # up to rounding, which must not add or drop a step
            step_type = dm_env.StepType.LAST
        return dm_env.TimeStep(step_type, np.float32(reward), discount,
                               self._observe(ts.observation))

    def observation_spec(self):
        return OrderedDict(observation=self._obs_spec)

    def action_spec(self):
        return self._action_spec

    def reward_spec(self):
        return dm_specs.Array((), np.float32, "reward")

    def discount_spec(self):
        return self._env.discount_spec()

    def close(self) -> None:
        for renderer in self._renderers.values():
            renderer.close()
        self._renderers.clear()
        self._env.close()


class _TorchDMC(DMControlWrapper):
    """``DMControlWrapper`` around a :class:`_RepeatedDMC`.

    Two overrides: the wrapper's type check only knows dm_control's own classes, and its
    ``_set_seed`` resets the env (consuming one episode's randomness), which would make
    the first episode after :meth:`DMControl.make` differ from dm_control's with the
    same seed.
    """

    def _check_kwargs(self, kwargs: dict) -> None:
        if not isinstance(kwargs.get("env"), _RepeatedDMC):
            raise TypeError("_TorchDMC wraps a wmlab.envs.dmc._RepeatedDMC")

    def _set_seed(self, seed: int | None) -> None:
        if seed is None:
            return
        # dm_control tasks draw everything random from task._random (a RandomState)
        self._env.task._random = np.random.RandomState(seed)

    def _reset(self, tensordict=None, **kwargs):
        self._rng_before_reset = self._env.task._random.get_state()
        return super()._reset(tensordict, **kwargs)

    def rng_state(self):
        """The task's random state before its latest reset (or now, before the first), so a
        resumed run's first reset draws the episode the interrupted one was in or began."""
        state = getattr(self, "_rng_before_reset", None)
        return state if state is not None else self._env.task._random.get_state()

    def set_rng_state(self, state) -> None:
        """Make the next reset draw as the one :meth:`rng_state` was taken before."""
        self._rng_before_reset = None
        self._env.task._random.set_state(state)

    def __repr__(self) -> str:
        return f"_TorchDMC(task={self._env.name}, obs={self._env.obs_kind})"


def _dm_env_of(env) -> _RepeatedDMC:
    """The :class:`_RepeatedDMC` under a (possibly transformed) env built by DMControl."""
    return base_env(env, _TorchDMC, "dmc")._env


# --------------------------------------------------------------------------------------
# the family


@dataclass
class DMControlConfig:
    """dm_control's keys of the ``env`` section (``env.camera=2``)."""

    camera: int = 0
    """Camera id used for pixels and videos (quadruped tasks use 2; -1 is MuJoCo's free
    camera)."""
    fast_render: bool = True
    """Turn off shadows, reflections and multisampling (15-20x faster on CPU)."""
    frame_stack: int = 1
    """Pixels: the observation is the last ``frame_stack`` frames stacked on the channel
    axis, oldest first (``[3 k, H, W]``), so velocities can be seen; an episode starts with
    its first frame repeated (TD-MPC's pixel setting is 3)."""


class DMControl(EnvFamily):
    """dm_control suite tasks, named ``domain-task`` (``cheetah-run``, ``ball_in_cup-catch``)."""

    description = "DeepMind Control Suite (MuJoCo), names domain-task, e.g. cheetah-run"
    Config = DMControlConfig
    fixed_tasks = True

    always_uses_gl = True  # every task is a MuJoCo simulation, drawn through OpenGL

    def tasks(self) -> list[str]:
        """Every suite task (``dm_control.suite.ALL_TASKS``) as ``domain-task``, sorted."""
        return sorted(f"{domain}-{task}" for domain, task in suite.ALL_TASKS)

    def validate(self, name: str) -> str:
        """Return ``name`` if it is a suite task, else raise :class:`EnvError` with hints."""
        tasks = self.tasks()
        if name in tasks:
            return name
        domain, sep, task = name.partition("-")
        if not sep or not domain or not task:
            same_domain = [t for t in tasks if t.split("-", 1)[0] == name.rstrip("-")]
            hint = (f"; tasks of domain {name.rstrip('-')!r}: {', '.join(same_domain)}"
                    if same_domain else "")
            raise EnvError(f"malformed dm_control task name {name!r}: expected domain-task, "
                           f"e.g. cheetah-run{hint}")
        raise EnvError(unknown_name_message(name, tasks, what="dm_control task"))

    def make(self, name: str, cfg: Any, *, seed: int) -> TransformedEnv:
        """Build the torchrl env of task ``name`` (see the module docstring).

        ``cfg`` is the ``env`` config section; ``seed`` is the task's ``random``.
        Raises :class:`EnvError` for an unknown task, bad settings, or (pixel envs only)
        when no GL backend can start.
        """
        self.validate(name)
        obs_kind, repeat, policy_steps, image_size = _check_cfg(name, cfg)
        own = self.settings(cfg)
        camera = int(own.camera)
        domain, task = name.split("-", 1)
        dm = suite.load(domain, task, task_kwargs={"random": int(seed)})
        # Rebuild the Environment around the same physics and task with a time limit
        # matching the configured episode (the suite's own limits differ per domain).
        control_timestep = dm.control_timestep()
        frames = policy_steps * repeat
        dm = control.Environment(dm.physics, dm.task, time_limit=frames * control_timestep,
                                 control_timestep=control_timestep)
        ncam = int(dm.physics.model.ncam)
        if not -1 <= camera < ncam:
            raise EnvError(f"env.camera={camera} does not exist in {name}: it has {ncam} "
                           f"camera(s), ids 0..{ncam - 1} (-1 is MuJoCo's free camera)")
        frame_stack = int(own.frame_stack)
        if frame_stack < 1:
            raise EnvError(f"env.frame_stack={frame_stack} must be >= 1")
        inner = _RepeatedDMC(dm, repeat=repeat, policy_steps=policy_steps, obs_kind=obs_kind,
                             image_size=image_size, camera=camera,
                             fast_render=bool(own.fast_render), name=name, frame_stack=frame_stack)
        base = _TorchDMC(inner)
        base.set_seed(int(seed))  # same RandomState(seed) as suite.load's; no reset
        return TransformedEnv(base, InitTracker())

    def specs(self, env, cfg) -> EnvSpecs:
        """Fill :class:`EnvSpecs` from an env built by :meth:`make` with ``cfg``."""
        inner = _dm_env_of(env)
        action_spec = env.action_spec
        obs_shape = tuple(env.observation_spec["observation"].shape)
        repeat = int(cfg.action_repeat)
        return EnvSpecs(
            name=str(cfg.name or inner.name),
            obs_kind=inner.obs_kind,
            obs_shape=obs_shape,
            action_shape=tuple(action_spec.shape),
            action_low=action_spec.space.low.detach().clone().to(torch.float32).cpu(),
            action_high=action_spec.space.high.detach().clone().to(torch.float32).cpu(),
            action_repeat=repeat,
            episode_policy_steps=int(cfg.episode_steps) // repeat,
            discrete=False,
        )

    def render(self, env, size: int) -> np.ndarray:
        """``uint8 [size, size, 3]`` frame from ``env.camera``, with the env's render settings.

        The renderer is opened on first use and reused; raises :class:`EnvError` when no
        GL backend can start.
        """
        if int(size) < 1:
            raise ValueError(f"size must be positive, got {size}")
        return _dm_env_of(env).render(int(size))


def _check_cfg(name: str, cfg: Any) -> tuple[str, int, int, int]:
    obs_kind = str(cfg.obs)
    if obs_kind not in _OBS_KINDS:
        raise EnvError(f"env.obs={obs_kind!r} is not supported by dm_control tasks: "
                       f"use one of {', '.join(_OBS_KINDS)}")
    if getattr(cfg, "grayscale", False):
        raise EnvError("env.grayscale=true is not supported by dm_control tasks (RGB pixels "
                       "only); it is an Atari setting")
    repeat, episode_steps, image_size = check_frames(cfg, name)
    return obs_kind, repeat, episode_steps // repeat, image_size


def _benchmark(seconds: float = 3.0) -> None:
    """Print render and step rates on this machine (``python -m wmlab.envs.dmc``)."""
    import time

    from wmlab.config import env_config

    def rate(fn, seconds):
        fn()  # warm up (GL context, first frame)
        n, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            fn()
            n += 1
        return n / (time.perf_counter() - start)

    family = DMControl()
    for fast in (True, False):
        env = family.make("cheetah-run", env_config("cheetah-run", fast_render=fast), seed=0)
        env.reset()
        inner = _dm_env_of(env)
        fps = rate(lambda: inner.render(64), seconds)
        print(f"render 64x64 fast_render={fast}: {fps:.0f} frames/s")
        env.close()
    for obs, fast in (("state", True), ("pixels", True), ("pixels", False)):
        cfg = env_config("cheetah-run", obs=obs, fast_render=fast)
        env = family.make("cheetah-run", cfg, seed=0)
        td = env.reset()

        def one_step():
            nonlocal td
            _, td = env.step_and_maybe_reset(env.rand_action(td))

        sps = rate(one_step, seconds)
        print(f"{obs} fast_render={fast} action_repeat={cfg.action_repeat}: "
              f"{sps:.0f} policy steps/s ({sps * cfg.action_repeat:.0f} frames/s)")
        env.close()


if __name__ == "__main__":
    _benchmark()
