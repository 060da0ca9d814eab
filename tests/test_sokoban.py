"""The sokoban env family: generated levels are solvable, the rules and rewards, episode
ends, observations, Boxoban files, seeding, eval metrics, every bad-input line, and a
fit end to end (seconds, the fits aside)."""

from __future__ import annotations

import mlflow
import numpy as np
import pytest
import torch
from torchrl.envs.utils import check_env_specs

from sokoban_solver import solve
from wmlab import keys, registry
from wmlab.cli import main
from wmlab.config import compose, env_config
from wmlab.envs import base_env
from wmlab.envs.gym import GymnasiumTorchEnv
from wmlab.envs.sokoban import (ACTIONS, CELLS, CHARS, SPRITES, LevelSet, RoomGenerator, Sokoban,
                                SokobanEnv, draw, grid_shape, parse_levels)
from wmlab.errors import EnvError
from wmlab.evaluation import evaluate
from wmlab.tracking import tracking_uri

torch.set_num_threads(1)
NOOP, UP, DOWN, LEFT, RIGHT = range(5)


@pytest.fixture(scope="module")
def family() -> Sokoban:
    return Sokoban()


def make(family, task, seed=0, **kw):
    """The env of ``sokoban:task`` with the family's preset (one move a step, 120 steps)."""
    kw = {"action_repeat": 1, "episode_steps": 120, **kw}
    cfg = env_config(f"sokoban:{task}", **kw)
    env = family.make(task, cfg, seed=seed)
    return env, family.specs(env, cfg)


def room(*rows: str) -> np.ndarray:
    """A room of cell codes from rows of Boxoban characters."""
    return np.array([[CHARS.index(c) for c in row] for row in rows], dtype=np.int8)


def text(*rows: str) -> str:
    return "\n".join(rows)


def play(level: np.ndarray) -> SokobanEnv:
    env = SokobanEnv(LevelSet(level[None]), *level.shape)
    env.reset(seed=0)
    return env


def one_hot(index: int) -> torch.Tensor:
    return torch.nn.functional.one_hot(torch.tensor(index), len(ACTIONS)).to(torch.float32)


def test_registered_with_its_keys_and_preset():
    family, plugin = registry.load_env_family("sokoban")
    assert isinstance(family, Sokoban) and plugin.name == "sokoban" and family.description
    assert family.tasks() == ["10x10-4", "7x7-2", "boxoban"]
    assert family.validate("12x9-3") == "12x9-3"
    env = compose("dreamer", registry.load_method("dreamer")[0], "sokoban:7x7-2").env
    assert env.action_repeat == 1 and env.episode_steps == 120  # configs/envs/sokoban.yaml
    assert env.levels == "" and env.state_too is False and "kwargs" not in env


# --- generated levels ----------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_generated_7x7_levels_are_solvable(seed):
    """50 levels per seed, each solved by an independent search and the solution played in
    the env: every push lands, the last step ends the episode with +10."""
    generate, rng = RoomGenerator(7, 7, 2), np.random.default_rng(seed)
    wall, box, player, player_on_target = (CELLS.index(c) for c in (
        "wall", "box", "player", "player_on_target"))
    for _ in range(50):
        level = generate(rng)
        assert level.shape == (7, 7)
        assert (level[[0, -1]] == wall).all() and (level[:, [0, -1]] == wall).all()
        assert (level == box).sum() == 2  # both boxes off their targets
        assert np.isin(level, (player, player_on_target)).sum() == 1
        actions = solve(level)
        assert actions is not None, level
        env = play(level)
        for i, action in enumerate(actions):
            _, reward, terminated, _, _ = env.step(action)
            assert terminated == (i == len(actions) - 1)
        assert reward == pytest.approx(-0.1 + 1 + 10) and env.solved


def test_generated_10x10_levels_are_solvable():
    """The paper's task: 20 levels, each solved within the solver's bound (200,000 states;
    the hardest of 40 levels took 0.8 s, the mean 0.07 s)."""
    generate, rng = RoomGenerator(10, 10, 4), np.random.default_rng(7)
    for _ in range(20):
        level = generate(rng)
        actions = solve(level)
        assert actions is not None, level
        env = play(level)
        for action in actions:
            env.step(action)
        assert env.solved


def test_seeds_give_levels(family):
    first = [make(family, "7x7-2", seed=s)[0] for s in (3, 3, 4)]
    a, b, c = (e.reset()[keys.OBSERVATION] for e in first)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert not torch.equal(a, first[0].reset()[keys.OBSERVATION])  # a new level every episode
    for e in first:
        e.close()


# --- rules ---------------------------------------------------------------------------------


def test_pushes_and_rewards():
    env = play(room("########",
                    "#@$. $.#",
                    "#      #",
                    "########"))
    assert env.step(RIGHT)[1:3] == (pytest.approx(0.9), False)  # onto a target: -0.1 + 1
    assert env.room[1, 3] == CELLS.index("box_on_target")
    assert env.step(RIGHT)[1:3] == (pytest.approx(-1.1), False)  # off it: -0.1 - 1
    assert env.room[1, 3] == CELLS.index("player_on_target")
    assert env.room[1, 4] == CELLS.index("box")
    before = env.room
    assert env.step(RIGHT)[1] == pytest.approx(-0.1)  # into the next box: nothing moves
    np.testing.assert_array_equal(env.room, before)
    env.step(UP)  # a wall
    env.step(NOOP)
    np.testing.assert_array_equal(env.room, before)
    env.step(DOWN)
    assert env.room[2, 3] == CELLS.index("player") and env.room[1, 3] == CELLS.index("target")


def test_walls_stop_the_player_and_the_boxes():
    env = play(room("######",
                    "#@$$.#",
                    "#$ ..#",
                    "######"))
    before = env.room
    for action in (RIGHT, DOWN, UP, LEFT):  # a box into a box, a box into a wall, walls
        assert env.step(action)[1:3] == (pytest.approx(-0.1), False)
        np.testing.assert_array_equal(env.room, before)


def test_solving_terminates_with_ten():
    env = play(room("######",
                    "#@$.##",
                    "######"))
    _, reward, terminated, truncated, _ = env.step(RIGHT)
    assert reward == pytest.approx(10.9) and terminated and not truncated and env.solved


def test_episode_truncated_at_episode_steps(family):
    env, specs = make(family, "7x7-2", episode_steps=5)
    assert specs.episode_policy_steps == 5 and specs.discrete and specs.action_shape == (5,)
    td = env.reset()
    steps = []
    for _ in range(5):
        td["action"] = one_hot(NOOP)
        td = env.step(td)
        steps.append((td["next", "truncated"].item(), td["next", "terminated"].item()))
        assert td["next", "reward"].item() == pytest.approx(-0.1)
        td = td["next"]
    assert steps == [(False, False)] * 4 + [(True, False)]
    env.close()


# --- observations ----------------------------------------------------------------------------


def test_state_is_the_room_one_hot(family):
    env, specs = make(family, "7x7-2")
    check_env_specs(env)
    assert specs.obs_kind == "state" and specs.obs_shape == (7 * 7 * 7,)
    assert grid_shape(specs.name) == (7, 7, 7) and grid_shape("boxoban") == (7, 10, 10)
    obs = env.reset()[keys.OBSERVATION]
    assert obs.dtype == torch.float32
    grid = obs.reshape(grid_shape(specs.name))
    assert torch.equal(grid.sum(0), torch.ones(7, 7))  # one channel per cell
    level = base_env(env, GymnasiumTorchEnv, "sokoban").gym_env.room
    assert torch.equal(grid.argmax(0), torch.from_numpy(level).long())
    env.close()


def test_sprites_and_pixels(family):
    assert SPRITES.shape == (7, 8, 8, 3)
    flat = SPRITES.reshape(7, -1)
    assert len({s.tobytes() for s in flat}) == 7  # every cell type drawn its own way
    assert SPRITES[CELLS.index("floor")].max() == 0  # black floor
    assert tuple(SPRITES[CELLS.index("target")][1, 1]) == (224, 48, 48)  # red square
    assert tuple(SPRITES[CELLS.index("box")][1, 1]) == (236, 188, 56)  # yellow crate
    assert tuple(SPRITES[CELLS.index("box_on_target")][1, 1]) == (96, 212, 96)  # green crate
    assert tuple(SPRITES[CELLS.index("player")][2, 3]) == (72, 164, 255)  # blue figure
    # the player on a target: the figure over the red square
    assert tuple(SPRITES[CELLS.index("player_on_target")][1, 1]) == (224, 48, 48)
    assert tuple(SPRITES[CELLS.index("player_on_target")][2, 3]) == (72, 164, 255)

    env, specs = make(family, "7x7-2", obs="pixels", image_size=56)  # 8 px per cell: exact
    check_env_specs(env)
    assert specs.obs_kind == "pixels" and specs.obs_shape == (3, 56, 56)
    frame = env.reset()[keys.OBSERVATION]
    level = base_env(env, GymnasiumTorchEnv, "sokoban").gym_env.room
    assert torch.equal(frame, torch.from_numpy(draw(level)).permute(2, 0, 1))
    assert family.render(env, 56).shape == (56, 56, 3)
    env.close()
    env, specs = make(family, "7x7-2", obs="pixels", state_too=True)  # 64: resized
    assert specs.obs_shape == (3, 64, 64) and specs.extra_obs["state"].shape == (343,)
    td = env.rollout(3)
    assert td[keys.OBSERVATION].dtype == torch.uint8 and td["next", "state"].shape == (3, 343)
    env.close()
    env, specs = make(family, "7x7-2", obs="pixels", grayscale=True)
    assert specs.obs_shape == (1, 64, 64) and specs.extra_obs == {}
    assert not family.render(env, 16).any()  # black before the first reset
    env.close()


# --- Boxoban files -------------------------------------------------------------------------

LEVEL = ("##########",
         "#@$.    ##",
         "#        #",
         "#  *  ## #",
         "#    $.  #",
         "#  $     #",
         "#   . ####",
         "#        #",
         "#        #",
         "##########")


def write_levels(folder, *levels, name="000.txt"):
    folder.mkdir(exist_ok=True)
    body = "".join(f"; {i}\n" + "\n".join(rows) + "\n\n" for i, rows in enumerate(levels))
    (folder / name).write_text(body)
    return folder


def test_boxoban_levels_from_a_folder(family, tmp_path):
    other = ("##########",
             "#+$      #",
             *("#        #",) * 7,
             "##########")
    folder = write_levels(tmp_path / "levels", LEVEL, other)
    write_levels(folder, LEVEL, name="001.txt")
    env, specs = make(family, "boxoban", levels=str(folder))
    assert specs.obs_shape == (7 * 10 * 10,) and specs.name == "sokoban:boxoban"
    gym_env = base_env(env, GymnasiumTorchEnv, "sokoban").gym_env
    seen = set()
    for _ in range(30):
        env.reset()
        seen.add(gym_env.room.tobytes())
    assert seen == {room(*LEVEL).tobytes(), room(*other).tobytes()}
    td = env.reset()
    while gym_env.room.tobytes() != room(*LEVEL).tobytes():
        td = env.reset()
    td["action"] = one_hot(RIGHT)
    assert env.step(td)["next", "reward"].item() == pytest.approx(0.9)
    env.close()
    env, _ = make(family, "boxoban", levels=str(folder / "000.txt"))  # one file
    env.close()


def test_eval_metrics_solved_rate(family, tmp_path):
    one_push = ("##########",
                "#@$.     #",
                *("#        #",) * 7,
                "##########")
    folder = write_levels(tmp_path / "easy", one_push)
    env, _ = make(family, "boxoban", levels=str(folder))

    def pushing(action):
        def policy(td):
            td.set(keys.ACTION, one_hot(action))
            return td
        return policy

    metrics = lambda td: family.eval_metrics(env, td)  # noqa: E731
    solved = evaluate(env, pushing(RIGHT), episodes=3, max_steps=120, seed=0, metrics=metrics)
    assert solved.metrics == {"solved_rate": 1.0} and solved.returns == pytest.approx([10.9] * 3)
    stuck = evaluate(env, pushing(LEFT), episodes=2, max_steps=120, seed=0, metrics=metrics)
    assert stuck.metrics == {"solved_rate": 0.0} and stuck.lengths == [120, 120]
    env.close()


@pytest.mark.parametrize("rows, problem", [
    ((LEVEL[0], "#@$.   ##", *LEVEL[2:]), "a.txt:3: a row of 9 characters; Boxoban rows are 10"),
    ((LEVEL[0], "#@$.  x ##", *LEVEL[2:]), "a.txt:3: unknown character 'x' in column 7"),
    ((LEVEL[0], "# $.    ##", *LEVEL[2:]), "a.txt:1: the level of this line has 0 players"),
    ((LEVEL[0], "#@$.$   ##", *LEVEL[2:]),
     "a.txt:1: the level of this line has 5 boxes and 4 targets"),
    ((LEVEL[0], " @$.    ##", *LEVEL[2:]), "is open: the cells on its border must all be walls"),
    ((LEVEL[0], "#@*     ##", *("#        #",) * 7, LEVEL[9]), "is solved already"),
    (LEVEL[:9], "a.txt:1: the level of this line has 9 rows; Boxoban levels are 10 rows"),
])
def test_malformed_levels_name_the_file_and_line(rows, problem):
    with pytest.raises(EnvError) as e:
        parse_levels("; 0\n" + text(*rows) + "\n", "a.txt")
    assert problem in str(e.value) and len(str(e.value).splitlines()) == 1, str(e.value)


def test_levels_need_their_header():
    with pytest.raises(EnvError, match="a.txt:1: expected a level's '; N' line first"):
        parse_levels(text(*LEVEL), "a.txt")


# --- bad input: one line through the CLI, exit 2 -------------------------------------------


def fit_error(capsys, env: str, *overrides: str) -> str:
    assert main(["fit", "--method", "dreamer", "--env", env, "--preset", "debug", *overrides]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


@pytest.mark.parametrize("env, needle", [
    ("sokoban:foo", "unknown sokoban task 'foo': tasks are HxW-N"),
    ("sokoban:3x3-9", "a room's sides are 5 to 16 cells (walls included), got 3x3"),
    ("sokoban:7x7-9", "a 7x7 room takes 1 to 3 boxes, got 9"),
    ("sokoban:boxoban", "sokoban:boxoban needs env.levels=PATH"),
])
def test_bad_names_and_missing_levels(capsys, env, needle):
    assert needle in fit_error(capsys, env)


def test_bad_level_folders(capsys, tmp_path):
    (tmp_path / "empty").mkdir()
    assert "holds no level files (*.txt)" in fit_error(capsys, "sokoban:boxoban",
                                                       f"env.levels={tmp_path / 'empty'}")
    missing = f"env.levels={tmp_path / 'nope'}"
    assert "does not exist" in fit_error(capsys, "sokoban:boxoban", missing)
    bad = write_levels(tmp_path / "bad", (LEVEL[0], "#@$.  x ##", *LEVEL[2:]))
    err = fit_error(capsys, "sokoban:boxoban", f"env.levels={bad}")
    assert f"{bad.resolve() / '000.txt'}:3: unknown character 'x'" in err
    err = fit_error(capsys, "sokoban:7x7-2", f"env.levels={bad}")
    assert "env.levels is for sokoban:boxoban; sokoban:7x7-2 generates its levels" in err


# --- end to end ----------------------------------------------------------------------------


@pytest.mark.parametrize("obs", ["state", "pixels"])
def test_fit_dreamer_end_to_end(obs, capsys):
    argv = ["fit", "--method", "dreamer", "--env", "sokoban:7x7-2", "--preset", "debug",
            f"env.obs={obs}", "run.steps=240", "eval.every=240", "checkpoint.every=0"]
    assert main(argv) == 0
    client = mlflow.MlflowClient(tracking_uri(None))
    run, = client.search_runs([client.get_experiment_by_name("wmlab").experiment_id])
    assert run.info.status == "FINISHED" and run.data.params["env.obs"] == obs
    assert 0.0 <= run.data.metrics["eval/solved_rate"] <= 1.0
    assert "eval/episode_return" in run.data.metrics
