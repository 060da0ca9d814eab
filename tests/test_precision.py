"""Mixed ``run.precision``: acting runs under the same autocast as the updates."""

import mlflow
import pytest
import torch
from tensordict import TensorDict

from wmlab import keys, loop
from wmlab.api import Policy
from wmlab.cli import main
from wmlab.tracking import tracking_uri
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


def test_a_dreamerv2_run_in_bf16_mixed_acts_and_learns_in_bf16(capsys):
    """DreamerV2's truncated-Normal actor samples through the inverse normal CDF, which has
    no bfloat16 kernel: its statistics are float32, so a bf16-mixed run goes through."""
    argv = ["fit", "--method", "dreamerv2", "--env", "cartpole-swingup", "--preset", "debug",
            "run.precision=bf16-mixed", "eval.video=false"]
    assert main(argv) == 0
    client = mlflow.MlflowClient(tracking_uri(None))
    run, = client.search_runs([client.get_experiment_by_name("wmlab").experiment_id])
    assert run.data.params["run.precision"] == "bf16-mixed"
    assert "eval/episode_return" in run.data.metrics
