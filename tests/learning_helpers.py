"""Shared by the learning checks: one ``wmlab fit`` (on cartpole-swingup unless told) from a
small preset, with a fresh local store, and its eval curve read back from MLflow."""

import mlflow

from wmlab.cli import main
from wmlab.tracking import tracking_uri

#: every check evaluates 5 episodes without videos and keeps no replay in its checkpoints
COMMON = ["eval.episodes=5", "eval.video=false", "checkpoint.replay=false"]


def fit_cartpole(method: str, preset: str, *overrides: str):
    """Run ``wmlab fit`` and return the MLflow client and the run (the only one in the store)."""
    return fit(method, "cartpole-swingup", preset, *overrides)


def fit(method: str, env: str, preset: str, *overrides: str):
    """:func:`fit_cartpole` on another env."""
    argv = ["fit", "--method", method, "--env", env, "--preset", preset, *overrides, *COMMON]
    assert main(argv) == 0
    client = mlflow.MlflowClient(tracking_uri(None))
    run, = client.search_runs([client.get_experiment_by_name("wmlab").experiment_id])
    return client, run


def eval_curve(client, run, metric: str = "episode_return") -> list[tuple[int, float]]:
    """``[(env steps, eval metric), ...]`` of ``run`` (the return by default), printed for the
    test log."""
    history = client.get_metric_history(run.info.run_id, f"eval/{metric}")
    curve = [(m.step, m.value) for m in history]
    print(f"learning curve (env steps, eval {metric}):", curve)
    return curve
