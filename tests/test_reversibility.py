"""Reversibility-aware RL (plugins/wmlab_plugins/reversibility): pairs for the precedence
estimator, its loss, RAE's penalty, RAC's phi target and filter, PPO's pieces (GAE against a
hand computation, the clipped loss), bad input, the stages and a CLI run of each mode."""

import mlflow
import pytest
import torch

from wmlab.api import EnvSpecs, Stage
from wmlab.cli import main
from wmlab.errors import ConfigError
from wmlab.replay import Replay
from wmlab.returns import gae
from wmlab.samplers import Pairs
from wmlab.tracking import tracking_uri
from wmlab_plugins.reversibility import Reversibility, ReversibilityConfig
from wmlab_plugins.reversibility.losses import (filter_actions, phi_terms, ppo_terms, precedence_terms,
                                                rae_penalty, rollout_pairs, shaped_reward)
from wmlab_plugins.reversibility.method import CONTROL, PHI, PSI


def specs(**kw) -> EnvSpecs:
    base = dict(name="gym:CartPole-v1", obs_kind="state", obs_shape=(4,), action_shape=(2,),
                action_low=torch.zeros(2), action_high=torch.ones(2), action_repeat=1,
                episode_policy_steps=500, discrete=True)
    return EnvSpecs(**{**base, **kw})


# --- pairs and psi ----------------------------------------------------------------------

def test_rollout_pairs_share_an_episode_keep_the_window_and_label_the_order():
    torch.manual_seed(0)
    # env 0: one episode on all 40 steps; env 1: an episode starts at step 10 and at step 25
    is_init = torch.zeros(2, 40, dtype=torch.long)
    is_init[1, 10] = is_init[1, 25] = 1
    episode = is_init.cumsum(1)
    env, first, second, later, valid = rollout_pairs(episode, 4000, 2, 6)
    assert valid.eq(1).all()
    assert torch.equal(episode[env, first], episode[env, second])
    d = (second - first).abs()
    assert d.min() == 2 and d.max() == 6
    assert torch.equal(later, (second > first).float())
    assert abs(later.mean().item() - 0.5) < 0.03
    assert (env == 1).any() and ((first < 10) & (env == 1)).any()  # every episode is drawn from


def test_rollout_pairs_without_any_pair():
    episode = torch.arange(5)[None]  # a new episode every step: no two steps share one
    *_, valid = rollout_pairs(episode, 16, 1, 3)
    assert valid.eq(0).all()
    assert rollout_pairs(torch.zeros(1, 3, dtype=torch.long), 8, 3, 10) is None  # too short


def test_precedence_loss_and_accuracy_by_hand():
    logits = torch.tensor([2.0, -1.0, 0.5, -3.0])
    later = torch.tensor([1.0, 1.0, 0.0, 0.0])
    loss, accuracy = precedence_terms(logits, later)
    by_hand = -(torch.log(torch.sigmoid(torch.tensor(2.0))) + torch.log(torch.sigmoid(torch.tensor(-1.0)))
                + torch.log(1 - torch.sigmoid(torch.tensor(0.5))) + torch.log(1 - torch.sigmoid(torch.tensor(-3.0)))) / 4
    assert loss == pytest.approx(by_hand.item(), rel=1e-5) and accuracy == pytest.approx(0.5)
    loss, accuracy = precedence_terms(logits, later, weight=torch.tensor([1.0, 0.0, 0.0, 1.0]))
    assert accuracy == pytest.approx(1.0)  # the masked pairs do not count


def test_psi_learns_the_order_of_a_drifting_state_from_the_pairs_sampler():
    """psi's offline stage on the core's Pairs sampler: episodes whose state grows with time
    (an irreversible drift) are ordered right after a few hundred updates."""
    torch.manual_seed(0)
    replay = Replay(2000, "cpu")
    from tensordict import TensorDict
    for length in (50, 60, 70, 80):
        for t in range(length):
            x = torch.tensor([[t / 50.0, torch.randn(()).item(), 0.3, -0.2]])
            replay.write(TensorDict({"observation": x, "action": torch.tensor([[1.0, 0.0]]),
                                     "is_init": torch.tensor([[t == 0]]),
                                     ("next", "reward"): torch.zeros(1, 1),
                                     ("next", "done"): torch.tensor([[t == length - 1]]),
                                     ("next", "terminated"): torch.tensor([[t == length - 1]]),
                                     ("next", "truncated"): torch.tensor([[False]])}, batch_size=[1]),
                         torch.zeros(1, dtype=torch.long))
    method = Reversibility(ReversibilityConfig(psi_hidden=32), specs())
    opt = torch.optim.Adam(method.psi.parameters(), lr=0.01)
    method.manual_backward = lambda loss: loss.backward()
    sampler = Pairs(1, 200)
    for _ in range(300):
        batch = sampler.sample(replay, 128)
        first, second = (batch.get(k).get("observation") for k in ("first", "second"))
        method.psi_step(first, second, batch.get("later"), opt)
    batch = sampler.sample(replay, 1000)
    first, second = (batch.get(k).get("observation") for k in ("first", "second"))
    _, accuracy = precedence_terms(method.psi(first, second), batch.get("later"))
    assert accuracy > 0.95 and method.fitted[0] == 300


# --- RAE, RAC ----------------------------------------------------------------------------

def test_rae_penalty_on_hand_made_estimates():
    psi = torch.tensor([0.2, 0.7, 0.8, 1.0])
    penalty = rae_penalty(psi, threshold=0.7, weight=0.1)
    assert torch.allclose(penalty, torch.tensor([0.0, 0.0, 0.01, 0.03]))
    reward = torch.tensor([1.0, 1.0, 1.0, 1.0])
    assert torch.allclose(shaped_reward(reward, penalty, reward_free=False), torch.tensor([1.0, 1.0, 0.99, 0.97]))
    assert torch.allclose(shaped_reward(reward, penalty, reward_free=True), -penalty)
    assert rae_penalty(psi, 0.7, 0.0).eq(0).all()  # weight 0: no penalty


def test_filter_replaces_likely_irreversible_actions_by_the_most_reversible():
    phi = torch.tensor([[0.9, 0.1, 0.5],    # action 0 above beta -> 1
                        [0.9, 0.1, 0.5],    # action 2 below beta: kept
                        [0.8, 0.95, 0.75],  # action 1 above -> 2, the lowest (itself above beta)
                        [0.2, 0.3, 0.1]])   # nothing above beta
    actions, replaced = filter_actions(phi, torch.tensor([0, 2, 1, 1]), threshold=0.7)
    assert actions.tolist() == [1, 2, 2, 1] and replaced.tolist() == [True, False, True, False]


def test_phi_is_fitted_to_psi_of_the_action_taken():
    logits = torch.zeros(2, 3, requires_grad=True)
    action = torch.eye(3)[[0, 2]]
    loss = phi_terms(logits, action, torch.tensor([0.9, 0.1]))
    loss.backward()
    # BCE(0 logit, target): gradient sigmoid(0) - target, only at the taken actions
    assert torch.allclose(logits.grad, torch.tensor([[-0.4, 0, 0], [0, 0, 0.4]]) / 2)


# --- PPO ---------------------------------------------------------------------------------

def test_gae_against_a_hand_computation():
    gamma, lam = 0.9, 0.8
    r = torch.tensor([1.0, 0.0, 2.0, 1.0])
    v = torch.tensor([0.5, 0.4, 0.3, 0.2])
    nv = torch.tensor([0.4, 0.7, 0.6, 0.1])  # step 1's next obs is a final frame (truncated)
    term = torch.tensor([False, False, True, False])
    done = torch.tensor([False, True, True, False])
    adv = gae(r, v, nv, term, done, gamma, lam)
    d3 = 1.0 + gamma * 0.1 - 0.2  # bootstrapped: the rollout ends, the episode goes on
    d2 = 2.0 - 0.3  # terminated: no bootstrap
    d1 = 0.0 + gamma * 0.7 - 0.4  # truncated: bootstrapped from the final frame, trace cut
    d0 = 1.0 + gamma * 0.4 - 0.5
    a3, a2, a1 = d3, d2, d1
    a0 = d0 + gamma * lam * a1
    assert torch.allclose(adv, torch.tensor([a0, a1, a2, a3]))
    # lambda 1 within one episode (each next value the following step's value): the discounted
    # rewards plus the bootstrap, minus the value
    chained = torch.tensor([0.4, 0.3, 0.2, 0.1])
    adv = gae(r, v, chained, torch.zeros(4, dtype=torch.bool), torch.zeros(4, dtype=torch.bool), gamma, 1.0)
    ret0 = 1 + gamma * 0 + gamma ** 2 * 2 + gamma ** 3 * 1 + gamma ** 4 * 0.1
    assert adv[0].item() == pytest.approx(ret0 - 0.5, rel=1e-5)
    # batched over a second dimension, time first
    both = gae(torch.stack([r, r], 1), torch.stack([v, v], 1), torch.stack([nv, nv], 1),
               torch.stack([term, term], 1), torch.stack([done, done], 1), gamma, lam)
    assert torch.allclose(both[:, 1], gae(r, v, nv, term, done, gamma, lam))


def test_ppo_loss_clips_the_ratio():
    logits = torch.zeros(4, 2, requires_grad=True)
    action = torch.eye(2)[[0, 1, 0, 1]]
    adv = torch.tensor([1.0, -1.0, 1.0, -1.0])
    old = torch.log(torch.tensor([0.5, 0.5, 0.5, 0.5]))
    terms = ppo_terms(logits, torch.zeros(4), action, old, adv, torch.ones(4), clip=0.2)
    assert terms["policy"].item() == pytest.approx(0.0)  # ratio 1: -mean(advantage)
    assert terms["value"].item() == pytest.approx(1.0) and terms["entropy"].item() == pytest.approx(0.6931, 1e-3)
    assert terms["clip_fraction"] == 0
    # the old policy gave action 0 probability 0.25: ratio 2, clipped at 1.2 for a positive advantage
    old = torch.log(torch.tensor([0.25, 0.5, 0.25, 0.5]))
    terms = ppo_terms(logits, torch.zeros(4), action, old, adv, torch.ones(4), clip=0.2)
    assert terms["policy"].item() == pytest.approx(-(1.2 - 1.0 + 1.2 - 1.0) / 4)
    terms["policy"].backward()
    assert logits.grad[0].abs().sum() == 0  # clipped: no gradient
    assert logits.grad[1].abs().sum() > 0


# --- bad input, stages ---------------------------------------------------------------------

@pytest.mark.parametrize("threshold", [0.0, 1.0, -0.1, 1.5])
def test_threshold_outside_zero_one_is_rejected(threshold):
    with pytest.raises(ConfigError, match="threshold"):
        Reversibility(ReversibilityConfig(threshold=threshold), specs())


@pytest.mark.parametrize("kw, message", [
    (dict(obs_kind="pixels", obs_shape=(3, 64, 64)), "pairs state vectors"),
    (dict(discrete=False), "discrete actions"),
    (dict(episode_policy_steps=1), "no two observations"),
])
def test_envs_that_cannot_be_paired_are_rejected(kw, message):
    with pytest.raises(ConfigError, match=message):
        Reversibility(ReversibilityConfig(), specs(**kw))


def test_rac_without_a_trained_estimator_stops_at_the_stage_that_needs_it():
    method = Reversibility(ReversibilityConfig(), specs())
    with pytest.raises(ConfigError, match="precedence estimator"):
        method.on_stage_start(Stage(PHI, env_steps=0, updates=1))
    method.fitted[0] = 10
    with pytest.raises(ConfigError, match="trained phi"):
        method.on_stage_start(Stage(CONTROL))
    method.fitted[1] = 10
    method.on_stage_start(Stage(CONTROL))
    assert method.filtering


def test_stages_of_each_mode():
    rac = Reversibility(ReversibilityConfig(), specs())
    assert [s.name for s in rac.stages()] == ["random", PSI, PHI, CONTROL]
    assert [s.kind for s in rac.stages()] == ["collect", "offline", "offline", "train"]
    assert isinstance(rac.stages()[1].data.sampler, Pairs)
    rae = Reversibility(ReversibilityConfig(mode="rae"), specs())
    assert [(s.name, s.kind) for s in rae.stages()] == [(CONTROL, "train")] and rae.data_spec().on_policy
    rand = Reversibility(ReversibilityConfig(agent="random"), specs())
    assert rand.stages()[-1].kind == "collect" and rand.agent is None


def test_filter_acts_in_the_control_stage_only():
    torch.manual_seed(0)
    method = Reversibility(ReversibilityConfig(agent="random"), specs())
    with torch.no_grad():  # phi says action 0 is irreversible everywhere
        method.phi.net[-1].weight.zero_()
        method.phi.net[-1].bias.copy_(torch.tensor([5.0, -5.0]))
    obs = torch.randn(200, 4)
    assert (method.act(obs, sample=True) == 0).any()  # not filtering before the control stage
    method.fitted[:] = 1
    method.on_stage_start(Stage(CONTROL))
    assert (method.act(obs, sample=True, count=True) == 1).all()
    assert 0.3 < method.replaced / method.acted < 0.7 and method.acted == 200


# --- CLI ---------------------------------------------------------------------------------

def metrics_of_the_run() -> dict:
    client = mlflow.MlflowClient(tracking_uri(None))
    run, = client.search_runs([client.get_experiment_by_name("wmlab").experiment_id])
    return run.data.metrics


@pytest.mark.parametrize("env, mode", [("gridworld:turf", "rac"), ("gridworld:turf", "rae"),
                                       ("gym:CartPole-v1", "none"), ("sokoban:7x7-2", "rac")])
def test_fit_smoke(env, mode, capsys):
    assert main(["fit", "--method", "reversibility", "--env", env, "--preset", "debug",
                 f"method.mode={mode}", "run.threads=1", "eval.video=false", "tracking.log_every=1"]) == 0
    m = metrics_of_the_run()
    assert "eval/episode_return" in m
    if env.startswith("gridworld"):
        assert "eval/irreversible" in m and "eval/success_rate" in m
    if mode == "rac":
        assert {"psi/accuracy", "phi/filtered_share", "rac/filtered_share"} <= set(m)
    if mode == "rae":
        assert {"rae/penalty", "psi/accuracy", "train/loss/policy"} <= set(m)


def test_bad_threshold_is_one_line_exit_2(capsys):
    assert main(["fit", "--method", "reversibility", "--env", "gym:CartPole-v1", "--preset", "debug",
                 "method.threshold=1.2"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "method.threshold=1.2" in err


def test_potential_form_of_psi_is_antisymmetric():
    from wmlab_plugins.reversibility.networks import Precedence

    torch.manual_seed(0)
    psi = Precedence(4, 8, form="potential")
    a, b = torch.randn(5, 4), torch.randn(5, 4)
    assert torch.allclose(torch.sigmoid(psi(a, b)), 1 - torch.sigmoid(psi(b, a)))
    assert torch.allclose(psi(a, a), torch.zeros(5))  # a state against itself: no order
    with pytest.raises(ConfigError, match="psi_form"):
        Reversibility(ReversibilityConfig(psi_form="siamese"), specs())
    bounded = Precedence(4, 8, form="potential", bound=2.0)
    with torch.no_grad():
        bounded.net[-1].bias.fill_(100.0)
    assert bounded.potential(a).abs().max() <= 2.0  # f squashed into (-2, 2)
    with pytest.raises(ConfigError, match="psi_bound"):
        Reversibility(ReversibilityConfig(psi_bound=-1.0), specs())
