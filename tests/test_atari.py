"""The Atari env family (ale-py through gymnasium): names, errors, shapes, preprocessing,
episode ends, seeding and config (fast: a few seconds in all, no training)."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from torchrl.data import OneHot
from torchrl.envs.utils import check_env_specs

from wmlab import keys, registry
from wmlab.api import EnvSpecs
from wmlab.config import EnvConfig, compose, env_config, env_preset_stems
from wmlab.envs.atari import Atari, _atari_of, rom_id, task_name
from wmlab.errors import EnvError

cv2 = pytest.importorskip("cv2")
ale_py = pytest.importorskip("ale_py")
from ale_py.env import AtariEnv  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def family() -> Atari:
    return Atari()


def cfg_for(name: str = "pong", **kw):
    """The env section as configs/envs/atari.yaml makes it, plus overrides."""
    settings = dict(name=f"atari:{name}", obs="pixels", grayscale=True, action_repeat=4,
                    episode_steps=108_000)
    settings.update(kw)
    return env_config(settings.pop("name"), **settings)


def one_hot(index: int, n: int) -> torch.Tensor:
    return torch.nn.functional.one_hot(torch.tensor(index), n).to(torch.float32)


# --- registration and names -------------------------------------------------------------


def test_registered_as_env_family():
    family, plugin = registry.load_env_family("atari")
    assert isinstance(family, Atari) and plugin.name == "atari"
    assert family.api_version == "1.0" and family.description


def test_task_list_names_every_rom(family):
    tasks = family.tasks()
    assert len(tasks) == len(ale_py.roms.get_all_rom_ids()) >= 57
    for game in ("pong", "breakout", "montezuma-revenge", "ms-pacman", "space-invaders"):
        assert game in tasks
    assert tasks == sorted(tasks)
    assert all(t == t.lower() and "_" not in t for t in tasks)
    assert rom_id("montezuma-revenge") == "montezuma_revenge"
    assert task_name("ms_pacman") == "ms-pacman"


@pytest.mark.parametrize("bad, suggested", [
    ("pongg", "atari:pong"), ("Breakout", "atari:breakout"),
    ("montezuma_revenge", "atari:montezuma-revenge"),
    ("ALE/MontezumaRevenge-v5", "atari:montezuma-revenge"),
    ("SpaceInvadersNoFrameskip-v4", "atari:space-invaders"),
])
def test_unknown_game_suggests(family, bad, suggested):
    with pytest.raises(EnvError) as err:
        family.validate(bad)
    msg = str(err.value)
    assert repr(bad) in msg and suggested in msg and "lower case with hyphens" in msg


def test_unknown_game_without_match(family):
    with pytest.raises(EnvError, match="unknown Atari game 'zzzz'.*e.g. atari:pong"):
        family.make("zzzz", cfg_for("zzzz"), seed=0)


# --- bad input -------------------------------------------------------------------------


def test_state_observations_are_refused(family):
    with pytest.raises(EnvError, match="env.obs='state'.*pixels only"):
        family.make("pong", cfg_for(obs="state"), seed=0)


@pytest.mark.parametrize("override, match", [
    ({"sticky_actions": 1.5}, "sticky_actions is a probability"),
    ({"noop_max": -1}, "noop_max must be >= 0"),
    ({"episode_steps": 2}, "episode_steps .* must be at least"),
    ({"action_repeat": 0}, "action_repeat must be >= 1"),
])
def test_bad_settings(family, override, match):
    with pytest.raises(EnvError, match=match):
        family.make("pong", cfg_for(**override), seed=0)


def test_missing_rom_is_explained(family, tmp_path, monkeypatch):
    # ale-py looks for ROMs in ALE_ROMS_DIR when it is set: an empty folder has none
    monkeypatch.setenv("ALE_ROMS_DIR", str(tmp_path))
    with pytest.raises(EnvError) as err:
        family.make("pong", cfg_for(), seed=0)
    msg = str(err.value)
    assert "cannot load the ROM of Atari game 'pong'" in msg
    assert "ships the ROMs" in msg and "ALE_ROMS_DIR" in msg and "pong.bin" in msg


@pytest.mark.parametrize("module, match", [("ale_py", "need gymnasium and ale-py"),
                                           ("gymnasium.wrappers", "need gymnasium and ale-py"),
                                           ("cv2", "need OpenCV")])
def test_missing_packages_are_explained(family, monkeypatch, module, match):
    monkeypatch.setitem(sys.modules, module, None)  # makes `import module` raise ImportError
    with pytest.raises(EnvError, match=match) as err:
        family.make("pong", cfg_for(), seed=0)
    assert "pip install" in str(err.value)
    with pytest.raises(EnvError, match=match):
        family.tasks()


def test_dmc_refuses_grayscale():
    from wmlab.envs.dmc import DMControl

    with pytest.raises(EnvError, match="grayscale.*Atari"):
        DMControl().make("cheetah-run", EnvConfig(name="cheetah-run", grayscale=True), seed=0)


# --- specs, shapes, dtypes ------------------------------------------------------------


@pytest.mark.parametrize("grayscale, channels", [(True, 1), (False, 3)])
def test_reset_and_step_shapes(family, grayscale, channels):
    env = family.make("pong", cfg_for(grayscale=grayscale), seed=0)
    check_env_specs(env)
    td = env.reset()
    assert td[keys.OBSERVATION].shape == (channels, 64, 64)
    assert td[keys.OBSERVATION].dtype == torch.uint8
    assert td[keys.IS_INIT].item() is True
    td = env.step(td.set(keys.ACTION, one_hot(1, 18)))
    assert td[keys.REWARD].shape == (1,) and td[keys.REWARD].dtype == torch.float32
    for key in (keys.DONE, keys.TERMINATED, keys.TRUNCATED):
        assert td[key].shape == (1,) and td[key].dtype == torch.bool and not td[key].item()
    assert td["next", keys.OBSERVATION].shape == (channels, 64, 64)
    assert td["next", keys.IS_INIT].item() is False
    env.close()


def test_specs(family):
    cfg = cfg_for(image_size=32)
    env = family.make("pong", cfg, seed=0)
    specs = family.specs(env, cfg)
    assert isinstance(specs, EnvSpecs)
    assert specs.name == "atari:pong" and specs.obs_kind == "pixels"
    assert specs.obs_shape == (1, 32, 32)
    assert specs.discrete and specs.action_shape == (18,) and specs.action_dim == 18
    assert torch.equal(specs.action_low, torch.zeros(18))
    assert torch.equal(specs.action_high, torch.ones(18))
    assert specs.action_repeat == 4 and specs.episode_policy_steps == 27_000
    spec = env.action_spec
    assert isinstance(spec, OneHot) and spec.dtype == torch.float32 and spec.shape == (18,)
    sample = env.rand_action()[keys.ACTION]
    assert sample.sum() == 1 and sample.dtype == torch.float32
    minimal = family.make("pong", cfg_for(full_action_space=False), seed=0)
    assert family.specs(minimal, cfg_for(full_action_space=False)).action_shape == (6,)
    assert _atari_of(minimal).action_meanings()[0] == "NOOP"


def test_action_is_the_largest_entry(family):
    env = family.make("pong", cfg_for(), seed=0)
    base = _atari_of(env)
    taken = []
    step = base._env.step
    base._env.step = lambda index: (taken.append(index), step(index))[1]
    td = env.reset()
    actions = (one_hot(3, 18), torch.linspace(0, 1, 18), torch.rand(18) * 0.1 + one_hot(7, 18),
               torch.tensor(5))  # one-hot, any scores, an integer index
    for action in actions:
        td = env.step(td.set(keys.ACTION, action))["next"]
    assert taken == [3, 17, 7, 5]


def test_render(family):
    env = family.make("pong", cfg_for(), seed=0)
    env.reset()
    for size in (64, 100):
        frame = family.render(env, size)
        assert frame.shape == (size, size, 3) and frame.dtype == np.uint8
    assert family.render(env, 64).std() > 0  # a picture, not a blank frame


# --- preprocessing: repeat, reward sum, max-pooling --------------------------------------


def test_action_repeat_reward_sum_and_max_pooling(family):
    """Against ALE driven by hand: 4 frames per step, rewards summed, the observation is the
    max of the last two grayscale frames resized to 64x64 (no sticky actions, no no-ops)."""
    cfg = cfg_for(sticky_actions=0.0, noop_max=0)
    env = family.make("pong", cfg, seed=0)
    raw = AtariEnv("pong", obs_type="grayscale", frameskip=1, repeat_action_probability=0.0,
                   full_action_space=True)
    raw.reset(seed=0)
    rng = np.random.default_rng(0)
    td = env.reset()
    rewards, raw_rewards = [], []
    for t in range(250):
        index = int(rng.integers(18))
        td = env.step(td.set(keys.ACTION, one_hot(index, 18)))
        total, frames = 0.0, []
        for _ in range(4):
            _, r, *_ = raw.step(index)
            total += r
            frames.append(raw.ale.getScreenGrayscale())
        rewards.append(float(td[keys.REWARD]))
        raw_rewards.append(total)
        if t % 50 == 0:
            pooled = np.maximum(frames[-1], frames[-2])
            expected = cv2.resize(pooled, (64, 64), interpolation=cv2.INTER_AREA)
            assert np.array_equal(td["next", keys.OBSERVATION][0].numpy(), expected)
        td = td["next"]
    assert rewards == raw_rewards and any(r != 0 for r in rewards)
    assert _atari_of(env).ale.getEpisodeFrameNumber() == 4 * 250


# --- episode ends --------------------------------------------------------------------


def test_time_limit_truncates(family):
    env = family.make("pong", cfg_for(episode_steps=40), seed=0)  # 10 policy steps
    torch.manual_seed(0)
    td = env.rollout(100, break_when_any_done=True)
    assert td.shape == (10,)
    assert td[keys.TRUNCATED][-1].item() and td[keys.DONE][-1].item()
    assert not td[keys.TERMINATED].any()
    assert not td[keys.DONE][:-1].any()
    td = env.reset()  # a fresh episode after the limit
    assert td[keys.IS_INIT].item()


def test_game_over_terminates_and_life_loss_does_not(family):
    env = family.make("breakout", cfg_for(), seed=0)
    torch.manual_seed(0)
    td = env.rollout(3000, break_when_any_done=True)  # random play loses 5 lives fast
    assert td.shape[0] < 3000
    assert td[keys.TERMINATED][-1].item() and not td[keys.TRUNCATED].any()
    assert not td[keys.DONE][:-1].any()
    assert _atari_of(env).ale.lives() == 0


def test_terminal_on_life_loss(family):
    env = family.make("breakout", cfg_for(terminal_on_life_loss=True), seed=0)
    torch.manual_seed(0)
    td = env.rollout(3000, break_when_any_done=True)
    assert td[keys.TERMINATED][-1].item()
    assert _atari_of(env).ale.lives() == 4  # one life lost, the game not over
    assert env.reset()[keys.IS_INIT].item() and _atari_of(env).ale.lives() == 5


# --- seeding --------------------------------------------------------------------------


def rollout_obs(env, steps: int = 40) -> torch.Tensor:
    torch.manual_seed(1)  # the same random actions every time
    return env.rollout(steps, break_when_any_done=False)[keys.OBSERVATION]


def test_seeded_sticky_actions_and_noops_reproduce(family):
    a = rollout_obs(family.make("breakout", cfg_for(), seed=3))
    b = rollout_obs(family.make("breakout", cfg_for(), seed=3))
    c = rollout_obs(family.make("breakout", cfg_for(), seed=4))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    env = family.make("breakout", cfg_for(), seed=3)
    first = rollout_obs(env)
    env.set_seed(3)  # reseeding replays the same episode (as evaluation does)
    assert torch.equal(rollout_obs(env), first) and torch.equal(first, a)


def test_sticky_actions_change_the_dynamics(family):
    deterministic = cfg_for(sticky_actions=0.0, noop_max=0)
    a = rollout_obs(family.make("breakout", deterministic, seed=3))
    b = rollout_obs(family.make("breakout", deterministic, seed=4))
    assert torch.equal(a, b)  # no randomness left: the seed does not matter
    sticky = cfg_for(sticky_actions=0.25, noop_max=0)
    c = rollout_obs(family.make("breakout", sticky, seed=3), steps=100)
    d = rollout_obs(family.make("breakout", sticky, seed=4), steps=100)
    assert not torch.equal(c, d)


# --- config --------------------------------------------------------------------------


def test_env_preset_stems():
    assert env_preset_stems("cheetah-run") == ["cheetah", "cheetah-run"]
    assert env_preset_stems("dmc:cheetah-run") == ["cheetah", "cheetah-run"]
    assert env_preset_stems("atari:pong") == ["atari", "atari-pong"]
    assert env_preset_stems("atari:montezuma-revenge") == ["atari", "atari-montezuma-revenge"]


def test_atari_env_preset():
    from dataclasses import dataclass

    from wmlab.api import Method

    @dataclass
    class NoConfig:
        pass

    class Pixels(Method):
        Config = NoConfig
        observations = ("pixels",)

    cfg = compose("pixels", Pixels, "atari:breakout")
    env = cfg.env
    assert (env.obs, env.grayscale, env.action_repeat, env.episode_steps, env.image_size) == (
        "pixels", True, 4, 108_000, 64)
    assert (env.sticky_actions, env.full_action_space, env.noop_max,
            env.terminal_on_life_loss) == (0.25, True, 30, False)
    dmc = compose("pixels", Pixels, "cheetah-run", overrides=["env.obs=pixels"]).env
    assert (dmc.grayscale, dmc.action_repeat, dmc.episode_steps) == (False, 2, 1000)


def test_grayscale_frames_make_videos():
    from wmlab.video import as_frames

    gray = np.arange(2 * 4 * 6, dtype=np.uint8).reshape(2, 1, 4, 6)  # [T, 1, H, W]
    rgb = as_frames(gray)
    assert rgb.shape == (2, 4, 6, 3) and np.array_equal(rgb[..., 2], gray[:, 0])
    assert as_frames(gray.transpose(0, 2, 3, 1)).shape == (2, 4, 6, 3)
