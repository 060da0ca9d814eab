"""Any gymnasium env as an env family (``--env gym:CartPole-v1``, ``gym:Pendulum-v1``).

How an env is put together (inside out)::

    gymnasium.make(ID, render_mode="rgb_array" if the env can, **env.kwargs)
        |
    GymnasiumTorchEnv (torchrl env)  repeats the action env.action_repeat frames (fewer if
        |                            the episode ends), sums the rewards, cuts the episode
        |                            after its policy steps, builds ``observation`` and the
        |                            extra entries, converts actions
    TransformedEnv(InitTracker())    adds ``is_init``

Observations (``env.obs``):

* ``state``: the env's observation as a ``float32`` vector: a ``Box`` flattened, a
  ``Discrete`` one-hot, a ``MultiBinary`` as 0/1 floats. An observation that is an image
  (a ``uint8`` ``Box`` ``[H, W, 3]``, ``[H, W, 1]`` or ``[H, W]``, e.g. CarRacing-v3's) is
  refused: use pixels.
* ``pixels``: ``uint8 [C, H, W]`` at ``env.image_size`` (``env.grayscale``: C = 1), resized
  with OpenCV (``INTER_AREA``) from the env's own image observation if it is one, else from
  ``render()`` (``render_mode="rgb_array"``), once per policy step; ``env.crop_bottom``
  cuts a fraction of the rows off at the bottom first (CarRacing's dashboard: 0.125). With
  ``env.state_too`` a rendered env also carries its observation vector as the extra entry
  ``state``.
* A ``Dict`` observation space is a composite observation: the entry named by
  ``env.obs_key`` (default: ``observation`` if there is one, else the first entry in the
  space's order, which gymnasium sorts by name) becomes ``observation`` (or ``state``
  beside pixels with ``env.state_too``), and every other entry (``achieved_goal``,
  ``desired_goal``) is an extra entry under its own name, declared in
  :attr:`wmlab.api.EnvSpecs.extra_obs` and carried at the root of reset and step data.

Actions: a ``Discrete`` space becomes one-hot ``float32`` actions (``EnvSpecs.discrete``, as
Atari's; the env acts on the largest entry); a ``Box`` with finite bounds is a continuous
``float32`` vector (flattened) with its bounds. Other spaces are refused.

Episodes end when the env terminates (``terminated``), at its own time limit (gymnasium's
``max_episode_steps``, e.g. 500 frames for CartPole-v1) or after ``env.episode_steps``
frames, whichever comes first (``truncated``); ``EnvSpecs.episode_policy_steps`` is that
limit over the action repeat. ``env.kwargs={max_episode_steps: 2000}`` changes the env's
own limit.

Seeding: :meth:`Gym.make`'s seed (and every later ``env.set_seed``) is passed to the next
``reset``; later episodes continue the env's random stream.

``gym:module:ID`` imports ``module`` first, for packages that register their envs on import
(``gym:gymnasium_robotics:PointMaze_UMaze-v3``). Measured on the project machine (2 CPU
cores shared with other jobs, random actions, action repeat 2, ``python -m wmlab.envs.gym``
re-measures; ranges over runs): CartPole-v1 from states 860-1,010 policy steps/s (its
random-action episodes are short, so resets weigh), Pendulum-v1 from states 480-1,290, from
64x64 pixels 72-153 (rendering a 500x500 frame with pygame, then resizing, dominates).
"""

from __future__ import annotations

import copy

import os

# gymnasium renders its 2-D envs with pygame, whose pygame.init() also opens the audio
# device and a video driver: without them (a headless machine) it prints ALSA and
# XDG_RUNTIME_DIR errors. These envs make no sound and wmlab renders off-screen
# (rgb_array); set before pygame is first imported. Its greeting line goes too.
os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
# gymnasium's MuJoCo envs render headless through EGL, as the dmc family does (mujoco picks
# its GL backend when first imported)
os.environ.setdefault("MUJOCO_GL", "egl")

import difflib  # noqa: E402
import importlib  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from typing import Any, Callable, Dict, Mapping  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from tensordict import TensorDict, TensorDictBase  # noqa: E402
from torchrl.data import Bounded, Categorical, Composite, OneHot, Unbounded  # noqa: E402
from torchrl.envs import EnvBase, InitTracker, TransformedEnv  # noqa: E402

from wmlab import keys  # noqa: E402
from wmlab.api import EnvSpecs, ObsSpec  # noqa: E402
from wmlab.envs import EnvFamily, base_env, check_frames, close_at_exit, step_rate  # noqa: E402
from wmlab.errors import EnvError  # noqa: E402

__all__ = ["Gym", "GymConfig", "GymnasiumTorchEnv", "OneHotActions", "action_index",
           "crop_bottom", "image_entry", "resize_frame", "torch_env_specs"]

#: supported spaces, named in error messages
_OBS_SPACES = ("Box", "Discrete", "MultiBinary", "a Dict of those")
_ACTION_SPACES = ("Discrete", "Box with finite bounds")
#: names an extra observation entry cannot take (they are the contract's own keys)
_RESERVED = {keys.OBSERVATION, keys.ACTION, keys.IS_INIT, keys.NEXT, "reward", "done",
             "terminated", "truncated", "collector", "episode"}
#: gymnasium extra that provides the modules under gymnasium.envs.<folder>
_EXTRAS = {"box2d": "box2d", "mujoco": "mujoco", "classic_control": "classic-control",
           "toy_text": "toy-text"}


@dataclass
class GymConfig:
    """The gym family's keys of the ``env`` section (``env.state_too=true``)."""

    kwargs: Dict[str, Any] = field(default_factory=dict)
    """Keyword arguments for ``gymnasium.make``, e.g. ``{continuous: false}`` for
    CarRacing-v3 or ``{max_episode_steps: 2000}`` to change the env's own time limit."""
    obs_key: str = ""
    """For a ``Dict`` observation space: the entry that becomes ``observation``; empty
    picks ``observation`` if the space has one, else its first entry (gymnasium sorts them
    by name). Every other entry is an extra observation entry."""
    state_too: bool = False
    """With ``env.obs=pixels`` rendered from a state-based env: also carry the env's own
    observation vector, as the extra entry ``state`` (a composite observation)."""
    crop_bottom: float = 0.0
    """With ``env.obs=pixels``: the fraction of the frame's rows cut off at the bottom
    before it is resized (0: none). CarRacing-v3's dashboard is its bottom 12 of 96 rows,
    0.125, which World Models crops away (rows 0:84)."""


# --------------------------------------------------------------------------------------
# frames and actions (shared with the Atari family)


def _import_cv2():
    try:
        import cv2
    except ImportError as e:
        raise EnvError(f"resizing frames needs OpenCV, which cannot be imported "
                       f"({type(e).__name__}: {e}); install it: pip install "
                       f"opencv-python-headless") from e
    return cv2


def resize_frame(frame: np.ndarray, size: int, *, grayscale: bool = False) -> np.ndarray:
    """``uint8 [size, size, 3]`` (``[size, size]`` with ``grayscale``) from an RGB or
    grayscale ``[H, W(, C)]`` frame, resized with OpenCV's ``INTER_AREA``."""
    frame = np.asarray(frame, dtype=np.uint8)
    if frame.ndim == 3 and frame.shape[-1] == 1:
        frame = frame[..., 0]
    cv2 = _import_cv2()
    if grayscale and frame.ndim == 3:
        frame = cv2.cvtColor(np.ascontiguousarray(frame[..., :3]), cv2.COLOR_RGB2GRAY)
    elif not grayscale and frame.ndim == 2:
        frame = np.repeat(frame[..., None], 3, axis=-1)
    if frame.shape[:2] != (size, size):
        frame = cv2.resize(frame, (size, size), interpolation=cv2.INTER_AREA)
    return frame


def _chw(frame: np.ndarray) -> torch.Tensor:
    """``[H, W]`` -> ``[1, H, W]``, ``[H, W, C]`` -> ``[C, H, W]``, as a uint8 tensor."""
    frame = frame[None] if frame.ndim == 2 else frame.transpose(2, 0, 1)
    return torch.from_numpy(np.ascontiguousarray(frame))


def action_index(action: torch.Tensor) -> int:
    """The choice a discrete action names: the largest entry of a one-hot (or any float)
    vector, or an integer index as it is."""
    if action.is_floating_point() or action.dtype == torch.bool:
        return int(action.to(torch.float32).argmax(-1))
    return int(action.reshape(()))


class OneHotActions:
    """``Discrete(n, start)`` as one-hot ``float32 [n]`` actions."""

    def __init__(self, n: int, start: int = 0):
        self.n, self.start = int(n), int(start)
        self.spec = OneHot(self.n, dtype=torch.float32)

    def __call__(self, action: torch.Tensor) -> int:
        return action_index(action) + self.start


class _BoxActions:
    """A bounded ``Box`` as a flat ``float32`` vector with its bounds."""

    def __init__(self, space):
        self.shape, self.dtype = space.shape, space.dtype
        low = torch.as_tensor(np.asarray(space.low, dtype=np.float32).reshape(-1))
        high = torch.as_tensor(np.asarray(space.high, dtype=np.float32).reshape(-1))
        self.spec = Bounded(low=low, high=high, shape=low.shape, dtype=torch.float32)

    def __call__(self, action: torch.Tensor) -> np.ndarray:
        return action.detach().cpu().numpy().reshape(self.shape).astype(self.dtype)


# --------------------------------------------------------------------------------------
# observation entries: each is a spec and a function of (the env's observation, the env)


@dataclass
class _Entry:
    spec: Any
    read: Callable[[Any, Any], torch.Tensor]


def _is_image(space) -> bool:
    shape = tuple(space.shape or ())
    return (type(space).__name__ == "Box" and space.dtype == np.uint8
            and (len(shape) == 2 or (len(shape) == 3 and shape[-1] in (1, 3))))


def _pick(key: str | None) -> Callable[[Any], Any]:
    return (lambda raw: raw) if key is None else (lambda raw: raw[key])


def _vector_entry(space, key: str | None) -> _Entry:
    """A non-image space as a float32 vector (``None`` key: the whole observation)."""
    get, kind = _pick(key), type(space).__name__
    if kind == "Discrete":
        n, start = int(space.n), int(space.start)
        eye = torch.eye(n, dtype=torch.float32)
        return _Entry(Unbounded(shape=(n,), dtype=torch.float32),
                      lambda raw, env: eye[int(get(raw)) - start].clone())
    dim = int(np.prod(space.shape))
    return _Entry(Unbounded(shape=(dim,), dtype=torch.float32),
                  lambda raw, env: torch.from_numpy(
                      np.asarray(get(raw), dtype=np.float32).reshape(-1).copy()))


def crop_bottom(frame: np.ndarray, fraction: float) -> np.ndarray:
    """``frame`` ``[H, W(, C)]`` without its bottom ``fraction`` of rows (rounded; at least
    one row stays)."""
    h = frame.shape[0]
    keep = max(1, h - int(round(h * float(fraction))))
    return frame[:keep]


def image_entry(size: int, grayscale: bool, frame: Callable[[Any, Any], np.ndarray], *,
                crop: float = 0.0) -> _Entry:
    """A pixel entry ``uint8 [C, size, size]`` of the frames ``frame(raw, env)`` gives, the
    bottom ``crop`` fraction of their rows cut off before resizing."""
    spec = Bounded(low=0, high=255, shape=(1 if grayscale else 3, size, size), dtype=torch.uint8)
    if crop:
        return _Entry(spec, lambda raw, env: _chw(resize_frame(
            crop_bottom(frame(raw, env), crop), size, grayscale=grayscale)))
    return _Entry(spec, lambda raw, env: _chw(resize_frame(frame(raw, env), size,
                                                           grayscale=grayscale)))


def _entry(space, key: str | None, size: int, grayscale: bool, crop: float = 0.0) -> _Entry:
    if _is_image(space):
        get = _pick(key)
        return image_entry(size, grayscale, lambda raw, env: get(raw), crop=crop)
    return _vector_entry(space, key)


# --------------------------------------------------------------------------------------
# the torchrl env


class GymnasiumTorchEnv(EnvBase):
    """A gymnasium env as a torchrl env following :mod:`wmlab.envs` (see the module
    docstring): ``repeat`` frames per step, episodes cut after ``policy_steps`` steps,
    ``entries`` the observation entries by name (``observation`` and extras), ``actions``
    the action converter. The Atari family builds its env on this class too."""

    def __init__(self, env, *, name: str, repeat: int, policy_steps: int,
                 entries: Mapping[str, _Entry], actions: Any):
        super().__init__(device="cpu", batch_size=torch.Size([]))
        self._env = env
        self.name = name
        self._repeat = repeat
        self._policy_steps = policy_steps
        self._entries = dict(entries)
        self._actions = actions
        self._steps = 0
        self._next_seed: int | None = None
        self.started = False  # whether the env has been reset, i.e. has a state
        self.observation_spec = Composite({k: e.spec for k, e in self._entries.items()})
        self.action_spec = actions.spec
        self.reward_spec = Unbounded(shape=(1,), dtype=torch.float32)
        flag = Categorical(2, shape=(1,), dtype=torch.bool)
        self.done_spec = Composite(done=flag, terminated=flag.clone(), truncated=flag.clone())

    @property
    def gym_env(self):
        """The wrapped gymnasium env."""
        return self._env

    @property
    def extra_keys(self) -> list[str]:
        """Observation entries besides ``observation``."""
        return [k for k in self._entries if k != keys.OBSERVATION]

    def _observe(self, raw) -> dict[str, torch.Tensor]:
        return {k: e.read(raw, self._env) for k, e in self._entries.items()}

    def _reset(self, tensordict: TensorDictBase | None = None, **kwargs) -> TensorDictBase:
        seed, self._next_seed = self._next_seed, None
        self._rng_before_reset = self._rng_now(seed)
        raw, _ = self._env.reset(seed=seed)
        self._steps = 0
        self.started = True
        false = torch.zeros(1, dtype=torch.bool)
        return TensorDict({**self._observe(raw), "done": false, "terminated": false.clone(),
                           "truncated": false.clone()}, batch_size=self.batch_size)

    def _step(self, tensordict: TensorDictBase) -> TensorDictBase:
        action = self._actions(tensordict.get(keys.ACTION))
        reward = 0.0  # summed in float64, cast once
        terminated = truncated = False
        for _ in range(self._repeat):
            raw, r, terminated, truncated, _ = self._env.step(action)
            reward += float(r)
            if terminated or truncated:
                break
        self._steps += 1
        terminated = bool(terminated)
        truncated = (bool(truncated) or self._steps >= self._policy_steps) and not terminated
        return TensorDict({
            **self._observe(raw),
            "reward": torch.tensor([reward], dtype=torch.float32),
            "done": torch.tensor([terminated or truncated]),
            "terminated": torch.tensor([terminated]),
            "truncated": torch.tensor([truncated]),
        }, batch_size=self.batch_size)

    def _set_seed(self, seed: int | None) -> None:
        self._next_seed = None if seed is None else int(seed)

    def rng_state(self) -> dict:
        """What the next reset draws from, as it was before the latest reset (or is now,
        before the first): ``{"seed": s}`` (a seeded reset) or ``{"numpy": state}`` (the
        gymnasium env's ``np_random``). Randomness an env keeps elsewhere (ALE's own) is
        not in it."""
        if getattr(self, "_rng_before_reset", None) is not None:
            return self._rng_before_reset
        return self._rng_now(self._next_seed)

    def _rng_now(self, seed: int | None) -> dict:
        if seed is not None:
            return {"seed": seed}
        return {"numpy": copy.deepcopy(self._env.unwrapped.np_random.bit_generator.state)}

    def set_rng_state(self, state: dict) -> None:
        """Make the next reset draw as the one :meth:`rng_state` was taken before."""
        self._rng_before_reset = None
        if "seed" in state:
            self._next_seed = int(state["seed"])
        else:
            self._next_seed = None
            self._env.unwrapped.np_random.bit_generator.state = state["numpy"]

    def close(self, *, raise_if_closed: bool = True) -> None:
        self._env.close()
        super().close(raise_if_closed=raise_if_closed)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(env={self.name}, entries={list(self._entries)})"


def torch_env_specs(env, cfg: Any, *, name: str, policy_steps: int) -> EnvSpecs:
    """:class:`EnvSpecs` of a (possibly transformed) :class:`GymnasiumTorchEnv`: one-hot
    actions are ``discrete`` with bounds 0 and 1, ``uint8`` observations are pixels, and
    every entry besides ``observation`` is in ``extra_obs``."""
    base = base_env(env, GymnasiumTorchEnv, "gym")
    action = env.action_spec
    discrete = isinstance(action, OneHot)
    if discrete:
        low, high = torch.zeros(action.shape), torch.ones(action.shape)
    else:
        low, high = action.space.low, action.space.high
    obs = env.observation_spec[keys.OBSERVATION]
    extra = {k: ObsSpec(tuple(env.observation_spec[k].shape), env.observation_spec[k].dtype)
             for k in base.extra_keys}
    return EnvSpecs(
        name=str(cfg.name or name),
        obs_kind="pixels" if obs.dtype == torch.uint8 else "state",
        obs_shape=tuple(obs.shape),
        action_shape=tuple(action.shape),
        action_low=low.detach().clone().to(torch.float32).cpu(),
        action_high=high.detach().clone().to(torch.float32).cpu(),
        action_repeat=int(cfg.action_repeat),
        episode_policy_steps=policy_steps,
        discrete=discrete,
        extra_obs=extra,
    )


# --------------------------------------------------------------------------------------
# gymnasium: names, making, errors


def _import_gymnasium():
    try:
        import gymnasium
    except ImportError as e:
        raise EnvError(f"gym envs need gymnasium, which cannot be imported ({type(e).__name__}: "
                       f"{e}); install it: pip install \"gymnasium>=1.0,<2\"") from e
    return gymnasium


def _missing_extra_message(task: str, entry_point: Any, cause: BaseException) -> str:
    module = entry_point if isinstance(entry_point, str) else getattr(entry_point, "__module__", "")
    parts = str(module).split(":")[0].split(".")
    extra = next((_EXTRAS[p] for p in parts if p in _EXTRAS), None)
    fix = (f'pip install "gymnasium[{extra}]"' if extra
           else "install the package it names")
    detail = " ".join(str(cause).split())
    return f"gym:{task} needs a package that is not installed ({detail}); run: {fix}"


class Gym(EnvFamily):
    """Every env registered with gymnasium, named ``gym:ID`` (``gym:CartPole-v1``)."""

    description = "gymnasium envs by id, e.g. gym:CartPole-v1, gym:Pendulum-v1, gym:CarRacing-v3"
    Config = GymConfig

    def tasks(self) -> list[str]:
        """Every id in gymnasium's registry, sorted (ids from ``module:ID`` names once the
        module is imported)."""
        return sorted(_import_gymnasium().registry)

    def validate(self, name: str) -> str:
        """Return ``name`` if gymnasium knows its id (importing ``module`` of
        ``module:ID``), else raise :class:`EnvError` with close matches."""
        gymnasium = _import_gymnasium()
        module, _, env_id = name.rpartition(":")
        if module:
            try:
                importlib.import_module(module)
            except ImportError as e:
                raise EnvError(f"gym:{name}: cannot import module {module!r} that should "
                               f"register {env_id!r} ({type(e).__name__}: {e})") from e
        if env_id in gymnasium.registry:
            return name
        ids = list(gymnasium.registry)
        close = difflib.get_close_matches(env_id, ids, n=5, cutoff=0.6)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise EnvError(f"unknown gymnasium id {env_id!r}{hint} (names are gym:ID with a "
                       f"registered id, e.g. gym:CartPole-v1, gym:Pendulum-v1; gym:module:ID "
                       f"imports module first; {len(ids)} ids registered now)")

    def uses_gl(self, name: str, cfg: Any) -> bool:
        """True for MuJoCo envs (a ``MujocoEnv``, or an entry point in a ``mujoco`` module):
        they render through OpenGL."""
        try:
            self.validate(name)
            gymnasium = _import_gymnasium()
            from gymnasium.envs.registration import load_env_creator

            entry = gymnasium.spec(name.rpartition(":")[2]).entry_point
            module = entry if isinstance(entry, str) else getattr(entry, "__module__", "")
            if "mujoco" in str(module).lower():
                return True
            creator = entry if callable(entry) else load_env_creator(entry)
            from gymnasium.envs.mujoco import MujocoEnv

            return isinstance(creator, type) and issubclass(creator, MujocoEnv)
        except Exception:  # an unknown id or a missing package: make() will say so
            return False

    def make(self, name: str, cfg: Any, *, seed: int) -> TransformedEnv:
        """Build the torchrl env of gymnasium id ``name`` (see the module docstring).

        ``seed`` is passed to the first reset. Raises :class:`EnvError` for an unknown id,
        a missing package, a space the family cannot handle, pixels from an env that cannot
        render, or bad settings."""
        self.validate(name)
        own = self.settings(cfg)
        obs_kind = str(cfg.obs)
        if obs_kind not in ("state", "pixels"):
            raise EnvError(f"env.obs={obs_kind!r} is not supported by gym envs: use state or pixels")
        repeat, episode_steps, image_size = check_frames(cfg, f"gym:{name}")
        if not 0.0 <= float(own.crop_bottom) < 1.0:
            raise EnvError(f"env.crop_bottom is a fraction in [0, 1), got {own.crop_bottom}")
        env = self.make_gym(name, dict(own.kwargs))
        try:
            frames = min(episode_steps, env.spec.max_episode_steps or episode_steps)
            if frames < repeat:
                raise EnvError(f"gym:{name} ends after {frames} frames, fewer than "
                               f"env.action_repeat ({repeat})")
            entries = _observation_entries(env, name, obs_kind, own, image_size,
                                           bool(cfg.grayscale))
            torch_env = GymnasiumTorchEnv(env, name=name, repeat=repeat,
                                          policy_steps=frames // repeat, entries=entries,
                                          actions=_action_converter(env.action_space, name))
        except BaseException:
            env.close()
            raise
        torch_env.set_seed(int(seed))
        return TransformedEnv(torch_env, InitTracker())

    def make_gym(self, name: str, kwargs: dict[str, Any]):
        """The gymnasium env of task ``name`` (``env.kwargs`` as ``kwargs``) that :meth:`make`
        wraps; a family built on this one (``goal``) returns a wrapped env here."""
        return _make_gym(name, kwargs)

    def specs(self, env, cfg) -> EnvSpecs:
        """:class:`EnvSpecs` of an env built by :meth:`make` with ``cfg``."""
        base = base_env(env, GymnasiumTorchEnv, "gym")
        return torch_env_specs(env, cfg, name=f"gym:{base.name}", policy_steps=base._policy_steps)

    def render(self, env, size: int) -> np.ndarray:
        """``uint8 [size, size, 3]``: the env's ``render()`` resized (for videos); black
        before the env's first reset (a gymnasium env has no state to draw then); an
        :class:`EnvError` if the env cannot render (then set ``eval.video=false``)."""
        if int(size) < 1:
            raise ValueError(f"size must be positive, got {size}")
        base = base_env(env, GymnasiumTorchEnv, "gym")
        if not base.started:
            return np.zeros((int(size), int(size), 3), dtype=np.uint8)
        return resize_frame(_render(base.gym_env, base.name, "videos (eval.video=false turns "
                                    "them off)"), int(size))


def _make_gym(name: str, kwargs: dict[str, Any]):
    """``gymnasium.make`` of ``name`` (``ID`` or ``module:ID``, the module imported by
    :meth:`Gym.validate`) with ``render_mode="rgb_array"`` where the env offers it."""
    gymnasium = _import_gymnasium()
    from gymnasium.envs.registration import load_env_creator

    spec = gymnasium.spec(name.rpartition(":")[2])
    try:
        creator = spec.entry_point if callable(spec.entry_point) else load_env_creator(spec.entry_point)
        modes = getattr(creator, "metadata", {}).get("render_modes") or []
        if "rgb_array" in modes:
            kwargs.setdefault("render_mode", "rgb_array")
        return gymnasium.make(spec.id, **kwargs)
    except gymnasium.error.DependencyNotInstalled as e:
        raise EnvError(_missing_extra_message(name, spec.entry_point, e)) from e
    except (TypeError, ValueError, gymnasium.error.Error) as e:
        detail = " ".join(str(e).split())
        raise EnvError(f"cannot make gym:{name} with env.kwargs={kwargs}: "
                       f"{type(e).__name__}: {detail}") from e


def _render(env, name: str, purpose: str) -> np.ndarray:
    """``env.render()`` as an RGB frame, or an :class:`EnvError` saying it cannot."""
    gymnasium = _import_gymnasium()
    if env.render_mode != "rgb_array":
        modes = env.metadata.get("render_modes") or []
        raise EnvError(f"gym:{name} cannot render rgb_array frames (its render modes: "
                       f"{', '.join(modes) or 'none'}), which {purpose} need; use env.obs=state")
    try:
        frame = env.render()
    except gymnasium.error.DependencyNotInstalled as e:
        raise EnvError(_missing_extra_message(name, env.spec.entry_point, e)) from e
    close_at_exit(env)  # a MuJoCo env's renderer holds a GL context from now on
    return frame


def _observation_entries(env, name: str, obs_kind: str, own: GymConfig, size: int,
                         grayscale: bool) -> dict[str, _Entry]:
    """The observation entries of ``env`` by name (see the module docstring)."""
    space = env.observation_space
    kind = type(space).__name__
    if kind == "Dict":
        subspaces = dict(space.spaces)
        main = own.obs_key or ("observation" if "observation" in subspaces else next(iter(subspaces)))
        if main not in subspaces:
            raise EnvError(f"env.obs_key={main!r} is not an entry of gym:{name}'s observation "
                           f"space; its entries: {', '.join(subspaces)}")
    else:
        if own.obs_key:
            raise EnvError(f"env.obs_key={own.obs_key!r} needs a Dict observation space; "
                           f"gym:{name}'s is {kind}")
        main, subspaces = None, {None: space}
    for key, sub in subspaces.items():
        if type(sub).__name__ not in ("Box", "Discrete", "MultiBinary"):
            where = f" (entry {key!r})" if key else ""
            raise EnvError(f"gym:{name}'s observation space {kind}{where} holds a "
                           f"{type(sub).__name__} space; supported: {', '.join(_OBS_SPACES)}")
    extras = {k: _entry(s, k, size, grayscale) for k, s in subspaces.items() if k != main}
    clash = sorted(set(extras) & _RESERVED)
    if clash:
        raise EnvError(f"gym:{name}'s observation entries {', '.join(clash)} clash with "
                       f"wmlab's keys; set env.obs_key to one of them or rename them in a wrapper")
    main_space = subspaces[main]
    if obs_kind == "state":
        if _is_image(main_space):
            raise EnvError(f"gym:{name} observes images ({main_space}); use env.obs=pixels")
        return {keys.OBSERVATION: _vector_entry(main_space, main), **extras}
    if _is_image(main_space):
        return {keys.OBSERVATION: _entry(main_space, main, size, grayscale, own.crop_bottom), **extras}
    env.reset(seed=0)  # one frame now, so a missing renderer fails here, not mid-run
    _render(env, name, "pixel observations")
    pixels = image_entry(size, grayscale, lambda raw, e: _render(e, name, "pixel observations"),
                         crop=own.crop_bottom)
    if own.state_too:
        if "state" in extras:
            raise EnvError(f"env.state_too: gym:{name} already has an entry named 'state'")
        extras["state"] = _vector_entry(main_space, main)
    return {keys.OBSERVATION: pixels, **extras}


def _action_converter(space, name: str):
    kind = type(space).__name__
    if kind == "Discrete":
        return OneHotActions(space.n, space.start)
    if kind == "Box" and np.all(np.isfinite(space.low)) and np.all(np.isfinite(space.high)):
        return _BoxActions(space)
    raise EnvError(f"gym:{name}'s action space {space} is not supported; supported: "
                   f"{', '.join(_ACTION_SPACES)}")


def _benchmark(seconds: float = 3.0) -> None:
    """Print step rates on this machine (``python -m wmlab.envs.gym``)."""
    from wmlab.config import env_config

    family = Gym()
    for task, obs in (("CartPole-v1", "state"), ("Pendulum-v1", "state"),
                      ("Pendulum-v1", "pixels")):
        cfg = env_config(f"gym:{task}", obs=obs)
        env = family.make(task, cfg, seed=0)
        sps = step_rate(env, seconds)
        print(f"gym:{task} {obs} action_repeat={cfg.action_repeat}: {sps:.0f} policy steps/s "
              f"({sps * cfg.action_repeat:.0f} frames/s)")
        env.close()


if __name__ == "__main__":
    _benchmark()
