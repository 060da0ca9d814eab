"""Reversibility-aware RL on CartPole (gym:CartPole-v1, one gymnasium step per policy step,
500-step episodes): RAC lets a uniformly random policy balance, and reward-free RAE teaches
PPO to balance from its penalty alone.

RAC (``test_rac_lets_a_random_policy_balance``): 10,000 env steps of uniformly random actions
(about 450 episodes), 1,500 psi updates on their pairs (window 200), 1,500 phi updates, then
the same random policy with the filter for 2,000 env steps. The run evaluates the random
policy without the filter at the end of the random stage (10 episodes at 10,000 env steps;
the psi and phi stages take no env step, so no other evaluation there) and with it at the
end (10 episodes), so both are measured in one run. A uniformly random policy lasts
about 22 +- 12 steps; the check asks for at least 5 times as long with the filter and at
least 150 steps, 10 standard deviations above a random policy's mean. psi has the
potential form (``cartpole-rac``): with psi an MLP on both observations side by side the
check was seed- and machine-dependent (seed 1: 493 steps on an AMD EPYC, 32.5 on an Intel
Xeon with the same code; seeds 2 and 3 there: 377 and 144), as that psi reads each step's
order off the dynamics and ranks the two actions by noise. With the potential form, on the
Intel Xeon, 10 episodes each: 22.0 without and 245.4 with the filter (seed 1); 290, 500,
500 and 456 with it on seeds 2-5. The check took 44 s of wall time on 2 cores shared with
another job.

RAE (``test_reward_free_rae_balances_longer_than_random``): PPO (4 envs, rollouts of 128
steps) with the env's reward replaced by the penalty alone, -max(0, psi(s_t, s_t+1) - 0.7),
psi trained every 500 env steps (10 updates of 128 pairs) on pairs of the latest rollout.
The pole falling is the transition psi finds irreversible, so postponing it postpones the
(discounted) penalty. psi is the potential form, sigmoid(f(s') - f(s)) with f squashed into
(-10, 10) (``cartpole-rae``): with psi an MLP on both observations side by side it read
each step's order off the dynamics (accuracy 1.0, 98% of the steps penalised) and PPO
learned to end episodes sooner (eval 14.6 at 10k env steps, 8.8 at 20k); with an unbounded
f the eval went 232.6 at 10k, 185.6 at 20k, then down to 22.2 at 50k as f stretched along
slow drifts until most steps were penalised (84%); with f in (-5, 5) the penalty hardly
fired (under 1% of the steps; eval 30.2 and 41.8 at 10k and 20k, stopped there). With f in (-10, 10), seed 1,
the eval (10 episodes, most likely action) went 45.4, 51.2, 60.3, 70.2, 59.5, 77.1 at 10k,
20k, ..., 60k env steps. The check asks for at least twice the random policy's episode
length (18.5 steps here, 50 episodes of gymnasium seeds 0-49) after 60,000 env steps: RAE
learns to balance from the penalty alone, but far from the 500 steps RAC reaches. The check
took 304 s of wall time on 2 cores shared with other jobs (load 7 to 10).
"""

import mlflow
import pytest

from learning_helpers import eval_curve, random_episode_length
from wmlab.cli import main
from wmlab.tracking import tracking_uri

COMMON = ["eval.video=false", "checkpoint.replay=false", "run.threads=1"]


def fit(preset: str, *overrides: str):
    argv = ["fit", "--method", "reversibility", "--env", "gym:CartPole-v1", "--preset", preset,
            *overrides, *COMMON]
    assert main(argv) == 0
    client = mlflow.MlflowClient(tracking_uri(None))
    run, = client.search_runs([client.get_experiment_by_name("wmlab").experiment_id])
    return client, run


@pytest.mark.slow
def test_rac_lets_a_random_policy_balance():
    client, run = fit("cartpole-rac", "method.random_steps=10000", "method.psi_updates=1500",
                      "method.phi_updates=1500", "run.steps=2000", "eval.every=100000",
                      "eval.episodes=10")
    curve = eval_curve(client, run)
    unfiltered = [v for step, v in curve if step == 10000]
    assert len(unfiltered) == 1 and curve[-1][0] == 12000
    without = unfiltered[0]  # 10 episodes of the random policy, no filter
    with_filter = curve[-1][1]
    print(f"episode length without the filter {without:.1f}, with it {with_filter:.1f}")
    assert without < 40, curve
    assert with_filter > max(150.0, 5 * without), curve
    shares = [m.value for m in client.get_metric_history(run.info.run_id, "phi/filtered_share")]
    assert shares and 0.0 < shares[-1] < 1.0  # the filter replaces some random actions, not all


@pytest.mark.slow
def test_reward_free_rae_balances_longer_than_random():
    random = random_episode_length(50)
    client, run = fit("cartpole-rae", "eval.episodes=10")
    curve = eval_curve(client, run)
    assert curve[-1][0] >= 60000  # (whole rollouts of 4 x 128 steps)
    print(f"random policy: {random:.1f} steps an episode")
    assert random < 30
    assert curve[-1][1] > 2 * random, curve
    # the reward it learned from is the penalty alone (never positive)
    rewards = [m.value for m in client.get_metric_history(run.info.run_id, "train/reward")]
    assert rewards and max(rewards) <= 0.0
