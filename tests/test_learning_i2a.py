"""I2A learns Sokoban: on generated sokoban:5x5-1 rooms with a 30-step limit it solves at
least 35% of 100 new levels after 80k env steps, its pretraining included, where a uniformly
random policy solves 22%.

The run is the ``cpu`` preset (32 envs, A2C, the one-hot room) with a short pretraining: a
standard model-free agent for 20k env steps, 20k env steps of its data for the env model,
1,000 env-model updates, then 40k env steps of the I2A agent's own; one evaluation at the
end, 100 sampled episodes over 10 eval envs (``eval/solved_rate``).

Why 35% means learning: a uniformly random policy solves 22% of these rooms within 30 steps
(2,000 levels; 32% within the paper's 120 steps, which is why the check shortens the limit:
a random walk in a 3x3 room stumbles on the solution given time, so under 120 steps the
margin a CPU budget can show is small). 35% is 13 points above it, about three standard
errors of a 100-episode rate. The model-free agent whose data the env model learns from
solves 16-19% at 20k and 40k env steps, below the random policy, so the margin comes from
what the I2A agent learnt.

Seen with this configuration (seeds 1-4), solved rate at 80k env steps, and with 2,000
env-model updates and evaluations every 20k (seeds 1, 2):

    1,000 updates, one evaluation:  seed 1 50%  seed 2 44%  seed 3 48%  seed 4 43%
    2,000 updates, every 20k:       seed 1: 18 19 37 48 48% (20k..100k)
                                    seed 2: 19 16 37 55 65%

Each run took about 6 minutes of wall time on one core of a 2-core machine running two
such runs at once.

The issue asked for the check on sokoban:7x7-2; there a random policy solves 4% and A2C
needs millions of env steps, far beyond CI's budget, so the check runs on the smallest
generated room (one box on a 3x3 floor), a real task of the same family and generator.
"""

import mlflow
import pytest

from wmlab.cli import main
from wmlab.envs.sokoban import random_policy
from wmlab.tracking import tracking_uri

THRESHOLD = 0.35
STEPS = 80_000
LIMIT = 30  # env steps per episode


@pytest.mark.slow
def test_i2a_solves_sokoban_5x5_well_above_random():
    random_rate, _ = random_policy("5x5-1", 2000, steps=LIMIT, seed=0)
    assert 0.15 < random_rate < THRESHOLD - 0.1, random_rate
    argv = ["fit", "--method", "i2a", "--env", "sokoban:5x5-1", "--preset", "cpu",
            f"env.episode_steps={LIMIT}", "method.standard_steps=20000",
            "method.model_data_steps=20000", "method.model_updates=1000",
            f"run.steps={STEPS - 40_000}", "run.seed=1", "eval.every=0", "eval.final=true",
            "eval.episodes=100", "eval.envs=10", "eval.video=false", "checkpoint.replay=false"]
    assert main(argv) == 0
    client = mlflow.MlflowClient(tracking_uri(None))
    run, = client.search_runs([client.get_experiment_by_name("wmlab").experiment_id])
    solved = [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, "eval/solved_rate")]
    accuracy = client.get_metric_history(run.info.run_id, "envmodel/frame_accuracy")
    print(f"random policy {random_rate:.3f}; I2A solved rate (env steps, rate): {solved}; "
          f"env model whole rooms right (held out): {accuracy[-1].value:.3f}")
    assert solved[-1][0] == STEPS
    assert solved[-1][1] >= THRESHOLD, solved
