"""The env-family contract and the dm_control family (fast: seconds each)."""

from __future__ import annotations

import ctypes.util
import os
import subprocess
import sys
import textwrap

os.environ.setdefault("MUJOCO_GL", "egl")  # headless; works on CPU through Mesa

import numpy as np
import pytest
import torch
from dm_control import suite
from torchrl.envs.utils import check_env_specs

from wmlab import keys
from wmlab.api import EnvSpecs
from omegaconf import DictConfig

from wmlab.config import env_config
from wmlab.envs import DEFAULT_FAMILY, EnvFamily, split_family
from wmlab.envs.dmc import DMControl
from wmlab.errors import EnvError


@pytest.fixture(scope="module")
def family() -> DMControl:
    return DMControl()


def cfg_for(name: str = "cheetah-run", **kw) -> DictConfig:
    return env_config(name, **kw)


def flat_state(observation) -> np.ndarray:
    """How wmlab flattens a dm_control observation: spec order, float32."""
    return np.concatenate([np.asarray(v, dtype=np.float32).ravel() for v in observation.values()])


# --- family contract and names ---------------------------------------------------------


def test_family_contract(family):
    assert isinstance(family, EnvFamily)
    assert DMControl.api_version == "1.0"
    assert EnvFamily.api_version == "1.0"


def test_tasks_listing(family):
    tasks = family.tasks()
    for name in ("cheetah-run", "walker-walk", "cartpole-swingup", "ball_in_cup-catch"):
        assert name in tasks
    assert len(tasks) == len(suite.ALL_TASKS)
    assert all(t.count("-") == 1 for t in tasks)


def test_split_family():
    assert split_family("cheetah-run") == (DEFAULT_FAMILY, "cheetah-run")
    assert DEFAULT_FAMILY == "dmc"
    assert split_family("dmc:walker-walk") == ("dmc", "walker-walk")
    assert split_family("other:some_task") == ("other", "some_task")
    for bad in ("", ":cheetah-run", "dmc:"):
        with pytest.raises(EnvError):
            split_family(bad)


def test_unknown_task_suggests(family):
    with pytest.raises(EnvError) as err:
        family.make("cheetah-runn", cfg_for("cheetah-runn"), seed=0)
    msg = str(err.value)
    assert "unknown dm_control task 'cheetah-runn'; did you mean: cheetah-run" in msg
    with pytest.raises(EnvError) as err:  # nothing close: some of the valid names (`wmlab list` has none)
        family.validate("zzzz-zzzz")
    assert "unknown dm_control task 'zzzz-zzzz'; valid: " in str(err.value)
    assert "names, e.g. acrobot-swingup, " in str(err.value)
    with pytest.raises(EnvError) as err:
        family.validate("walker-wlak")
    assert "walker-walk" in str(err.value)


def test_malformed_task_name(family):
    with pytest.raises(EnvError) as err:
        family.validate("cheetah")
    msg = str(err.value)
    assert "'cheetah'" in msg and "tasks of domain 'cheetah': cheetah-run" in msg and "wmlab list" not in msg
    with pytest.raises(EnvError):
        family.validate("-run")


def test_bad_settings(family):
    with pytest.raises(EnvError, match="env.obs"):
        family.make("cheetah-run", cfg_for(obs="rgb"), seed=0)
    with pytest.raises(EnvError, match="camera"):
        family.make("cheetah-run", cfg_for(camera=99), seed=0)
    with pytest.raises(EnvError, match="episode_steps"):
        family.make("cheetah-run", cfg_for(action_repeat=4, episode_steps=3), seed=0)


# --- state envs --------------------------------------------------------------------------


def test_state_rollout_keys_and_episode_length(family):
    cfg = cfg_for(action_repeat=2, episode_steps=21)  # 21 frames -> 10 policy steps
    env = family.make("cheetah-run", cfg, seed=0)
    check_env_specs(env)
    td = env.rollout(100)  # stops at the first done
    assert td.batch_size == (10,)
    obs = td[keys.OBSERVATION]
    assert obs.dtype == torch.float32 and obs.shape == (10, 17)
    assert td[keys.IS_INIT].dtype == torch.bool
    assert td[keys.IS_INIT].squeeze(-1).tolist() == [True] + [False] * 9
    assert td[keys.REWARD].dtype == torch.float32 and td[keys.REWARD].shape == (10, 1)
    assert td[keys.ACTION].dtype == torch.float32 and td[keys.ACTION].shape == (10, 6)
    for key in (keys.DONE, keys.TERMINATED, keys.TRUNCATED):
        assert td[key].dtype == torch.bool and td[key].shape == (10, 1)
    assert td[keys.DONE].squeeze(-1).tolist() == [False] * 9 + [True]
    assert td[keys.TRUNCATED][-1].item() and not td[keys.TERMINATED].any()
    env.close()


def test_state_auto_reset_continues(family):
    env = family.make("walker-walk", cfg_for("walker-walk", action_repeat=4, episode_steps=20), seed=3)
    td = env.rollout(12, break_when_any_done=False)
    assert td[keys.DONE].squeeze(-1).nonzero().flatten().tolist() == [4, 9]
    assert td[keys.IS_INIT].squeeze(-1).nonzero().flatten().tolist() == [0, 5, 10]
    assert td[keys.OBSERVATION].shape == (12, 24)


@pytest.mark.parametrize("repeat", [1, 3])
def test_reward_is_sum_over_repeated_frames(family, repeat):
    seed, steps = 7, 8
    env = family.make("cheetah-run", cfg_for(action_repeat=repeat, episode_steps=1000), seed=seed)
    raw = suite.load("cheetah", "run", task_kwargs={"random": seed})
    gen = torch.Generator().manual_seed(0)

    td = env.reset()
    ts = raw.reset()
    np.testing.assert_array_equal(td[keys.OBSERVATION].numpy(), flat_state(ts.observation))
    for _ in range(steps):
        action = torch.rand(6, generator=gen) * 2 - 1
        td[keys.ACTION] = action
        td = env.step(td)
        expected = 0.0
        for _ in range(repeat):
            ts = raw.step(action.numpy())
            expected += ts.reward
        assert td[keys.REWARD].item() == np.float32(expected)
        np.testing.assert_array_equal(td["next", keys.OBSERVATION].numpy(),
                                      flat_state(ts.observation))
        td = td["next"].exclude("reward", "done", "terminated", "truncated")


def test_seeding(family):
    def first_obs(seed, reseed=None):
        env = family.make("cheetah-run", cfg_for(), seed=seed)
        if reseed is not None:
            env.set_seed(reseed)
        return env.reset()[keys.OBSERVATION]

    assert torch.equal(first_obs(1), first_obs(1))
    assert not torch.equal(first_obs(1), first_obs(2))
    # torchrl's set_seed gives the same episode as building with that seed
    assert torch.equal(first_obs(1, reseed=2), first_obs(2))


def test_specs(family):
    cfg = cfg_for(action_repeat=4, episode_steps=1000)
    env = family.make("cheetah-run", cfg, seed=0)
    s = family.specs(env, cfg)
    assert isinstance(s, EnvSpecs)
    assert s.name == "cheetah-run" and s.obs_kind == "state"
    assert s.obs_shape == (17,) and s.action_shape == (6,)
    assert s.action_low.dtype == torch.float32 and s.action_high.dtype == torch.float32
    assert torch.equal(s.action_low, -torch.ones(6)) and torch.equal(s.action_high, torch.ones(6))
    assert s.action_repeat == 4 and s.episode_policy_steps == 250 and s.discrete is False


def test_render_state_env(family):
    env = family.make("cartpole-swingup", cfg_for("cartpole-swingup"), seed=0)
    env.reset()
    frame = family.render(env, 80)
    assert isinstance(frame, np.ndarray)
    assert frame.shape == (80, 80, 3) and frame.dtype == np.uint8
    assert frame.std() > 0  # not a blank image


# --- pixel envs --------------------------------------------------------------------------


def test_pixels_env(family):
    cfg = cfg_for(obs="pixels", action_repeat=2, episode_steps=10)
    env = family.make("cheetah-run", cfg, seed=0)
    check_env_specs(env)
    td = env.rollout(100)
    assert td.batch_size == (5,)
    obs = td[keys.OBSERVATION]
    assert obs.dtype == torch.uint8 and obs.shape == (5, 3, 64, 64)
    assert obs.float().std() > 0
    assert not torch.equal(obs[0], td["next", keys.OBSERVATION][-1])  # frames change
    s = family.specs(env, cfg)
    assert s.obs_kind == "pixels" and s.obs_shape == (3, 64, 64) and s.episode_policy_steps == 5
    frame = family.render(env, 64)
    assert frame.shape == (64, 64, 3) and frame.dtype == np.uint8
    env.close()


def test_pixels_frame_stack(family):
    """env.frame_stack=3: [9, H, W], oldest frame first; an episode starts with its first frame
    three times, and each step shifts the stack by one frame."""
    cfg = cfg_for(obs="pixels", action_repeat=2, episode_steps=10, frame_stack=3)
    env = family.make("cheetah-run", cfg, seed=0)
    check_env_specs(env)
    td = env.rollout(5)
    obs, nxt = td[keys.OBSERVATION], td["next", keys.OBSERVATION]
    assert obs.shape == (5, 9, 64, 64) and family.specs(env, cfg).obs_shape == (9, 64, 64)
    first = obs[0]
    assert torch.equal(first[:3], first[3:6]) and torch.equal(first[3:6], first[6:])
    for t in range(4):
        assert torch.equal(nxt[t][:6], obs[t][3:])  # shifted by one frame
        assert torch.equal(obs[t + 1], nxt[t])
    assert not torch.equal(nxt[3][6:], nxt[3][3:6])  # the newest frame differs
    with pytest.raises(EnvError, match="frame_stack=0"):
        family.make("cheetah-run", cfg_for(obs="pixels", frame_stack=0), seed=0)
    env.close()


def test_pixels_slow_render_and_other_size(family):
    cfg = cfg_for("walker-walk", obs="pixels", image_size=32, fast_render=False)
    env = family.make("walker-walk", cfg, seed=0)
    td = env.reset()
    assert td[keys.OBSERVATION].shape == (3, 32, 32)
    assert td[keys.OBSERVATION].dtype == torch.uint8


@pytest.mark.skipif(ctypes.util.find_library("OSMesa") is not None,
                    reason="OSMesa is installed here, so rendering would start")
def test_missing_gl_library_is_a_clear_error():
    code = textwrap.dedent("""
        from wmlab.config import EnvConfig
        from wmlab.envs.dmc import DMControl
        from wmlab.errors import EnvError
        fam = DMControl()
        env = fam.make("cheetah-run", EnvConfig(obs="state"), seed=0)
        assert env.rollout(3)["observation"].shape == (3, 17)   # state envs still work
        try:
            fam.make("cheetah-run", EnvConfig(obs="pixels"), seed=0)
        except EnvError as e:
            print("ENVERROR", e)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "MUJOCO_GL": "osmesa"}, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "ENVERROR" in out.stdout
    assert "libosmesa6" in out.stdout and "libegl1" in out.stdout
    assert "libOSMesa" in out.stdout  # says what is missing


@pytest.mark.parametrize("name", ["dmc", "atari", "gym", "goal", "sokoban"])
def test_family_config_fields_are_documented(name):
    """Every field of a built-in family's Config has a docstring under it (as methods' do)."""
    import dataclasses

    from test_contract import field_docs
    from wmlab import registry
    from wmlab.config import EnvConfig

    family, _ = registry.load_env_family(name)
    fields = {f.name for f in dataclasses.fields(family.Config)}
    assert fields, f"{name} declares no settings"
    assert not fields - set(field_docs(family.Config))
    assert not {f.name for f in dataclasses.fields(EnvConfig)} - set(field_docs(EnvConfig))
