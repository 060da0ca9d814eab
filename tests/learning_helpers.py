"""Shared by the learning checks: one ``wmlab fit`` on cartpole-swingup from a small preset,
with a fresh local store, and its eval curve read back from MLflow."""

import mlflow

from wmlab.cli import main
from wmlab.tracking import tracking_uri

#: every check evaluates 5 episodes without videos and keeps no replay in its checkpoints
COMMON = ["eval.episodes=5", "eval.video=false", "checkpoint.replay=false"]


def fit_cartpole(method: str, preset: str, *overrides: str):
    """Run ``wmlab fit`` and return the MLflow client and the run (the only one in the store)."""
    argv = ["fit", "--method", method, "--env", "cartpole-swingup", "--preset", preset, *overrides, *COMMON]
    assert main(argv) == 0
    client = mlflow.MlflowClient(tracking_uri(None))
    run, = client.search_runs([client.get_experiment_by_name("wmlab").experiment_id])
    return client, run


def eval_curve(client, run) -> list[tuple[int, float]]:
    """``[(env steps, eval return), ...]`` of ``run``, printed for the test log."""
    curve = [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, "eval/episode_return")]
    print("learning curve (env steps, eval return):", curve)
    return curve
