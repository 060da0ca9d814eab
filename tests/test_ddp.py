"""DDP on CPU (gloo): two ranks run `wmlab fit` end to end; rank 0 alone tracks, evaluates
and checkpoints, and the run resumes under DDP."""

from __future__ import annotations

import os
import subprocess
import sys

import mlflow
import pytest

from wmlab.tracking import tracking_uri

DDP = ["--method", "tdmpc", "--env", "cartpole-swingup", "--preset", "debug", "eval.video=false",
       "run.threads=1", "run.accelerator=cpu", "run.devices=2", "run.strategy=ddp", "run.steps=200",
       "eval.every=100", "checkpoint.every=100"]


def fit(folder, *args):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.run([sys.executable, "-m", "wmlab.cli", "fit", *args], cwd=folder, env=env,
                          capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_two_ranks_on_cpu_fit_and_resume(tmp_path):
    first = fit(tmp_path, *DDP)
    assert first.returncode == 0, first.stderr[-3000:]
    client = mlflow.MlflowClient(tracking_uri(None))
    run, = client.search_runs([client.get_experiment_by_name("wmlab").experiment_id])  # rank 0's only
    assert run.info.status == "FINISHED" and run.data.params["run.strategy"] == "ddp"

    def steps(key):
        return [m.step for m in client.get_metric_history(run.info.run_id, key)]

    assert steps("eval/episode_return") == [100, 200]
    assert (tmp_path / "checkpoints" / run.info.run_id / "step-0000000200").is_dir()
    again = fit(tmp_path, "--resume", run.info.run_id, "run.steps=400")
    assert again.returncode == 0, again.stderr[-3000:]
    assert client.get_run(run.info.run_id).info.status == "FINISHED"
    assert steps("eval/episode_return") == [100, 200, 300, 400]
    assert steps("collect/episode_return") == [100, 200, 300, 400]


@pytest.mark.parametrize("devices, ddp", [(2, True), (1, False)])
def test_auto_strategy_on_several_devices_is_ddp_that_allows_unused_parameters(devices, ddp):
    """``run.devices=2`` alone (strategy auto): Lightning chooses DDP, whose plain form
    refuses TD-MPC's first update (its policy loss leaves the world model out)."""
    from lightning.pytorch.strategies import DDPStrategy
    from omegaconf import OmegaConf

    from wmlab.loop import _strategy

    cfg = OmegaConf.create({"run": {"accelerator": "cpu", "devices": devices, "nodes": 1}})
    strategy = _strategy("auto", cfg)
    if ddp:
        assert isinstance(strategy, DDPStrategy) and strategy._ddp_kwargs["find_unused_parameters"] is True
    else:
        assert strategy == "auto"
