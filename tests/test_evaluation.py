"""Evaluation with several eval envs side by side (``eval.envs``): every episode is run and
counted once, a policy's per-env state stays with its env, and every evaluation sees the
same episodes."""

import torch
import torch.nn.functional as F

from wmlab import keys, registry
from wmlab.api import Policy
from wmlab.cli import main
from wmlab.config import compose
from wmlab.evaluation import EVAL_SEED_OFFSET, evaluate

MAX_STEPS = 120


class Recording(Policy):
    """Pushes right, then down, ... (a fixed function of the step within an episode, kept
    per batch row), and records the batch size and the rows that start an episode."""

    def __init__(self):
        super().__init__(torch.device("cpu"))
        self.t, self.calls = None, []

    def act(self, obs, is_init):
        if self.t is None or self.t.shape[0] != obs.shape[0]:
            self.t = torch.zeros(obs.shape[0], dtype=torch.long)
        self.t = torch.where(is_init, torch.zeros_like(self.t), self.t + 1)
        self.calls.append((obs.shape[0], is_init.clone()))
        return F.one_hot(1 + self.t % 4, 5).float()


def sokoban_envs(n: int):
    family, _ = registry.load_env_family("sokoban")
    cls, _ = registry.load_method("i2a")
    cfg = compose("i2a", cls, "sokoban:5x5-1", presets=[], overrides=[])
    envs = [family.make("5x5-1", cfg.env, seed=EVAL_SEED_OFFSET + i) for i in range(n)]
    return family, envs


def test_episodes_side_by_side_each_once_with_per_env_state():
    family, envs = sokoban_envs(4)
    policy = Recording()
    policy.obs_keys = (keys.OBSERVATION,)
    ended = []
    result = evaluate(envs[0], policy, episodes=9, max_steps=MAX_STEPS, seed=1, more_envs=envs[1:],
                      metrics=lambda td, env: family.eval_metrics(env, td),
                      progress=lambda ep, steps, ret, s: ret is not None and ended.append(ep))
    assert len(result.returns) == len(result.lengths) == 9 and sorted(ended) == list(range(9))
    assert all(1 <= n <= MAX_STEPS for n in result.lengths)
    assert set(result.metrics) == {"solved_rate"}
    # one policy call per step for all four envs; a row starts an episode 9 times in all:
    # the first call (all four), then once per episode taken by an env whose episode ended
    assert {size for size, _ in policy.calls} == {4}
    starts = sum(int(init.sum()) for _, init in policy.calls)
    assert policy.calls[0][1].all() and starts == 9
    # the same episodes at every evaluation
    again = evaluate(envs[0], Recording(), episodes=9, max_steps=MAX_STEPS, seed=1, more_envs=envs[1:],
                     metrics=lambda td, env: family.eval_metrics(env, td))
    assert again.returns == result.returns and again.lengths == result.lengths


def test_fewer_episodes_than_envs_and_the_option_end_to_end(capsys):
    family, envs = sokoban_envs(3)
    policy = Recording()
    policy.obs_keys = (keys.OBSERVATION,)
    result = evaluate(envs[0], policy, episodes=2, max_steps=MAX_STEPS, seed=1, more_envs=envs[1:])
    assert len(result.returns) == 2 and {size for size, _ in policy.calls} == {2}
    assert main(["fit", "--method", "i2a", "--env", "sokoban:7x7-2", "--preset", "debug", "run.threads=1",
                 "method.agent=model_free", "eval.envs=3", "eval.episodes=4", "eval.video=false"]) == 0
    assert "episode 4/4" in capsys.readouterr().err
    assert main(["fit", "--method", "i2a", "--env", "sokoban:7x7-2", "--preset", "debug", "eval.envs=0"]) == 2
    assert "eval.envs must be positive" in capsys.readouterr().err
