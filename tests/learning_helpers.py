"""Shared by the learning checks: one ``wmlab fit`` (on cartpole-swingup unless told) from a
small preset, with a fresh local store, and its eval curve read back from MLflow."""

import mlflow
import torch

from wmlab.cli import main
from wmlab.tracking import tracking_uri

#: every check evaluates without videos (5 episodes unless ``fit`` is told) and keeps no
#: replay in its checkpoints
COMMON = ["eval.video=false", "checkpoint.replay=false"]


def fit_cartpole(method: str, preset: str, *overrides: str):
    """Run ``wmlab fit`` and return the MLflow client and the run (the only one in the store)."""
    return fit(method, "cartpole-swingup", preset, *overrides)


def fit(method: str, env: str, preset: str, *overrides: str, episodes: int = 5):
    """:func:`fit_cartpole` on another env; ``episodes``: eval episodes."""
    argv = ["fit", "--method", method, "--env", env, "--preset", preset, *overrides, *COMMON,
            f"eval.episodes={episodes}"]
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


def random_episode_length(episodes: int, seed: int = 0) -> float:
    """Mean length of CartPole-v1 episodes of uniformly random actions."""
    import gymnasium

    env = gymnasium.make("CartPole-v1")
    gen = torch.Generator().manual_seed(seed)
    total = 0
    for i in range(episodes):
        env.reset(seed=seed * 1000 + i)
        done = False
        while not done:
            _, _, terminated, truncated, _ = env.step(int(torch.randint(2, (), generator=gen)))
            done = terminated or truncated
            total += 1
    return total / episodes
