"""Dreamer: a training step on random batches, which losses reach which modules, the policy."""

import pytest
import torch
from sequence_helpers import fake_specs as make_specs
from sequence_helpers import fit_once as fit_one
from sequence_helpers import random_sequence_batch
from tensordict import TensorDict

from wmlab import keys
from wmlab.config import compose
from wmlab_plugins.dreamer import Dreamer


def make_method(kind="state", overrides=(), **spec_kw) -> Dreamer:
    torch.manual_seed(0)
    cfg = compose("dreamer", Dreamer, "cartpole-swingup", presets=["debug"], overrides=list(overrides))
    return Dreamer(cfg.method, make_specs(kind, **spec_kw))


def random_batch(method: Dreamer, B=None, T=None, terminated=False) -> TensorDict:
    """A replay-shaped ``[B, T]`` batch for ``method`` (its batch size and length by default)."""
    c = method.cfg
    return random_sequence_batch(method.specs, B or c.batch_size, T or c.sequence_length, terminated=terminated)


@pytest.mark.parametrize("kind", ["state", "pixels"])
def test_training_step_updates_every_module_with_finite_losses(kind):
    method = make_method(kind, ["method.continue_head=true"])
    before = {k: v.clone() for k, v in method.state_dict().items()}
    trainer = fit_one(method, [random_batch(method, terminated=True)])
    metrics = trainer.callback_metrics
    for term in ("model", "obs", "reward", "kl", "continue", "actor", "value"):
        assert torch.isfinite(metrics[f"train/loss/{term}"]), term
    for part in ("encoder", "rssm", "decoder", "reward", "continue", "actor", "value"):
        assert torch.isfinite(metrics[f"train/grad_norm/{part}"]), part
    assert torch.isfinite(metrics["train/imagined_return"])
    changed = {k.split(".")[0] + "." + k.split(".")[1] for k, v in method.state_dict().items()
               if not torch.equal(v, before[k])}
    assert {"world_model.encoder", "world_model.rssm", "world_model.decoder", "world_model.reward_head",
            "world_model.cont_head", "actor.net", "value.net"} <= changed


def record_gradients(method: Dreamer):
    """Replace the optimizer step with one that records which top-level parts got gradients."""
    seen = {}

    def optimize(opt, loss, parts, **backward):
        method.zero_grad(set_to_none=True)
        loss.backward(**backward)
        got = {n for n, p in method.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
        seen[next(iter(parts))] = {".".join(n.split(".")[:2]) for n in got}
        return {}

    method.optimize = optimize
    return seen


@pytest.mark.parametrize("entropy, shared", [(0.0, False), (0.1, False), (0.1, True)])
def test_each_loss_reaches_its_modules_and_only_those(entropy, shared):
    method = make_method("state", ["method.continue_head=true", f"method.actor_ent={entropy}",
                                   f"method.shared_critic={str(shared).lower()}"])
    seen = record_gradients(method)
    data = method.unpack(random_batch(method, terminated=True))
    terms, posts = method.world_model_loss(data)
    method.optimize(None, terms["model"], method.world_model.parts())
    method.train_behaviour(posts, method.actor, method.value, None, None)
    world = {"world_model.encoder", "world_model.rssm", "world_model.decoder", "world_model.reward_head",
             "world_model.cont_head"}
    assert seen["encoder"] == world
    assert seen["actor"] == {"actor.net"}  # not the world model, not the value model
    assert seen["value"] == {"value.net"}
    # the world model and value are trainable again after imagination
    assert all(p.requires_grad for p in method.parameters())


class OwnValueTarget(Dreamer):
    """A subclass with its own ``value_target``: the critic is frozen for the actor's loss
    and run again for its own (the path before the two losses shared its forward pass)."""

    def value_target(self, traj, value, reward):
        return super().value_target(traj, value, reward)


def test_the_shared_critic_pass_gives_the_gradients_of_two_passes():
    grads = {}
    for cls in (Dreamer, OwnValueTarget):
        method = make_method("state", ["method.continue_head=true", "method.shared_critic=true"])
        method.__class__ = cls
        seen = {}

        def optimize(opt, loss, parts, **backward):
            method.zero_grad(set_to_none=True)
            loss.backward(**backward)
            seen[next(iter(parts))] = {n: p.grad.clone() for n, p in method.named_parameters()
                                       if p.grad is not None}
            return {}

        method.optimize = optimize
        data = method.unpack(random_batch(method, terminated=True))
        _, posts = method.world_model_loss(data)
        torch.manual_seed(3)
        method.train_behaviour(posts.detach(), method.actor, method.value, None, None)
        grads[cls] = seen
    for part, prefix in (("actor", "actor."), ("value", "value.")):
        shared, twice = grads[Dreamer][part], grads[OwnValueTarget][part]
        assert set(shared) == set(twice) and all(n.startswith(prefix) for n in shared)
        for name in shared:
            torch.testing.assert_close(shared[name], twice[name], rtol=1e-4, atol=1e-6)
    assert all(p.requires_grad for p in method.parameters())


def test_actor_gradient_flows_through_the_dynamics():
    """Value gradients through imagined states: without the dynamics path the actor's
    gradient would be zero (its input features are detached)."""
    method = make_method("state")
    data = method.unpack(random_batch(method))
    _, posts = method.world_model_loss(data)
    traj = method.imagine(posts.detach(), method.actor)
    returns, weights = method.value_target(traj, method.value, method.imagined_reward(traj))
    loss = method.actor_objective(traj, method.actor, returns, weights)["actor"]
    loss.backward()
    assert sum(p.grad.abs().sum() for p in method.actor.parameters()) > 0


def test_actor_loss_terms():
    from wmlab_plugins.dreamer import losses

    returns, weights = torch.tensor([[[2.0]], [[4.0]]]), torch.tensor([[[1.0]], [[0.5]]])
    assert losses.actor_loss(returns, weights)["actor"].item() == pytest.approx(-(2 + 2) / 2)
    entropy = torch.tensor([[1.0], [3.0]])
    terms = losses.actor_loss(returns, weights, entropy=entropy, ent_scale=0.1)
    assert terms["actor"].item() == pytest.approx(-(2.1 + 0.5 * 4.3) / 2)
    assert terms["actor_entropy"].item() == pytest.approx(2.0)
    assert "actor_entropy" not in losses.actor_loss(returns, weights, entropy=entropy, ent_scale=0.0)


def test_unpack_lines_up_time():
    method = make_method("state")
    batch = random_batch(method, B=2, T=4)
    batch[keys.IS_INIT][1, 2] = True
    data = method.unpack(batch)
    action = batch[keys.ACTION].transpose(0, 1)
    torch.testing.assert_close(data.prev_action[1:], action[:-1])  # a_{t-1} leads to o_t
    assert torch.all(data.prev_action[0] == 0)
    torch.testing.assert_close(data.reward, batch[keys.REWARD].transpose(0, 1))
    assert data.is_first[0].all() and data.is_first[2, 1] and data.is_first.sum() == 3
    assert data.obs.shape == (4, 2, 5)


def test_action_bounds_are_mapped_both_ways():
    method = make_method("state", low=0.0, high=2.0)
    a = torch.tensor([[-1.0, 1.0], [0.0, 0.5]])
    env = method.to_env_action(a)
    torch.testing.assert_close(env, torch.tensor([[0.0, 2.0], [1.0, 1.5]]))
    torch.testing.assert_close(method.from_env_action(env), a)


def act(policy, obs, is_init):
    td = TensorDict({keys.OBSERVATION: obs, keys.IS_INIT: is_init}, batch_size=[obs.shape[0]])
    return policy(td)[keys.ACTION]


@pytest.mark.parametrize("explore", [True, False])
def test_policy_keeps_state_and_resets_at_is_init(explore):
    method = make_method("state")
    obs1, obs2 = torch.randn(3, 5), torch.randn(3, 5)
    reset = torch.tensor([True, False, True])
    policy = method.make_policy(explore=explore)
    act(policy, obs1, torch.ones(3, dtype=torch.bool))
    torch.manual_seed(5)
    continued = act(policy, obs2, reset)
    torch.manual_seed(5)
    fresh = act(method.make_policy(explore=explore), obs2, torch.ones(3, dtype=torch.bool))
    assert continued.shape == (3, 2) and torch.all(continued.abs() <= 1)
    torch.testing.assert_close(continued[reset], fresh[reset])  # restarted entries
    assert not torch.allclose(continued[1], fresh[1])  # the entry that kept its history


def test_eval_videos():
    method = make_method("pixels")
    video = method.eval_videos(random_batch(method, B=3, T=8))["openloop"]
    assert video.dtype == torch.uint8 and video.shape == (8, 3 * 64, 128, 3)
    assert make_method("state").eval_videos(random_batch(make_method("state"))) == {}


def test_paper_defaults():
    c = Dreamer.Config()
    assert (c.deter, c.stoch, c.hidden, c.units, c.cnn_depth) == (200, 30, 200, 400, 32)
    assert (c.batch_size, c.sequence_length, c.horizon) == (50, 50, 15)
    assert (c.model_lr, c.actor_lr, c.value_lr, c.grad_clip) == (6e-4, 8e-5, 8e-5, 100.0)
    assert (c.discount, c.return_lambda, c.free_nats, c.kl_scale, c.expl_amount) == (0.99, 0.95, 3.0, 1.0, 0.3)
    assert c.prefill == 5000 and c.train_ratio == pytest.approx(100 / (1000 / 2))
    cfg = compose("dreamer", Dreamer, "walker-walk")
    assert cfg.env.obs == "pixels" and cfg.env.action_repeat == 2


def test_one_hot_actor_verbs():
    from wmlab.nets import OneHotActor

    torch.manual_seed(0)
    actor = OneHotActor(4, 3, hidden=8, layers=1)
    feat = torch.randn(5, 4)
    action, log_prob = actor.sample(feat)
    assert action.shape == (5, 3) and torch.equal(action.detach().sum(-1), torch.ones(5))
    assert set(action.detach().unique().tolist()) <= {0.0, 1.0}
    torch.testing.assert_close(actor.log_prob(feat, action.detach()), log_prob)
    probs = actor(feat).exp()
    torch.testing.assert_close(actor.entropy(feat), -(probs * probs.log()).sum(-1))
    assert torch.equal(actor.mode(feat).argmax(-1), probs.argmax(-1))
    # straight-through: a loss on the one-hot sample sends a gradient into the actor
    (action * torch.tensor([1.0, 2.0, 3.0])).sum().backward()
    assert sum(p.grad.abs().sum() for p in actor.parameters()) > 0
    # a uniform actor has entropy log 3
    torch.nn.init.zeros_(actor.net[-1].weight), torch.nn.init.zeros_(actor.net[-1].bias)
    torch.testing.assert_close(actor.entropy(feat), torch.full((5,), float(torch.log(torch.tensor(3.0)))))


def test_discrete_actions_train_and_act_one_hot():
    from wmlab.nets import OneHotActor

    method = make_method("state", ["method.actor_ent=0.01"], discrete=True, action_dim=3)
    assert isinstance(method.actor, OneHotActor)
    trainer = fit_one(method, [random_batch(method)])
    assert torch.isfinite(trainer.callback_metrics["train/loss/actor"])
    assert torch.isfinite(trainer.callback_metrics["train/grad_norm/actor"])
    obs, first = torch.randn(64, 5), torch.ones(64, dtype=torch.bool)
    for explore in (True, False):
        a = act(method.make_policy(explore=explore), obs, first)
        assert a.shape == (64, 3) and torch.equal(a.sum(-1), torch.ones(64))
        assert set(a.unique().tolist()) <= {0.0, 1.0}
    torch.manual_seed(3)  # the posterior is sampled: the same seed, the same greedy actions
    greedy = act(method.make_policy(explore=False), obs, first)
    torch.manual_seed(3)
    torch.testing.assert_close(act(method.make_policy(explore=False), obs, first), greedy)
    # exploring with expl_amount 1 picks uniformly at random, whatever the actor prefers
    method = make_method("state", ["method.expl_amount=1.0"], discrete=True, action_dim=3)
    torch.manual_seed(1)
    counts = act(method.make_policy(explore=True), obs.repeat(50, 1), first.repeat(50)).sum(0)
    assert counts.min() > 0.25 * 3200 / 3


def test_discrete_actor_gradient_flows_through_the_dynamics():
    method = make_method("state", discrete=True, action_dim=3)
    _, posts = method.world_model_loss(method.unpack(random_batch(method)))
    traj = method.imagine(posts.detach(), method.actor)
    returns, weights = method.value_target(traj, method.value, method.imagined_reward(traj))
    method.actor_objective(traj, method.actor, returns, weights)["actor"].backward()
    assert sum(p.grad.abs().sum() for p in method.actor.parameters()) > 0


def test_terminal_start_states_earn_nothing_and_weigh_nothing_after():
    """Row 3 is the final row of an episode that terminated after row 2 (not an episode start):
    imagination from it gets zero rewards and discounts, so its return is 0 and its later
    steps weigh 0; every other start is untouched. Row 5 starts a new episode: not terminal."""
    from wmlab.nets import imagine_from
    from wmlab.nets.world_model import Sequences
    from wmlab_plugins.dreamer.method import start_alive

    T, B = 6, 2
    cont = torch.ones(T, B, 1)
    cont[2, 0] = 0.0  # row 2 -> row 3 terminated (env 0)
    cont[4, 1] = 0.0  # row 4 -> row 5 terminated, but row 5 is an episode start (env 1)
    is_first = torch.zeros(T, B, dtype=torch.bool)
    is_first[0] = True
    is_first[5, 1] = True
    data = Sequences(obs=torch.zeros(T, B, 1), prev_action=torch.zeros(T, B, 1), reward=torch.zeros(T, B, 1),
                     cont=cont, is_first=is_first)
    alive = start_alive(data)
    expected = torch.ones(T, B, 1)
    expected[3, 0] = 0.0
    assert torch.equal(alive, expected)

    m = make_method(overrides=["method.continue_head=true"])
    posts, _ = m.world_model.rssm.observe(torch.randn(T, B, m.world_model.encoder.out_dim),
                                          torch.zeros(T, B, m.specs.action_dim), is_first)
    traj = imagine_from(m.world_model.rssm, lambda s: m.actor.sample(m.world_model.rssm.get_feat(s))[0],
                        posts, m.cfg.horizon)
    reward = torch.ones(m.cfg.horizon, T * B, 1)
    plain, _ = m.value_target(traj, m.value, reward)
    returns, weights = m.value_target(traj._replace(alive=alive.reshape(-1, 1)), m.value, reward)
    dead = 3 * B + 0  # row 3, env 0 in the flattened [T * B]
    assert torch.equal(returns[:, dead], torch.zeros_like(returns[:, dead]))
    assert weights[0, dead] == 1 and (weights[1:, dead] == 0).all()
    others = [i for i in range(T * B) if i != dead]
    assert torch.allclose(returns[:, others], plain[:, others]) and (plain[:, dead] > 0).all()


def test_terminating_families_get_the_continue_head_by_default():
    assert compose("dreamer", Dreamer, "atari:pong").method.continue_head
    assert compose("dreamer", Dreamer, "gym:CartPole-v1").method.continue_head
    assert not compose("dreamer", Dreamer, "cartpole-swingup").method.continue_head
