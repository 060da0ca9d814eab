"""Mixed ``run.precision``: acting runs under the same autocast as the updates."""

import pytest
import torch
from tensordict import TensorDict

from wmlab import keys, loop
from wmlab.api import Policy
from wmlab.nets.heads import TruncNormalActor
from wmlab_plugins.worldmodels.networks import MDNRNN, VAE


class Recording(Policy):
    """Acts with a linear layer and records the autocast state it saw."""

    def __init__(self):
        super().__init__("cpu")
        self.layer = torch.nn.Linear(3, 2)
        self.seen = []

    def act(self, obs, is_init):
        self.seen.append(torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu"))
        return self.layer(obs)


def test_act_runs_under_the_policy_autocast_and_actions_come_back_float32():
    policy = Recording()
    td = {keys.OBSERVATION: torch.ones(4, 3), keys.IS_INIT: torch.zeros(4, dtype=torch.bool)}
    out = policy(TensorDict(td, batch_size=[4]))
    assert policy.seen == [False] and out[keys.ACTION].dtype == torch.float32
    policy.autocast = torch.bfloat16
    out = policy(TensorDict(td, batch_size=[4]))
    assert policy.seen[-1] == torch.bfloat16 and out[keys.ACTION].dtype == torch.float32


@pytest.mark.parametrize("precision,dtype", [("32-true", None), ("bf16-mixed", torch.bfloat16),
                                             ("16-mixed", torch.float16)])
def test_the_core_sets_the_autocast_of_the_run_precision(precision, dtype):
    class FakeRun:
        specs = type("Specs", (), {"extra_obs": ()})()
        cfg = type("Cfg", (), {"run": type("RunCfg", (), {"precision": precision})()})()

    assert loop.ready_policy(FakeRun(), Recording()).autocast is dtype


def test_world_models_nets_give_float32_statistics_under_autocast():
    vae, rnn = VAE(z_dim=4, depth=4), MDNRNN(z_dim=4, action_dim=3, hidden=8, mixtures=2, done_head=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mean, logvar = vae.encode(torch.zeros(2, 3, 64, 64, dtype=torch.uint8))
        frames = vae.decode(mean)
        mix, done = rnn.heads(rnn.step(mean, torch.zeros(2, 3), rnn.initial_state(2))[0])
    assert {t.dtype for t in (mean, logvar, frames, *mix, done)} == {torch.float32}


def test_the_truncated_normal_actor_samples_under_bf16_autocast():
    """DreamerV2's actor samples through the inverse normal CDF, which has no bfloat16
    kernel: its statistics are float32, so it samples (and scores) under autocast."""
    actor = TruncNormalActor(5, 2, hidden=8, layers=2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        action, log_prob = actor.sample(torch.randn(4, 5))
        entropy = actor.entropy(torch.randn(4, 5))
    assert action.dtype == log_prob.dtype == entropy.dtype == torch.float32
    assert action.abs().max() < 1 and torch.isfinite(log_prob).all()
