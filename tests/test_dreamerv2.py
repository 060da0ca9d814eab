"""DreamerV2: a subclass of Dreamer; KL balancing wired through; REINFORCE vs dynamics actor
gradients; slow critic updates; a training step; presets."""

import pytest
import torch
from test_dreamer import fit_one, make_specs, random_batch

from wmlab.config import compose
from wmlab.nets import CategoricalLatent, RSSMState
from wmlab_plugins.dreamer import Dreamer, DreamerConfig
from wmlab_plugins.dreamerv2 import DreamerV2, DreamerV2Config


def make_method(overrides=(), kind="state", presets=("debug",)) -> DreamerV2:
    torch.manual_seed(0)
    cfg = compose("dreamerv2", DreamerV2, "cartpole-swingup", presets=list(presets), overrides=list(overrides))
    return DreamerV2(cfg.method, make_specs(kind))


def test_is_a_dreamer_subclass_with_categorical_latents():
    assert issubclass(DreamerV2, Dreamer) and issubclass(DreamerV2Config, DreamerConfig)
    c = DreamerV2Config()
    assert (c.stoch, c.discrete, c.kl_balance, c.actor_grad, c.batch_size, c.train_ratio) == (32, 32, 0.8, "dynamics", 16, 0.2)
    m = make_method()
    assert isinstance(m.world_model.rssm.latent, CategoricalLatent)
    assert m.world_model.rssm.latent.size == m.cfg.stoch * m.cfg.discrete


def test_the_authors_cell_activation_and_actor_by_default_dreamers_on_request():
    from torch import nn

    from wmlab.errors import ConfigError
    from wmlab.nets import NormGRUCell, TanhNormalActor, TruncNormalActor

    m = make_method(kind="pixels")
    assert isinstance(m.world_model.rssm.cell, NormGRUCell) and isinstance(m.actor, TruncNormalActor)
    assert any(isinstance(x, nn.ELU) for x in m.world_model.encoder.modules())
    assert any(isinstance(x, nn.ELU) for x in m.world_model.decoder.modules())
    m = make_method(["method.rssm_cell=gru", "method.actor_dist=tanh_normal", "method.cnn_act=relu"], kind="pixels")
    assert isinstance(m.world_model.rssm.cell, nn.GRUCell) and isinstance(m.actor, TanhNormalActor)
    assert not any(isinstance(x, nn.ELU) for x in m.world_model.encoder.modules())
    with pytest.raises(ConfigError, match="method.actor_dist='beta'; valid: tanh_normal, trunc_normal"):
        make_method(["method.actor_dist=beta"])


def test_atari_preset():
    cfg = compose("dreamerv2", DreamerV2, "cartpole-swingup", presets=["atari"])
    m = cfg.method
    assert (m.actor_grad, m.kl_scale, m.free_nats, m.discount, m.actor_ent, m.clip_rewards) == (
        "reinforce", 0.1, 0.0, 0.999, 1e-3, "tanh")
    assert m.continue_head and cfg.env.action_repeat == 4 and cfg.env.obs == "pixels"


@pytest.mark.parametrize("balance", [0.5, 0.8])
def test_kl_balance_is_wired_through(balance):
    """The prior gets ``balance`` and the posterior ``1 - balance`` of the plain KL's gradient
    (0.5: the plain KL itself, value and gradient)."""
    m = make_method([f"method.kl_balance={balance}", "method.free_nats=0.0"])
    size = m.world_model.rssm.latent.param_size
    post_p, prior_p = torch.randn(6, size, requires_grad=True), torch.randn(6, size, requires_grad=True)
    state = lambda p: RSSMState(torch.zeros(6, 1), torch.zeros(6, 1), p)  # noqa: E731
    loss, kl = m.kl_loss(state(post_p), state(prior_p))
    g_post, g_prior = torch.autograd.grad(loss, [post_p, prior_p])
    plain = m.world_model.rssm.latent.kl(post_p, prior_p).mean()
    p_post, p_prior = torch.autograd.grad(plain, [post_p, prior_p])
    assert torch.allclose(loss, plain) and torch.allclose(kl.mean(), plain)
    scale = 2.0 if balance == 0.5 else 1.0  # 0.5 is special-cased to the plain KL (full gradient)
    assert torch.allclose(g_prior, scale * balance * p_prior, atol=1e-6)
    assert torch.allclose(g_post, scale * (1 - balance) * p_post, atol=1e-6)


def actor_loss_and_dynamics_grads(actor_grad: str):
    m = make_method([f"method.actor_grad={actor_grad}"])
    _, posts = m.world_model_loss(m.unpack(random_batch(m)))
    traj = m.imagine(posts, m.actor)  # not frozen: the dynamics' parameters track gradients
    returns, weights = m.value_target(traj, m.value, m.imagined_reward(traj))
    loss = m.actor_objective(traj, m.actor, returns, weights)["actor"]
    params = list(m.world_model.rssm.parameters()) + list(m.world_model.reward_head.parameters())
    grads = torch.autograd.grad(loss, params + list(m.actor.parameters()), allow_unused=True)
    return loss, grads[:len(params)], grads[len(params):]


def test_reinforce_sends_no_gradient_through_the_dynamics():
    loss, dyn, actor = actor_loss_and_dynamics_grads("reinforce")
    assert torch.isfinite(loss)
    assert all(g is None or not g.any() for g in dyn)
    assert any(g is not None and g.abs().sum() > 0 for g in actor)


@pytest.mark.parametrize("actor_grad", ["dynamics", "both"])
def test_dynamics_gradient_flows_through_the_dynamics(actor_grad):
    loss, dyn, actor = actor_loss_and_dynamics_grads(actor_grad)
    assert torch.isfinite(loss)
    assert any(g is not None and g.abs().sum() > 0 for g in dyn)
    assert any(g is not None and g.abs().sum() > 0 for g in actor)


def test_slow_critic_updates_only_every_n_updates():
    m = make_method(["method.slow_target_update=3", "method.slow_target_fraction=0.5"])
    params = lambda mod: torch.cat([p.flatten() for p in mod.parameters()])  # noqa: E731
    for n in range(7):
        m.progress.updates = n
        with torch.no_grad():
            for p in m.value.parameters():
                p.add_(1.0)
        before, value = params(m.slow_value), params(m.value)
        m.update_slow_target()
        after = params(m.slow_value)
        if n == 0:  # the first update copies
            assert torch.equal(after, value)
        elif n % 3 == 0:
            assert torch.allclose(after, 0.5 * (before + value))
        else:
            assert torch.equal(after, before)


def test_returns_use_the_slow_critic():
    m = make_method()
    assert m.target_critic(m.value) is m.slow_value
    assert make_method(["method.slow_target_update=0"]).target_critic(m.value) is m.value


@pytest.mark.parametrize("kind, overrides", [
    ("state", []),
    ("pixels", ["method.actor_grad=both", "method.continue_head=true", "method.clip_rewards=tanh"]),
])
def test_training_step_gives_finite_losses(kind, overrides):
    m = make_method(overrides, kind=kind)
    before = {k: v.clone() for k, v in m.state_dict().items()}
    metrics = fit_one(m, [random_batch(m, terminated=True)]).callback_metrics
    for term in ("model", "obs", "reward", "kl", "actor", "actor_entropy", "value"):
        assert torch.isfinite(metrics[f"train/loss/{term}"]), term
    changed = {k.split(".")[0] for k, v in m.state_dict().items() if not torch.equal(v, before[k])}
    assert {"world_model", "actor", "value", "slow_value"} <= changed  # update 0 copies the critic


@pytest.mark.parametrize("actor_grad", ["reinforce", "both"])
def test_discrete_actions_with_reinforce(actor_grad):
    """The Atari setting: one-hot actions, REINFORCE with the exact categorical entropy."""
    torch.manual_seed(0)
    cfg = compose("dreamerv2", DreamerV2, "cartpole-swingup", presets=["debug"],
                  overrides=[f"method.actor_grad={actor_grad}", "method.continue_head=true"])
    m = DreamerV2(cfg.method, make_specs("pixels", discrete=True, action_dim=4))
    trainer = fit_one(m, [random_batch(m, terminated=True)] * 2)
    for term in ("actor", "actor_entropy", "value", "continue"):
        assert torch.isfinite(trainer.callback_metrics[f"train/loss/{term}"]), term
    assert 0 < trainer.callback_metrics["train/loss/actor_entropy"] <= torch.log(torch.tensor(4.0)) + 1e-5


def test_replay_windows_from_finished_episodes_only_on_request():
    from wmlab.samplers import Windows

    assert make_method().data_spec().sampler is None  # Dreamer's windows, running episodes too
    spec = make_method(["method.ongoing=false"]).data_spec()
    assert isinstance(spec.sampler, Windows) and spec.sampler.finished_only and not spec.sampler.prioritize_ends
    spec = make_method(["method.prioritize_ends=true"]).data_spec()
    assert spec.sampler.prioritize_ends and not spec.sampler.finished_only
