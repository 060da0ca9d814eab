"""The doom env family (ViZDoom): names, frames, actions, rewards, episode ends, seeding,
and the errors a user sees."""

import sys

import numpy as np
import pytest
import torch

from wmlab import keys
from wmlab.cli import main
from wmlab.config import env_config
from wmlab.envs.doom import Doom, crop_bottom
from wmlab.errors import EnvError


def make(seed=0, **values):
    cfg = env_config("doom:take-cover", **{"obs": "pixels", "action_repeat": 1,
                                            "episode_steps": 2100, **values})
    family = Doom()
    env = family.make("take-cover", cfg, seed=seed)
    return family, env, family.specs(env, cfg)


def run_episode(env, choice: int, max_steps: int = 3000):
    """Steps with one fixed choice until the episode ends: (return, steps, last step td)."""
    td = env.reset()
    total, n = 0.0, 0
    for _ in range(max_steps):
        td[keys.ACTION] = torch.nn.functional.one_hot(torch.tensor(choice), 3).float()
        td = env.step(td)
        total += float(td[keys.REWARD])
        n += 1
        if bool(td[keys.DONE]):
            return total, n, td
        td = td["next"]
    raise AssertionError("the episode did not end")


def test_tasks_and_bad_names(capsys):
    tasks = Doom().tasks()
    assert "take-cover" in tasks and "basic" in tasks
    assert Doom().validate("take-cover") == "take-cover"
    with pytest.raises(EnvError, match="take-cover"):
        Doom().validate("nosuch")
    assert main(["fit", "--method", "worldmodels", "--env", "doom:nosuch", "--preset", "debug"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nosuch" in err[0] and "take-cover" in err[0], err


def test_frames_actions_and_specs():
    family, env, specs = make()
    assert specs.obs_kind == "pixels" and specs.obs_shape == (3, 64, 64)
    assert specs.discrete and specs.action_shape == (3,) and specs.episode_policy_steps == 2100
    td = env.reset()
    obs = td[keys.OBSERVATION]
    assert obs.dtype == torch.uint8 and obs.shape == (3, 64, 64) and obs.float().std() > 5
    assert family.render(env, 32).shape == (32, 32, 3)
    assert env.base_env.gym_env.action_meanings() == ["NOOP", "MOVE_LEFT", "MOVE_RIGHT"]
    env.close()


def test_reward_is_survival_time_and_death_terminates():
    _, env, _ = make()
    ret, steps, last = run_episode(env, choice=0)  # standing still: the fireballs kill
    assert ret == steps and 50 < steps < 2100
    assert bool(last[keys.TERMINATED]) and not bool(last[keys.TRUNCATED])
    env.close()


def test_episode_cap_truncates():
    _, env, _ = make(episode_steps=40)
    ret, steps, last = run_episode(env, choice=1)
    assert steps == 40 and ret == 40
    assert bool(last[keys.TRUNCATED]) and not bool(last[keys.TERMINATED])
    env.close()


def test_seed_fixes_the_episodes():
    frames = []
    for _ in range(2):
        _, env, _ = make(seed=5)
        td = env.reset()
        seq = [td[keys.OBSERVATION]]
        for t in range(30):
            td[keys.ACTION] = torch.nn.functional.one_hot(torch.tensor(t % 3), 3).float()
            td = env.step(td)["next"]
            seq.append(td[keys.OBSERVATION])
        frames.append(torch.stack(seq))
        env.close()
    assert torch.equal(frames[0], frames[1])


def test_crop_bottom():
    frame = np.arange(120 * 4 * 3).reshape(120, 4, 3)
    assert crop_bottom(frame, 1 / 6).shape == (100, 4, 3)
    assert crop_bottom(frame, 0).shape == (120, 4, 3)
    with pytest.raises(EnvError, match="crop_bottom"):
        make(crop_bottom=1.5)


def test_bad_settings():
    with pytest.raises(EnvError, match="pixels only"):
        make(obs="state")


def test_missing_package_names_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "vizdoom", None)  # import vizdoom now fails
    with pytest.raises(EnvError, match=r"pip install \"vizdoom"):
        Doom().tasks()
