"""The goal family (goal-conditioned MuJoCo tasks) and the env families' eval metrics."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from wmlab import keys, registry
from wmlab.cli import main
from wmlab.config import env_config
from wmlab.envs import EnvFamily, base_env
from wmlab.envs.goal import Goal
from wmlab.envs.gym import GymnasiumTorchEnv
from wmlab.evaluation import evaluate

from test_gym import make as make_env

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def family() -> Goal:
    return Goal()


def make(family, task, **kw):
    return make_env(family, task, prefix="goal", **kw)


def test_registered_with_its_tasks_and_keys():
    family, _ = registry.load_env_family("goal")
    assert isinstance(family, Goal)
    assert family.tasks() == ["cheetah-velocity", "point-maze", "pusher", "reacher"]
    cfg = env_config("goal:reacher", tolerance=0.1)
    assert cfg.tolerance == 0.1 and "kwargs" in cfg  # the gym family's keys too


def test_reacher_goal_out_of_the_state(family):
    env, specs = make(family, "reacher", action_repeat=1)
    assert specs.obs_shape == (6,) and specs.action_shape == (2,)
    assert {k: v.shape for k, v in specs.extra_obs.items()} == {"achieved_goal": (2,), "desired_goal": (2,)}
    assert specs.episode_policy_steps == 50  # Reacher-v5's 50 steps
    td = env.reset()
    mujoco_env = base_env(env, GymnasiumTorchEnv, "goal").gym_env.unwrapped
    np.testing.assert_allclose(td["achieved_goal"], mujoco_env.get_body_com("fingertip")[:2], atol=1e-6)
    np.testing.assert_allclose(td["desired_goal"], mujoco_env.get_body_com("target")[:2], atol=1e-6)
    nxt = env.step(env.rand_action(td))["next"]
    distance = torch.linalg.vector_norm(nxt["achieved_goal"] - nxt["desired_goal"])
    assert float(nxt["reward"]) == pytest.approx(-float(distance), rel=1e-5)  # minus the distance
    goals = [env.reset()["desired_goal"] for _ in range(3)]
    assert not torch.equal(goals[0], goals[1]) and not torch.equal(goals[1], goals[2])  # a new goal each
    assert family.render(env, 32).shape == (32, 32, 3)
    env.close()


def test_cheetah_velocity_draws_a_goal_per_episode(family):
    env, specs = make(family, "cheetah-velocity", action_repeat=1)
    assert specs.obs_shape == (17,) and specs.extra_obs["desired_goal"].shape == (1,)
    goals = [float(env.reset()["desired_goal"]) for _ in range(4)]
    assert all(0.0 <= g <= 3.0 for g in goals) and len(set(goals)) == 4
    td = env.step(env.rand_action(env.reset()))
    mujoco_env = base_env(env, GymnasiumTorchEnv, "goal").gym_env.unwrapped
    assert float(td["next", "achieved_goal"]) == pytest.approx(mujoco_env.data.qvel[0], abs=1e-5)
    assert float(td["next", "reward"]) == pytest.approx(
        -abs(float(td["next", "achieved_goal"]) - float(td["next", "desired_goal"])), abs=1e-5)
    env.close()


def test_pusher_goal_moves_every_episode_and_the_object_is_the_achieved_goal(family):
    env, specs = make(family, "pusher", action_repeat=1)
    assert specs.obs_shape == (20,) and specs.episode_policy_steps == 100
    mujoco_env = base_env(env, GymnasiumTorchEnv, "goal").gym_env.unwrapped
    goals = []
    for _ in range(4):
        td = env.reset()
        np.testing.assert_allclose(td["achieved_goal"], mujoco_env.get_body_com("object")[:2], atol=1e-5)
        np.testing.assert_allclose(td["desired_goal"], mujoco_env.get_body_com("goal")[:2], atol=1e-5)
        assert float(torch.linalg.vector_norm(td["achieved_goal"] - td["desired_goal"])) > 0.17
        goals.append(td["desired_goal"])
    assert len({tuple(g.tolist()) for g in goals}) == 4  # a new goal each episode, not Pusher-v5's one
    td = env.rand_step(td)
    assert float(td["next", "reward"]) == pytest.approx(-float(torch.linalg.vector_norm(
        td["next", "achieved_goal"] - td["next", "desired_goal"])), abs=1e-5)
    env.close()


def test_point_maze_keeps_the_env_goals_and_pays_minus_the_distance(family):
    env, specs = make(family, "point-maze", action_repeat=1)
    assert specs.obs_shape == (4,) and specs.extra_obs["desired_goal"].shape == (2,)
    assert specs.episode_policy_steps == 300
    td = env.rand_step(env.reset())
    np.testing.assert_allclose(td["next", "achieved_goal"], td["next", "observation"][:2], atol=1e-6)
    assert float(td["next", "reward"]) == pytest.approx(-float(torch.linalg.vector_norm(
        td["next", "achieved_goal"] - td["next", "desired_goal"])), abs=1e-5)
    assert base_env(env, GymnasiumTorchEnv, "goal").gym_env.tolerance == 0.45
    env.close()


def test_a_missing_task_package_is_one_line_naming_it(family, monkeypatch, capsys):
    import sys

    monkeypatch.setitem(sys.modules, "gymnasium_robotics", None)  # import fails
    assert main(["fit", "--method", "tdm", "--env", "goal:point-maze", "--preset", "debug"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "pip install gymnasium-robotics" in err, err


def test_velocity_videos_show_the_goal_on_a_gauge(family):
    env, _ = make(family, "cheetah-velocity", action_repeat=1)
    td = env.reset()
    frame = family.render(env, 64)
    goal = float(td["desired_goal"])
    tick = int(round(goal / 3.0 * 63))
    assert tuple(frame[0, tick]) == (230, 30, 30)  # the red tick at the goal's place of 0..3 m/s
    assert frame.shape == (64, 64, 3)
    env.close()
    env, _ = make(family, "reacher", action_repeat=1)
    env.reset()
    assert not (family.render(env, 64)[0] == (230, 30, 30)).all(-1).any()  # the sim draws this goal
    env.close()


class Still(torch.nn.Module):
    """Zero actions."""

    def forward(self, td):
        td.set(keys.ACTION, torch.zeros(2))
        return td


def test_eval_metrics_final_distance_and_success(family):
    env, _ = make(family, "reacher", action_repeat=1, tolerance=10.0)  # everything within 10 m: success
    metrics = lambda td: family.eval_metrics(env, td)  # noqa: E731
    result = evaluate(env, Still(), episodes=3, max_steps=50, seed=0, metrics=metrics)
    assert set(result.metrics) == {"final_distance", "success_rate"}
    assert 0 < result.metrics["final_distance"] < 0.45 and result.metrics["success_rate"] == 1.0
    env.close()
    env, _ = make(family, "reacher")  # the task's own tolerance, 0.05 m
    assert base_env(env, GymnasiumTorchEnv, "goal").gym_env.tolerance == 0.05
    env.close()


def test_a_family_without_metrics_adds_none():
    assert EnvFamily().eval_metrics(None, None) == {}


def test_unknown_task_is_one_line_with_close_matches(capsys):
    assert main(["fit", "--method", "tdmpc", "--env", "goal:reachr"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "'reachr'" in err and "reacher" in err, err
