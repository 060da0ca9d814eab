"""ViZDoom scenarios as an env family: ``--env doom:take-cover``.

Task names are the scenario files that ship in the vizdoom wheel (``take_cover.cfg`` is
``take-cover``; ``basic``, ``defend-the-center``, ``health-gathering`` ...), listed by
:meth:`Doom.tasks` and ``wmlab list``.

The defaults follow World Models' Doom setup (Ha & Schmidhuber 2018, arXiv 1803.10122,
Sec. 5, and the authors' ``doomrnn/doomreal.py`` and ``extract.py``), written for
``take-cover``:

* one frame per policy step (``env.action_repeat`` 1) and episodes of at most 2,100 frames
  (``env.episode_steps``; the authors' ``MAX_FRAMES = 2100``), set by
  ``configs/envs/doom.yaml``;
* 64x64 RGB frames (``env.image_size``): the screen (rendered at 160x120) with its bottom
  sixth cut off, as the authors keep rows 0:400 of a 480-row screen, then resized with
  OpenCV (``INTER_AREA``); ``env.crop_bottom`` sets the fraction. The authors also invert
  the colours (``1 - x``); wmlab keeps them as rendered;
* the reward is the scenario's own: take-cover pays 1 per frame alive, so an episode's
  return is its survival time in frames;
* actions: one-hot choices, no-op first, then each of the scenario's buttons pressed
  alone (take-cover: no-op, MOVE_LEFT, MOVE_RIGHT), the three actions of the paper's
  setup (its controller's one output thresholded at +-1/3 picks among the same three).

How an env is put together (inside out)::

    vizdoom.DoomGame            headless, the scenario's .cfg, 160x120 RGB24
        |
    DoomGymEnv (gymnasium)      one frame per step, the no-op + single-button choices,
        |                       a fresh Doom seed drawn from np_random at every reset
    GymnasiumTorchEnv           (the gym family's torchrl env) action repeat, time limit,
        |                       observation uint8 [3, 64, 64], reward, done flags
    TransformedEnv(InitTracker())  adds ``is_init``

Seeding: every reset draws the Doom engine's seed from the gymnasium env's ``np_random``,
so a run's seed fixes its sequence of episodes and a checkpoint's env random state (the
``np_random`` state before the latest reset) replays it after a resume.

vizdoom is imported when an env is first needed; without it a ``doom:`` env is an
:class:`EnvError` naming the package to install. ``python -m wmlab.envs.doom`` measures
the step rate.
"""

from __future__ import annotations

import glob
import os
import shutil
import tempfile
import weakref
from dataclasses import dataclass
from typing import Any

import numpy as np
from torchrl.envs import InitTracker, TransformedEnv

from wmlab.api import EnvSpecs
from wmlab.envs import EnvFamily, base_env, check_frames, step_rate, unknown_name_message
from wmlab.envs.gym import (GymnasiumTorchEnv, OneHotActions, crop_bottom, image_entry,
                            resize_frame, torch_env_specs)
from wmlab.errors import EnvError

__all__ = ["Doom", "DoomConfig", "DoomGymEnv", "crop_bottom"]

_INSTALL_HINT = 'pip install "vizdoom>=1.3,<1.4" (or reinstall wmlab, which requires it)'


def _import_vizdoom():
    try:
        import vizdoom
    except ImportError as e:
        raise EnvError(f"doom envs need vizdoom, which cannot be imported "
                       f"({type(e).__name__}: {e}); install it: {_INSTALL_HINT}") from e
    return vizdoom


def scenario_files() -> dict[str, str]:
    """``{task name: .cfg path}`` of the scenarios shipped with vizdoom."""
    vizdoom = _import_vizdoom()
    paths = glob.glob(os.path.join(vizdoom.scenarios_path, "*.cfg"))
    return {os.path.basename(p)[:-4].replace("_", "-"): p for p in sorted(paths)}


@dataclass
class DoomConfig:
    """The doom family's keys of the ``env`` section (``env.crop_bottom=0``)."""

    crop_bottom: float = 1 / 6
    """Fraction of the screen's rows cut off at the bottom before resizing (the authors
    keep rows 0:400 of 480: 1/6, the status bar); 0 keeps the whole screen."""


def _shutdown(game, folder: str) -> None:
    game.close()
    shutil.rmtree(folder, ignore_errors=True)


class DoomGymEnv:
    """A ViZDoom scenario as a gymnasium env (``reset``/``step``/``render``/``close``,
    ``np_random``), headless, one frame per step; actions are indices of
    :attr:`choices` (0: no-op, then each button alone)."""

    metadata = {"render_modes": ["rgb_array"]}
    render_mode = "rgb_array"

    def __init__(self, path: str):
        import gymnasium

        vizdoom = _import_vizdoom()
        self._gymnasium = gymnasium
        game = vizdoom.DoomGame()
        game.load_config(path)
        # ViZDoom writes its engine settings to _vizdoom.ini in the working folder otherwise;
        # one folder per env, so envs of parallel processes never share the file
        folder = tempfile.mkdtemp(prefix="wmlab-vizdoom-")
        game.set_doom_config_path(os.path.join(folder, "vizdoom.ini"))
        # the game first (it writes the file as it closes), then the folder; also when the
        # env is dropped without close()
        self._shutdown = weakref.finalize(self, _shutdown, game, folder)
        game.set_window_visible(False)
        game.set_sound_enabled(False)
        game.set_screen_resolution(vizdoom.ScreenResolution.RES_160X120)
        game.set_screen_format(vizdoom.ScreenFormat.RGB24)
        game.set_mode(vizdoom.Mode.PLAYER)
        try:
            game.init()
        except Exception as e:  # vizdoom raises its own error types for a broken install
            raise EnvError(f"cannot start ViZDoom with {os.path.basename(path)}: "
                           f"{type(e).__name__}: {e}; reinstall it: {_INSTALL_HINT}") from e
        self.game = game
        self.buttons = [str(b).split(".")[-1] for b in game.get_available_buttons()]
        n = len(self.buttons)
        self.choices = [[0] * n] + [[int(i == j) for j in range(n)] for i in range(n)]
        self.action_space = gymnasium.spaces.Discrete(len(self.choices))
        h, w = game.get_screen_height(), game.get_screen_width()
        self.observation_space = gymnasium.spaces.Box(0, 255, (h, w, 3), dtype=np.uint8)
        self.spec = None
        self.np_random = np.random.default_rng()
        self.unwrapped = self
        self._frame = np.zeros((h, w, 3), dtype=np.uint8)

    def action_meanings(self) -> list[str]:
        return ["NOOP", *self.buttons]

    def _screen(self) -> np.ndarray:
        state = self.game.get_state()
        if state is not None:  # (none once the episode has ended: keep the last frame)
            self._frame = np.asarray(state.screen_buffer, dtype=np.uint8)
        return self._frame

    def reset(self, *, seed: int | None = None, options: Any = None):
        if seed is not None:
            self.np_random = np.random.default_rng(int(seed))
        self.game.set_seed(int(self.np_random.integers(0, 2**31 - 1)))
        self.game.new_episode()
        return self._screen(), {}

    def step(self, action: int):
        reward = self.game.make_action(self.choices[int(action)], 1)
        terminated = bool(self.game.is_episode_finished())
        return self._screen(), float(reward), terminated, False, {}

    def render(self) -> np.ndarray:
        return self._frame

    def close(self) -> None:
        self._shutdown()


class _TorchDoom(GymnasiumTorchEnv):
    """A ViZDoom scenario as a torchrl env (the gym family's, over :class:`DoomGymEnv`)."""

    def __init__(self, env: DoomGymEnv, *, name: str, repeat: int, policy_steps: int,
                 image_size: int, crop: float):
        frames = image_entry(image_size, False, lambda raw, e: raw, crop=crop)
        super().__init__(env, name=name, repeat=repeat, policy_steps=policy_steps,
                         entries={"observation": frames}, actions=OneHotActions(env.action_space.n))

    def __repr__(self) -> str:
        return f"_TorchDoom(scenario={self.name}, actions={self._env.action_meanings()})"


class Doom(EnvFamily):
    """ViZDoom's scenarios (``doom:take-cover``), World Models' preprocessing."""

    description = "ViZDoom scenarios (vizdoom), names like doom:take-cover, doom:basic"
    fixed_tasks = True
    Config = DoomConfig

    def tasks(self) -> list[str]:
        """The scenarios shipped with vizdoom, as task names (``take-cover``), sorted."""
        return sorted(scenario_files())

    def validate(self, name: str) -> str:
        tasks = self.tasks()
        if name in tasks:
            return name
        raise EnvError(unknown_name_message(name, tasks, what="doom task", listing=30))

    def make(self, name: str, cfg: Any, *, seed: int) -> TransformedEnv:
        """Build the torchrl env of scenario ``name`` (see the module docstring)."""
        self.validate(name)
        if str(cfg.obs) != "pixels":
            raise EnvError(f"env.obs={cfg.obs!r} is not supported by Doom scenarios: they are "
                           f"pixels only (configs/envs/doom.yaml sets env.obs=pixels)")
        if bool(cfg.grayscale):
            raise EnvError("env.grayscale=true is not supported by Doom scenarios (RGB frames)")
        repeat, episode_steps, image_size = check_frames(cfg, f"doom:{name}")
        own = self.settings(cfg)
        if not 0.0 <= float(own.crop_bottom) < 1.0:
            raise EnvError(f"env.crop_bottom is a fraction in [0, 1), got {own.crop_bottom}")
        env = DoomGymEnv(scenario_files()[name])
        base = _TorchDoom(env, name=name, repeat=repeat, policy_steps=episode_steps // repeat,
                          image_size=image_size, crop=float(own.crop_bottom))
        base.set_seed(int(seed))
        return TransformedEnv(base, InitTracker())

    def specs(self, env, cfg) -> EnvSpecs:
        base = base_env(env, _TorchDoom, "doom")
        return torch_env_specs(env, cfg, name=f"doom:{base.name}", policy_steps=base._policy_steps)

    def render(self, env, size: int) -> np.ndarray:
        """``uint8 [size, size, 3]``: the whole current screen (uncropped)."""
        if int(size) < 1:
            raise ValueError(f"size must be positive, got {size}")
        return resize_frame(base_env(env, _TorchDoom, "doom").gym_env.render(), int(size))


def _benchmark(seconds: float = 3.0) -> None:
    """Print the step rate on this machine (``python -m wmlab.envs.doom``)."""
    from wmlab.config import env_config

    cfg = env_config("doom:take-cover", obs="pixels", action_repeat=1, episode_steps=2100)
    env = Doom().make("take-cover", cfg, seed=0)
    print(f"doom:take-cover: {step_rate(env, seconds):.0f} policy steps/s (frames/s)")
    env.close()


if __name__ == "__main__":
    _benchmark()
