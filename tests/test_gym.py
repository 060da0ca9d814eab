"""The gym env family (any gymnasium id as gym:ID): observations, actions, composite
observations, repeat and episode ends, SerialEnv, and every bad-input line (fast)."""

from __future__ import annotations

import importlib.util
import sys

import numpy as np
import pytest
import torch
from torchrl.envs import SerialEnv
from torchrl.envs.utils import check_env_specs

import gym_fixtures  # noqa: F401  (registers the wmlab_test/ envs)
from wmlab import keys, registry
from wmlab.cli import main
from wmlab.config import compose, env_config
from wmlab.envs.gym import Gym
from wmlab.errors import EnvError

torch.set_num_threads(1)
GOAL = "wmlab_test/GoalPoint-v0"


@pytest.fixture(scope="module")
def family() -> Gym:
    return Gym()


def make(family, task, seed=0, prefix="gym", **kw):
    """The env of ``prefix:task`` made by ``family`` with ``env`` keys ``kw``, and its specs."""
    cfg = env_config(f"{prefix}:{task}", **kw)
    env = family.make(task, cfg, seed=seed)
    return env, family.specs(env, cfg)


def one_hot(index: int, n: int) -> torch.Tensor:
    return torch.nn.functional.one_hot(torch.tensor(index), n).to(torch.float32)


def test_registered_with_its_own_config():
    family, plugin = registry.load_env_family("gym")
    assert isinstance(family, Gym) and plugin.name == "gym" and family.description
    env = compose("tdmpc", registry.load_method("tdmpc")[0], "gym:CartPole-v1",
                  overrides=["env.state_too=true"]).env
    assert env.state_too is True and env.obs_key == "" and "camera" not in env


def test_cartpole_states_one_hot_actions(family):
    env, specs = make(family, "CartPole-v1")
    check_env_specs(env)
    assert specs.discrete and specs.action_shape == (2,) and specs.obs_kind == "state"
    assert specs.obs_shape == (4,) and specs.extra_obs == {}
    assert torch.equal(specs.action_low, torch.zeros(2)) and torch.equal(specs.action_high, torch.ones(2))
    assert specs.episode_policy_steps == 250  # CartPole-v1's own limit, 500 frames, over repeat 2
    td = env.reset()
    assert td[keys.OBSERVATION].dtype == torch.float32 and td[keys.IS_INIT].item()
    td["action"] = one_hot(1, 2)
    out = env.step(td)["next"]
    assert out[keys.OBSERVATION].shape == (4,) and out["reward"].dtype == torch.float32
    env.close()


def test_termination_and_reward_sum_over_repeat(family):
    """Pushing CartPole left ends the game: terminated, not truncated; with repeat 3 a step
    before that earns 3 (one per frame)."""
    env, _ = make(family, "CartPole-v1", action_repeat=3)
    td = env.reset()
    rewards, out = [], None
    for _ in range(100):
        td["action"] = one_hot(0, 2)
        td = env.step(td)
        out = td["next"]
        rewards.append(out["reward"].item())
        if out["done"].item():
            break
        td = td["next"]
    assert out["terminated"].item() and not out["truncated"].item()
    assert rewards[0] == 3.0 and rewards[-1] <= 3.0 and len(rewards) < 20
    env.close()


def test_truncation_at_episode_steps(family):
    env, specs = make(family, "Pendulum-v1", action_repeat=2, episode_steps=11)  # 5 steps
    assert specs.episode_policy_steps == 5
    td = env.rollout(100)
    assert td.batch_size == (5,)
    assert td["next", "truncated"].squeeze(-1).tolist() == [False] * 4 + [True]
    assert not td["next", "terminated"].any()
    env.close()


def test_pendulum_continuous_states_and_seeding(family):
    env, specs = make(family, "Pendulum-v1", seed=7)
    assert not family.render(env, 16).any()  # no state before the first reset: black
    assert not specs.discrete and specs.action_shape == (1,)
    assert specs.action_low.tolist() == [-2.0] and specs.action_high.tolist() == [2.0]
    assert specs.episode_policy_steps == 100  # 200 frames of its own
    again, _ = make(family, "Pendulum-v1", seed=7)
    other, _ = make(family, "Pendulum-v1", seed=8)
    first = env.reset()[keys.OBSERVATION]
    assert torch.equal(first, again.reset()[keys.OBSERVATION])
    assert not torch.equal(first, other.reset()[keys.OBSERVATION])
    for e in (env, again, other):
        e.close()


def test_pendulum_pixels_with_state_too(family):
    env, specs = make(family, "Pendulum-v1", obs="pixels", image_size=32, state_too=True)
    check_env_specs(env)
    assert specs.obs_kind == "pixels" and specs.obs_shape == (3, 32, 32)
    assert set(specs.extra_obs) == {"state"} and specs.extra_obs["state"].shape == (3,)
    td = env.rollout(3)
    assert td[keys.OBSERVATION].dtype == torch.uint8 and td[keys.OBSERVATION].float().std() > 0
    assert td["state"].shape == (3, 3) and td["next", "state"].shape == (3, 3)
    frame = family.render(env, 48)
    assert frame.shape == (48, 48, 3) and frame.dtype == np.uint8
    env.close()
    gray, specs = make(family, "Pendulum-v1", obs="pixels", grayscale=True)
    assert specs.obs_shape == (1, 64, 64) and specs.extra_obs == {}
    gray.close()


def test_dict_observation_is_composite(family):
    env, specs = make(family, GOAL)
    check_env_specs(env)
    assert specs.obs_shape == (2,) and not specs.discrete
    assert set(specs.extra_obs) == {"achieved_goal", "desired_goal"}
    td = env.rollout(4)
    assert torch.equal(td[keys.OBSERVATION], td["achieved_goal"])
    assert (td["desired_goal"] == td["desired_goal"][0]).all()
    assert "desired_goal" in td["next"].keys()
    env.close()
    with pytest.raises(EnvError, match="env.obs_key='goal'.*entries: achieved_goal, desired_goal, observation"):
        make(family, GOAL, obs_key="goal")
    with pytest.raises(EnvError, match="entries observation clash"):  # it would be an extra
        make(family, GOAL, obs_key="desired_goal")


def test_dict_observation_with_pixels_and_discrete_actions(family):
    env, specs = make(family, GOAL, obs="pixels", state_too=True, kwargs={"discrete": True})
    assert specs.discrete and specs.action_shape == (5,) and specs.obs_shape == (3, 64, 64)
    assert set(specs.extra_obs) == {"achieved_goal", "desired_goal", "state"}
    env.close()


def test_serial_env_with_composite_observations_and_discrete_actions(family):
    cfg = env_config(f"gym:{GOAL}", kwargs={"discrete": True})
    fns = [lambda: family.make(GOAL, cfg, seed=0), lambda: family.make(GOAL, cfg, seed=1)]
    envs = SerialEnv(2, fns)
    td = envs.reset()
    assert td[keys.OBSERVATION].shape == (2, 2) and td["desired_goal"].shape == (2, 2)
    assert not torch.equal(td["desired_goal"][0], td["desired_goal"][1])  # seeds differ
    for _ in range(30):  # long enough for some episode to end and reset on its own
        td["action"] = torch.stack([one_hot(1, 5), one_hot(3, 5)])
        _, td = envs.step_and_maybe_reset(td)
        assert td["achieved_goal"].shape == (2, 2) and td[keys.IS_INIT].shape == (2, 1)
    envs.close()
    pixels = SerialEnv(2, [lambda: family.make("CartPole-v1", env_config(
        "gym:CartPole-v1", obs="pixels", state_too=True), seed=0)] * 2)
    rollout = pixels.rollout(3)
    assert rollout[keys.OBSERVATION].shape == (2, 3, 3, 64, 64) and rollout["state"].shape == (2, 3, 4)
    pixels.close()


@pytest.mark.skipif(importlib.util.find_spec("Box2D") is None, reason="gymnasium[box2d] not installed")
def test_car_racing_pixels_from_its_observation(family):
    env, specs = make(family, "CarRacing-v3", obs="pixels")
    assert specs.obs_shape == (3, 64, 64) and specs.action_shape == (3,)
    assert specs.action_low.tolist() == [-1.0, 0.0, 0.0]
    assert env.rollout(2)[keys.OBSERVATION].dtype == torch.uint8
    env.close()
    with pytest.raises(EnvError, match="observes images.*env.obs=pixels"):
        make(family, "CarRacing-v3")
    cfg = compose("tdmpc", registry.load_method("tdmpc")[0], "gym:CarRacing-v3",
                  overrides=["env.obs=pixels", "env.kwargs.continuous=false"]).env
    discrete = family.make("CarRacing-v3", cfg, seed=0)
    specs = family.specs(discrete, cfg)
    assert specs.discrete and specs.action_shape == (5,)
    discrete.close()


@pytest.mark.skipif(importlib.util.find_spec("mujoco") is None, reason="gymnasium[mujoco] not installed")
def test_reacher_states(family):
    env, specs = make(family, "Reacher-v5")
    assert specs.obs_shape == (10,) and specs.action_shape == (2,) and specs.episode_policy_steps == 25
    td = env.rollout(3)
    assert td[keys.OBSERVATION].dtype == torch.float32
    assert family.render(env, 32).shape == (32, 32, 3)
    env.close()


# --- bad input: one line through the CLI, exit 2 -------------------------------------------


def fit_error(capsys, env: str, *overrides: str) -> str:
    assert main(["fit", "--method", "tdmpc", "--env", env, "--preset", "debug", *overrides]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def test_unknown_id_suggests(capsys):
    err = fit_error(capsys, "gym:CartPol-v1")
    assert "unknown gymnasium id 'CartPol-v1'" in err and "did you mean CartPole-v1" in err
    assert "gym:CartPole-v1" in err


def test_unsupported_spaces_name_the_supported_ones(capsys):
    err = fit_error(capsys, "gym:gym_fixtures:wmlab_test/TupleObservation-v0")
    assert "Tuple" in err and "supported: Box, Discrete, MultiBinary, a Dict of those" in err
    err = fit_error(capsys, "gym:gym_fixtures:wmlab_test/MultiDiscreteActions-v0")
    assert "MultiDiscrete" in err and "supported: Discrete, Box with finite bounds" in err


def test_pixels_from_an_env_that_cannot_render(capsys):
    err = fit_error(capsys, "gym:gym_fixtures:wmlab_test/NoRender-v0", "env.obs=pixels")
    assert "cannot render" in err and "env.obs=state" in err


def test_missing_module_of_module_id(capsys):
    err = fit_error(capsys, "gym:no_such_module:Thing-v0")
    assert "cannot import module 'no_such_module'" in err


def test_bad_make_arguments(capsys):
    err = fit_error(capsys, "gym:CartPole-v1", "env.kwargs.bogus=1")
    assert "cannot make gym:CartPole-v1 with env.kwargs={'bogus': 1" in err and "bogus" in err


def test_other_family_key_on_a_gym_env(capsys):
    err = fit_error(capsys, "gym:CartPole-v1", "env.sticky_actions=0")
    assert "'env.sticky_actions'" in err and "env.state_too" in err


def test_missing_extra_names_the_pip_command(capsys, monkeypatch):
    """gymnasium raises DependencyNotInstalled when Box2D cannot be imported."""
    for name in [m for m in sys.modules if m.startswith("gymnasium.envs.box2d")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "Box2D", None)  # `import Box2D` raises ImportError
    err = fit_error(capsys, "gym:CarRacing-v3", "env.obs=pixels")
    assert 'pip install "gymnasium[box2d]"' in err and "CarRacing-v3" in err
