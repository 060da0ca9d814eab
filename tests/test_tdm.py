"""TDM and its HER baseline: targets, losses, the tau countdown, bad input, a CLI run.

Goal relabelling itself (later achieved goals of the same episode, tau and tau - 1) is the
core sampler's, tested in tests/test_stages.py
(``test_goal_relabelling_uses_later_achieved_goals_of_the_same_episode``,
``test_goal_relabelling_on_a_composite_observation``).
"""

from __future__ import annotations

import mlflow
import pytest
import torch
from tensordict import TensorDict

from wmlab.api import EnvSpecs, ObsSpec
from wmlab.cli import main
from wmlab.tracking import tracking_uri
from wmlab_plugins.tdm import TDM, TDMConfig, losses
from wmlab_plugins.tdm.networks import GoalQ

torch.set_num_threads(1)
G, D, A, B = 2, 3, 2, 6


def specs() -> EnvSpecs:
    return EnvSpecs(name="goal:test", obs_kind="state", obs_shape=(D,), action_shape=(A,),
                    action_low=-torch.ones(A), action_high=torch.ones(A), action_repeat=1,
                    episode_policy_steps=50,
                    extra_obs={"achieved_goal": ObsSpec((G,)), "desired_goal": ObsSpec((G,))})


def method(**cfg) -> TDM:
    return TDM(TDMConfig(hidden=16, **cfg), specs())


# --- losses --------------------------------------------------------------------------------


def test_goal_reward_per_dimension_and_euclidean():
    achieved, goal = torch.tensor([[1.0, -2.0]]), torch.tensor([[0.0, 2.0]])
    assert torch.equal(losses.goal_reward(achieved, goal, scale=10.0, vectorized=True),
                       torch.tensor([[-10.0, -40.0]]))
    scalar = losses.goal_reward(achieved, goal, scale=10.0, vectorized=False)
    assert scalar.shape == (1, 1) and float(scalar) == pytest.approx(-10 * 17 ** 0.5)
    assert torch.equal(losses.sparse_goal_reward(achieved, achieved + 0.01, tolerance=0.05),
                       torch.zeros(1, 1))
    assert torch.equal(losses.sparse_goal_reward(achieved, goal, tolerance=0.05), -torch.ones(1, 1))


def test_tdm_target_pays_the_distance_at_tau_0_and_bootstraps_after():
    reward = -torch.rand(4, G)
    next_q = -torch.rand(4, G)
    tau = torch.tensor([0, 0, 3, 5])
    terminated = torch.tensor([False, True, False, True])
    target = losses.tdm_target(reward, next_q, tau, terminated, discount=1.0)
    assert target.shape == (4, G)
    assert torch.equal(target[:2], reward[:2])  # tau = 0: the (vector) reward, no bootstrap
    assert torch.equal(target[2], next_q[2])  # tau > 0: Q' at tau - 1, nothing paid on the way
    assert torch.equal(target[3], torch.zeros(G))  # tau > 0, terminated: nothing to bootstrap
    assert torch.allclose(losses.tdm_target(reward, next_q, tau, terminated, discount=0.5)[2],
                          0.5 * next_q[2])


def test_her_target_bootstraps_every_step():
    reward, next_q = torch.tensor([[-1.0], [-2.0]]), torch.tensor([[-5.0], [-5.0]])
    target = losses.her_target(reward, next_q, torch.tensor([False, True]), discount=0.9)
    assert torch.allclose(target, torch.tensor([[-5.5], [-2.0]]))


def test_critic_and_actor_losses():
    q = torch.randn(B, G)
    assert float(losses.critic_loss(q, q.detach(), delta=1.0)) == 0.0
    big = losses.critic_loss(q, q.detach() + 10.0, delta=1.0)  # Huber: linear far from the target
    assert float(big) == pytest.approx(10.0 - 0.5)
    assert float(losses.actor_loss(-torch.ones(B, G))) == pytest.approx(G)  # minus summed Q


def test_vector_q_is_minus_the_distance_of_a_prediction_to_the_goal():
    net = GoalQ(in_dim=5, action_dim=A, goal_dim=G, hidden=8, layers=2, vectorized=True)
    x, a, g = torch.randn(B, 5), torch.randn(B, A), torch.randn(B, G)
    q = net(x, a, g)
    f = net.net(torch.cat([x, a], -1))
    assert q.shape == (B, G) and torch.equal(q, -(f - g).abs()) and (q <= 0).all()
    scalar = GoalQ(in_dim=5, action_dim=A, goal_dim=G, hidden=8, layers=2, vectorized=False)
    assert scalar(x, a, g).shape == (B, 1)


# --- the method's target -----------------------------------------------------------------


def next_rows():
    return TensorDict({"observation": torch.randn(B, D), "achieved_goal": torch.randn(B, G)}, [B])


def test_method_target_vector_valued_at_tau_0_and_above():
    m = method(max_tau=5, reward_scale=10.0)
    nxt, goal = next_rows(), torch.randn(B, G)
    tau = torch.tensor([0, 0, 0, 1, 2, 5])
    x_next = m.inputs(nxt, goal, (tau - 1).clamp(min=0))
    next_q = m.nets.q_target(x_next, m.nets.pi_target(x_next), goal)
    target = m.target(nxt["achieved_goal"], goal, next_q, tau, torch.zeros(B, dtype=torch.bool))
    assert target.shape == (B, G)
    assert torch.allclose(target[:3], -10.0 * (nxt["achieved_goal"][:3] - goal[:3]).abs())
    # tau > 0: the target nets at tau - 1 with the target policy's action (tau is an input)
    assert torch.allclose(target[3:], next_q[3:])
    other = m.nets.q_target(m.inputs(nxt, goal, tau), m.nets.pi_target(m.inputs(nxt, goal, tau)), goal)
    assert not torch.allclose(target[3:], other[3:])


def test_her_variant_is_a_scalar_q_without_horizon():
    m = method(variant="her", max_tau=5)
    assert m.max_tau == 0 and m.data_spec().sampler.horizon_max == 0
    nxt, goal = next_rows(), torch.randn(B, G)
    next_q = torch.full((B, 1), -3.0)
    target = m.target(nxt["achieved_goal"], goal, next_q, torch.zeros(B, dtype=torch.long),
                      torch.zeros(B, dtype=torch.bool))
    distance = torch.linalg.vector_norm(nxt["achieved_goal"] - goal, dim=-1, keepdim=True)
    assert torch.allclose(target, -10.0 * distance + 0.98 * -3.0)


def test_data_spec_relabels_with_tau_up_to_max_tau():
    spec = method(max_tau=7, updates_per_step=3.0).data_spec()
    assert spec.sampler.horizon_max == 7 and spec.sampler.future == 0.75
    assert spec.train_ratio == 3.0 and spec.batch_size == 128


# --- acting --------------------------------------------------------------------------------


def test_tau_counts_down_per_env_and_resets_on_episode_start():
    m = method(max_tau=2)
    seen = []
    m.act = lambda obs, tau, noise: (seen.append(tau.tolist()), torch.zeros(len(tau), A))[1]
    policy = m.make_policy(explore=False)
    assert set(policy.obs_keys) == {"observation", "achieved_goal", "desired_goal"}
    obs = TensorDict({k: torch.zeros(2, n) for k, n in
                      (("observation", D), ("achieved_goal", G), ("desired_goal", G))}, [2])
    starts = [[True, True], [False, False], [False, True], [False, False], [False, False]]
    for is_init in starts:
        policy.act_td(obs, torch.tensor(is_init))
    # env 0: 2, 1, 0, then max_tau again; env 1 restarts its countdown at its new episode
    assert seen == [[2, 2], [1, 1], [0, 2], [2, 1], [1, 0]]


def test_exploring_actions_stay_in_bounds_and_differ():
    m = method(explore_noise=0.5)
    obs = TensorDict({k: torch.randn(64, n) for k, n in
                      (("observation", D), ("achieved_goal", G), ("desired_goal", G))}, [64])
    tau = torch.zeros(64, dtype=torch.long)
    noisy, plain = m.act(obs, tau, noise=0.5), m.act(obs, tau, noise=0.0)
    assert (noisy.abs() <= 1).all() and not torch.allclose(noisy, plain)


# --- the CLI: bad input and a run of the HER baseline --------------------------------------


@pytest.mark.parametrize("argv, message", [
    (["--env", "cartpole-swingup"], "tdm needs a goal-conditioned env"),
    (["--env", "goal:reacher", "method.max_tau=-1"], "method.max_tau=-1 must be >= 0"),
    (["--env", "goal:reacher", "method.variant=ddpg"], "valid: tdm, her"),
])
def test_bad_input_is_one_line(argv, message, capsys):
    assert main(["fit", "--method", "tdm", "--preset", "debug", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err


def test_her_baseline_runs_and_logs_goal_metrics(capsys):
    argv = ["fit", "--method", "tdm", "--env", "goal:reacher", "--preset", "debug",
            "method.variant=her", "eval.video=false", "checkpoint.every=0", "run.threads=1"]
    assert main(argv) == 0
    client = mlflow.MlflowClient(tracking_uri(None))
    run, = client.search_runs([client.get_experiment_by_name("wmlab").experiment_id])
    metrics = run.data.metrics
    assert {"eval/final_distance", "eval/success_rate", "train/loss/critic"} <= set(metrics)
    assert 0 <= metrics["eval/success_rate"] <= 1 and metrics["eval/final_distance"] > 0
    capsys.readouterr()
    assert main(["eval", "--checkpoint", run.info.run_id, "--episodes", "2", "--no-video"]) == 0
    out = capsys.readouterr().out
    assert "over 2 episodes, final_distance" in out and "success_rate" in out, out
