"""Atari 2600 games (the Arcade Learning Environment) as an env family: ``--env atari:pong``.

Task names are the games ale-py ships ROMs for, lower case with hyphens:
``pong``, ``breakout``, ``montezuma-revenge``, ``ms-pacman`` (ALE's ROM ids with ``_``
as ``-``; ``wmlab list`` names the family, :meth:`Atari.tasks` every game).

The defaults follow DreamerV2's Atari setup: the paper (Hafner, Lillicrap, Norouzi, Ba
2021, arXiv 2010.02193, Sec. 4, which follows Machado et al. 2018's protocol) and the
authors' code (danijar/dreamerv2: ``configs.yaml`` section ``atari``, class ``Atari`` in
``common/envs.py``, ``train.py``). Setting, value, wmlab key, source:

* observation: 64x64 grayscale, ``uint8 [1, 64, 64]``; ``env.image_size`` 64 and
  ``env.grayscale`` true (code: ``image_size``/``render_size [64, 64]``,
  ``grayscale``/``atari_grayscale: True``); ``env.grayscale=false`` gives RGB ``[3, 64, 64]``;
* action repeat 4, rewards summed, each observation the maximum of the last two frames;
  ``env.action_repeat`` (code: ``action_repeat: 4``, and gym's ``AtariPreprocessing``,
  which pools the last two frames);
* time limit 108,000 frames = 27,000 policy steps (30 minutes of play);
  ``env.episode_steps`` (code: ``time_limit: 108000`` frames, later ``27000`` policy steps);
* sticky actions with probability 0.25; ``env.sticky_actions`` (paper: sticky actions;
  code: ``sticky_actions=True`` -> ALE's ``repeat_action_probability=0.25``);
* all 18 actions in every game; ``env.full_action_space`` true (paper: full action space;
  the paper-era ``train.py`` passes ``all_actions=True``, the later code defaults to the
  minimal set);
* a lost life does not end the episode; ``env.terminal_on_life_loss`` false (paper: no
  life information; code: ``life_done=False``);
* 1 to 30 random no-op frames at each reset; ``env.noop_max`` 30 (code: ``noops=30`` handed
  to ``AtariPreprocessing``; the paper does not mention them; 0 turns them off).

``configs/envs/atari.yaml`` sets the core ``env`` keys (``obs: pixels``, ``grayscale``,
``action_repeat: 4``, ``episode_steps: 108000``) for every ``atari:*`` env; Atari's own
keys (:class:`AtariConfig`) have these values as their defaults. Frames are
counted without the no-ops, as in the authors' time limit; episodes are truncated by
wmlab, not by ALE (which gets no frame limit).

How an env is put together (inside out)::

    ale_py.env.AtariEnv          one frame per step (frameskip=1), sticky actions,
        |                        full or minimal action set
    gymnasium AtariPreprocessing no-op starts, action repeat (rewards summed, stops at
        |                        game over), max over the last two frames, resize to
        |                        image_size x image_size (cv2 INTER_AREA), grayscale
    _TorchAtari (torchrl env)    the gym family's GymnasiumTorchEnv with one frame per
        |                        step: one-hot action -> index, observation uint8
        |                        [C, H, W], reward float32 [1], done/terminated/truncated,
        |                        time limit
    TransformedEnv(InitTracker())  adds ``is_init``

Actions: the action spec is torchrl's ``OneHot(n, dtype=float32)`` with ``n`` 18 (or the
game's minimal set), and the ``action`` entry is a float32 one-hot vector ``[n]``. The env
takes the index of the largest entry, so any float vector of length ``n`` is a valid
action (a uniform random vector picks a uniformly random action). :class:`EnvSpecs` has
``discrete=True``, ``action_shape=(n,)``, bounds 0 and 1.

Episode ends: game over is ``terminated``; the time limit is ``truncated`` (only if the
game did not end on the same step); with ``env.terminal_on_life_loss`` a lost life is
``terminated`` too and the next reset starts a new game.

Seeding: :meth:`Atari.make`'s seed (and every later ``env.set_seed``) seeds ALE (sticky
actions) and the no-op draws at the next reset; later episodes continue those streams, so
a seed fixes the whole sequence of episodes for a fixed sequence of actions.

gymnasium, ale-py and opencv-python-headless are imported when an env is first needed,
so ``wmlab list`` and dm_control runs work without them; a missing one is an
:class:`EnvError` saying what to install. Measured on the project machine (2 CPU cores
shared with other jobs, pong, random actions, repeat 4): the gymnasium env alone about
1,600 policy steps/s grayscale and 1,300 RGB; through torchrl
(``rand_action`` + ``step_and_maybe_reset``) about 500 either way, i.e. 2,000 frames/s
(``python -m wmlab.envs.atari`` re-measures).
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import Any

import numpy as np
from torchrl.envs import InitTracker, TransformedEnv

from wmlab.api import EnvSpecs
from wmlab.envs import EnvFamily, base_env, check_frames, step_rate
from wmlab.envs.gym import (GymnasiumTorchEnv, OneHotActions, image_entry, resize_frame,
                            torch_env_specs)
from wmlab.errors import EnvError

__all__ = ["Atari", "AtariConfig"]

_INSTALL_HINT = ('pip install "gymnasium>=1.0,<2" "ale-py>=0.12,<0.13" opencv-python-headless '
                 '(or reinstall wmlab, which requires them)')


# --------------------------------------------------------------------------------------
# lazy imports and names


def _import_ale():
    """``(ale_py, ale_py.roms, AtariEnv, AtariPreprocessing)``, or an :class:`EnvError`."""
    try:
        import ale_py
        import ale_py.roms as roms
        from ale_py.env import AtariEnv
        from gymnasium.wrappers import AtariPreprocessing
    except ImportError as e:
        raise EnvError(f"Atari envs need gymnasium and ale-py, which cannot be imported "
                       f"({type(e).__name__}: {e}); install them: {_INSTALL_HINT}") from e
    try:
        import cv2  # noqa: F401  (AtariPreprocessing resizes with OpenCV)
    except ImportError as e:
        raise EnvError(f"Atari envs need OpenCV for resizing frames, which cannot be imported "
                       f"({type(e).__name__}: {e}); install it: pip install "
                       f"opencv-python-headless") from e
    return ale_py, roms, AtariEnv, AtariPreprocessing


def rom_id(task: str) -> str:
    """ALE's ROM id of a task name: ``montezuma-revenge`` -> ``montezuma_revenge``."""
    return task.replace("-", "_")


def task_name(rom: str) -> str:
    """The task name of an ALE ROM id: ``montezuma_revenge`` -> ``montezuma-revenge``."""
    return rom.replace("_", "-")


def _plausible_task(name: str) -> str:
    """Map other spellings of a game to a task name: ``ALE/MontezumaRevenge-v5``,
    ``BreakoutNoFrameskip-v4``, ``Ms_Pacman`` -> ``montezuma-revenge``, ``breakout``, ..."""
    name = name.strip().split("/")[-1]
    name = re.sub(r"-v\d+$", "", name)
    name = re.sub(r"(NoFrameskip|Deterministic)$", "", name)
    name = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "-", name)  # CamelCase -> Camel-Case
    return name.lower().replace("_", "-").replace(" ", "-")


# --------------------------------------------------------------------------------------
# the torchrl env


class _TorchAtari(GymnasiumTorchEnv):
    """A preprocessed ALE game as a torchrl env (see the module docstring): the gym family's
    torchrl env with one frame per step (``AtariPreprocessing`` repeats the action).

    ``env`` is gymnasium's ``AtariPreprocessing`` around an ``ale_py`` ``AtariEnv``;
    ``policy_steps`` is the episode's time limit in policy steps.
    """

    def __init__(self, env, *, name: str, policy_steps: int, grayscale: bool):
        size = env.observation_space.shape[0]
        frames = image_entry(size, grayscale, lambda raw, env: raw)
        super().__init__(env, name=name, repeat=1, policy_steps=policy_steps,
                         entries={"observation": frames},
                         actions=OneHotActions(int(env.action_space.n)))
        self.n_actions = int(env.action_space.n)

    @property
    def ale(self):
        """The ``ale_py.ALEInterface`` (lives, RAM, screen)."""
        return self._env.unwrapped.ale

    def action_meanings(self) -> list[str]:
        """ALE's names of the actions, in the order of the one-hot entries."""
        return list(self._env.unwrapped.get_action_meanings())

    def render_frame(self) -> np.ndarray:
        """The emulator's current RGB screen, ``uint8 [210, 160, 3]``."""
        return self.ale.getScreenRGB()

    def __repr__(self) -> str:
        return f"_TorchAtari(game={self.name}, actions={self.n_actions})"


def _atari_of(env) -> _TorchAtari:
    """The :class:`_TorchAtari` under a (possibly transformed) env built by :class:`Atari`."""
    return base_env(env, _TorchAtari, "atari")


# --------------------------------------------------------------------------------------
# the family


@dataclass
class AtariConfig:
    """Atari's keys of the ``env`` section (``env.sticky_actions=0``); configs/envs/atari.yaml
    sets the core ones (pixels, grayscale, action repeat 4, 108,000-frame episodes)."""

    sticky_actions: float = 0.25
    """Probability that the emulator keeps the previous action at each frame (ALE's
    repeat_action_probability; 0.25 as Machado et al. 2018 and DreamerV2; 0 makes the
    games deterministic)."""
    full_action_space: bool = True
    """All 18 joystick actions for every game (DreamerV2) instead of the game's minimal
    action set."""
    noop_max: int = 30
    """Start every episode with 1 to ``noop_max`` random no-op frames (DreamerV2's code:
    30); 0 turns no-op starts off."""
    terminal_on_life_loss: bool = False
    """End the episode (terminated) when a life is lost; DreamerV2 does not (no access to
    life information)."""


class Atari(EnvFamily):
    """Atari 2600 games through ale-py and gymnasium, DreamerV2's preprocessing."""

    description = "Atari 2600 games (ale-py), names like atari:pong, atari:montezuma-revenge"
    fixed_tasks = True
    Config = AtariConfig

    def tasks(self) -> list[str]:
        """Every game ale-py knows a ROM for, as a task name (``pong``, ``ms-pacman``), sorted."""
        _, roms, _, _ = _import_ale()
        return sorted(task_name(r) for r in roms.get_all_rom_ids())

    def validate(self, name: str) -> str:
        """Return ``name`` if it is a game, else raise :class:`EnvError` with close matches.

        Other spellings (``Pong``, ``ALE/MontezumaRevenge-v5``, ``ms_pacman``) are
        recognised and the wmlab name suggested."""
        tasks = self.tasks()
        if name in tasks:
            return name
        guess = _plausible_task(name)
        close = [guess] if guess in tasks else difflib.get_close_matches(guess, tasks, n=5)
        hint = f"; did you mean: {', '.join('atari:' + c for c in close)}?" if close else ""
        raise EnvError(f"unknown Atari game {name!r}{hint} (games are ale-py's ROM ids in lower "
                       f"case with hyphens, e.g. atari:pong, atari:montezuma-revenge; "
                       f"{len(tasks)} in all, listed by wmlab.envs.atari.Atari().tasks())")

    def make(self, name: str, cfg: Any, *, seed: int) -> TransformedEnv:
        """Build the torchrl env of game ``name`` (see the module docstring).

        ``cfg`` is the ``env`` config section; ``seed`` seeds ALE's sticky actions and the
        no-op starts (from the first reset on). Raises :class:`EnvError` for an unknown
        game, a missing ROM, bad settings, or when gymnasium/ale-py cannot be imported.
        """
        self.validate(name)
        settings = _check_cfg(name, cfg, self.settings(cfg))
        _, roms, atari_env, preprocessing = _import_ale()
        try:
            inner = atari_env(
                rom_id(name), obs_type="grayscale" if settings["grayscale"] else "rgb",
                frameskip=1, repeat_action_probability=settings["sticky_actions"],
                full_action_space=settings["full_action_space"], render_mode="rgb_array")
        except (OSError, TypeError, RuntimeError) as e:  # missing or corrupt ROM file
            raise EnvError(_rom_message(name, roms, e)) from e
        env = preprocessing(inner, noop_max=settings["noop_max"], frame_skip=settings["repeat"],
                            screen_size=settings["image_size"],
                            terminal_on_life_loss=settings["terminal_on_life_loss"],
                            grayscale_obs=settings["grayscale"], grayscale_newaxis=False)
        base = _TorchAtari(env, name=name, policy_steps=settings["policy_steps"],
                           grayscale=settings["grayscale"])
        base.set_seed(int(seed))
        return TransformedEnv(base, InitTracker())

    def specs(self, env, cfg) -> EnvSpecs:
        """Fill :class:`EnvSpecs` from an env built by :meth:`make` with ``cfg``:
        pixels, one-hot actions (``discrete=True``, ``action_shape=(n,)``, bounds 0 and 1)."""
        base = _atari_of(env)
        return torch_env_specs(env, cfg, name=base.name,
                               policy_steps=int(cfg.episode_steps) // int(cfg.action_repeat))

    def render(self, env, size: int) -> np.ndarray:
        """``uint8 [size, size, 3]``: the emulator's current RGB screen (the last frame, not
        the max-pooled observation), resized from 210x160."""
        if int(size) < 1:
            raise ValueError(f"size must be positive, got {size}")
        return resize_frame(_atari_of(env).render_frame(), int(size))


def _rom_message(name: str, roms, cause: BaseException) -> str:
    return (f"cannot load the ROM of Atari game {name!r} (ALE id {rom_id(name)!r}): "
            f"{type(cause).__name__}: {cause}. ale-py ships the ROMs in its "
            f"wheel: reinstall it (pip install --force-reinstall \"ale-py>=0.12,<0.13\"), or "
            f"point ALE_ROMS_DIR at a folder holding {rom_id(name)}.bin (a ROM you own)")


def _check_cfg(name: str, cfg: Any, own: AtariConfig) -> dict[str, Any]:
    """The Atari settings of the ``env`` section (core keys ``cfg``, Atari's own ``own``),
    checked; :class:`EnvError` names a bad one."""
    if str(cfg.obs) != "pixels":
        raise EnvError(f"env.obs={cfg.obs!r} is not supported by Atari games: they are "
                       f"pixels only; pass env.obs=pixels (configs/envs/atari.yaml sets it, "
                       f"so a preset or an override changed it)")
    repeat, episode_steps, image_size = check_frames(cfg, f"atari:{name}")
    sticky = float(own.sticky_actions)
    if not 0.0 <= sticky <= 1.0:
        raise EnvError(f"env.sticky_actions is a probability in [0, 1], got {sticky}")
    noop_max = int(own.noop_max)
    if noop_max < 0:
        raise EnvError(f"env.noop_max must be >= 0 (0: no no-op starts), got {noop_max}")
    return dict(repeat=repeat, policy_steps=episode_steps // repeat, image_size=image_size,
                grayscale=bool(cfg.grayscale), sticky_actions=sticky, noop_max=noop_max,
                full_action_space=bool(own.full_action_space),
                terminal_on_life_loss=bool(own.terminal_on_life_loss))


def _benchmark(seconds: float = 3.0) -> None:
    """Print step rates on this machine (``python -m wmlab.envs.atari``)."""
    from wmlab.config import env_config

    family = Atari()
    for grayscale in (True, False):
        cfg = env_config("atari:pong", obs="pixels", grayscale=grayscale, action_repeat=4,
                         episode_steps=108_000)
        env = family.make("pong", cfg, seed=0)
        sps = step_rate(env, seconds)
        print(f"pong grayscale={grayscale} action_repeat=4: {sps:.0f} policy steps/s "
              f"({4 * sps:.0f} frames/s)")
        env.close()


if __name__ == "__main__":
    _benchmark()
