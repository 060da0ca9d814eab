"""The gridworld family's Turf (wmlab/envs/gridworld.py): the layout, the rules, the torchrl
env, its evaluation metric and its registration."""

import numpy as np
import pytest
import torch
from torchrl.envs.utils import check_env_specs

from wmlab import keys, registry
from wmlab.config import compose, env_config
from wmlab.envs.gridworld import (ACTIONS, GOAL, LAYOUT, MOVES, PLANES, SIDE, START, TURF_PATH,
                                  Gridworld, TurfEnv, random_policy, ruined_cells)
from wmlab.errors import EnvError
from wmlab.evaluation import evaluate

UP, DOWN, LEFT, RIGHT = range(4)


def path_actions() -> list[int]:
    """The actions that walk the stone path from the start to the goal."""
    return [MOVES.index((b[0] - a[0], b[1] - a[1])) for a, b in zip(TURF_PATH, TURF_PATH[1:])]


def test_layout_is_the_authors_field_with_a_shortest_stone_route():
    assert SIDE == 10 and START == (9, 0) and GOAL == (0, 9)
    assert len(LAYOUT) == SIDE and all(len(row) == SIDE for row in LAYOUT)
    assert LAYOUT[GOAL[0]][GOAL[1]] == "G" and LAYOUT[START[0]][START[1]] == "#"
    # the authors' field (gym_turf/utils.py: generate_fixed_room): stones per row, top to bottom
    assert [row.count("#") for row in LAYOUT] == [1, 5, 6, 3, 2, 2, 2, 2, 2, 1]
    assert [row.index("#") for row in LAYOUT] == [8, 4, 2, 1, 1, 1, 0, 0, 0, 0]
    assert TURF_PATH[0] == START and TURF_PATH[-1] == GOAL and len(set(TURF_PATH)) == 19
    moves = path_actions()
    assert len(moves) == 18 and set(moves) == {UP, RIGHT}  # 18 moves: a shortest route
    env = TurfEnv()
    assert env.stone.sum() == 27 and all(env.stone[c] for c in TURF_PATH)  # 26 stones and the goal


def test_the_path_ruins_nothing_and_reaches_the_goal():
    env = TurfEnv()
    obs, _ = env.reset(seed=0)
    assert obs.shape == (len(PLANES) * SIDE * SIDE,) and obs.reshape(4, SIDE, SIDE)[0][START] == 1
    total = 0.0
    for i, a in enumerate(path_actions()):
        obs, r, terminated, truncated, info = env.step(a)
        total += r
        assert terminated == (i == 17) and not truncated and info["ruined"] == 0
    assert total == pytest.approx(-0.8)  # 18 steps of -0.1 and +1 at the goal
    assert ruined_cells(torch.tensor(obs)) == 0


def test_grass_is_ruined_once_stepped_on_and_stays_ruined():
    env = TurfEnv()
    env.reset()
    _, r, *_ = env.step(RIGHT)  # (9, 1): grass
    assert r == pytest.approx(-0.1) and env.ruined == 1
    env.step(LEFT)  # back on the start stone: the grass stays ruined
    env.step(RIGHT)  # the same cell again: counted once
    obs, *_ = env.step(RIGHT)  # (9, 2)
    assert env.ruined == 2
    planes = obs.reshape(4, SIDE, SIDE)
    assert planes[3][9, 1] == planes[3][9, 2] == 1 and planes[2][9, 1] == 0
    assert ruined_cells(torch.tensor(obs)) == 2
    env.step(DOWN)  # off the field: no move
    assert env.pos == (9, 2)
    env.step(UP)  # (8, 2): grass
    env.step(LEFT)  # (8, 1): stone, nothing more ruined
    assert env.ruined == 3 and env.stone[env.pos]
    env.reset()
    assert env.ruined == 0 and env.pos == START  # a new episode, a new field


def make(**overrides):
    """The torchrl env as configs/envs/gridworld.yaml sets it up (one move a step, 120 steps)."""
    cfg = env_config("gridworld:turf", **{"action_repeat": 1, "episode_steps": 120, **overrides})
    family = Gridworld()
    env = family.make("turf", cfg, seed=0)
    return family, env, family.specs(env, cfg)


def test_torchrl_env_specs_and_episode_cap():
    family, env, specs = make()
    check_env_specs(env)
    assert specs.discrete and specs.action_shape == (len(ACTIONS),) and specs.obs_shape == (400,)
    assert specs.episode_policy_steps == 120 and specs.action_repeat == 1
    td = env.rollout(200, break_when_any_done=True,
                     policy=lambda td: td.set(keys.ACTION, torch.nn.functional.one_hot(
                         torch.tensor(LEFT), 4).float()))  # pushes into the field's edge
    assert td.shape == (120,) and bool(td[-1].get(keys.TRUNCATED)) and not td.get(keys.TERMINATED).any()
    assert family.render(env, 64).shape == (64, 64, 3)


def test_eval_logs_the_ruined_cells_and_successes():
    family, env, specs = make()
    script = iter(path_actions())

    def along_the_path(td):
        return td.set(keys.ACTION, torch.nn.functional.one_hot(torch.tensor(next(script)), 4).float())

    result = evaluate(env, along_the_path, episodes=1, max_steps=120, seed=0,
                      metrics=lambda td: family.eval_metrics(env, td))
    assert result.metrics == {"irreversible": 0.0, "success_rate": 1.0}
    rng = np.random.default_rng(0)
    result = evaluate(env, lambda td: td.set(keys.ACTION, torch.nn.functional.one_hot(
        torch.tensor(int(rng.integers(4))), 4).float()), episodes=3, max_steps=120, seed=0,
        metrics=lambda td: family.eval_metrics(env, td))
    assert result.metrics["irreversible"] > 5


def test_random_policy_ruins_many_cells():
    """Uniformly random actions ruin about 27 cells an episode and rarely reach the goal (1000
    episodes: 26.7 cells, 8% successes; the paper reports about 26 cells)."""
    ruined, success, _ = random_policy(300, seed=1)
    assert 20 < ruined < 40 and success < 0.2


def test_registered_with_its_preset_and_rejects_pixels():
    family, _ = registry.load_env_family("gridworld")
    assert "turf" in family.tasks()
    cls, _ = registry.load_method("reversibility")
    cfg = compose("reversibility", cls, "gridworld:turf")
    assert cfg.env.episode_steps == 120 and cfg.env.action_repeat == 1
    with pytest.raises(EnvError, match="env.obs=state"):
        make(obs="pixels")
    with pytest.raises(EnvError):
        family.validate("meadow")
