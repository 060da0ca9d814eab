"""RSSM: shapes, resets, KL balancing and free nats, categorical straight-through; heads; conv."""

import pytest
import torch
from torch import nn

from wmlab.nets.conv import PointDeconv
from wmlab.nets.heads import OneHotActor, record_actor_outputs
from wmlab.nets.sampling import categorical_index
from wmlab.nets import (
    RSSM,
    ConvDecoder,
    ConvEncoder,
    RSSMState,
    NormGRUCell,
    TanhNormalActor,
    TruncNormalActor,
    gaussian_nll,
    imagine_from,
)

T, B, E, A = 6, 3, 5, 2


def make(latent="gaussian", **kw):
    torch.manual_seed(0)
    return RSSM(embed_dim=E, action_dim=A, deter=8, stoch=4, hidden=8, latent=latent, groups=3,
                classes=4, **kw)


def sequence():
    is_first = torch.zeros(T, B, dtype=torch.bool)
    is_first[0] = True
    return torch.randn(T, B, E), torch.rand(T, B, A) * 2 - 1, is_first


@pytest.mark.parametrize("latent, stoch", [("gaussian", 4), ("categorical", 12)])
def test_shapes(latent, stoch):
    rssm = make(latent)
    posts, priors = rssm.observe(*sequence())
    params = 8 if latent == "gaussian" else 12
    for s in (posts, priors):
        assert s.deter.shape == (T, B, 8) and s.stoch.shape == (T, B, stoch)
        assert s.params.shape == (T, B, params)
    assert rssm.get_feat(posts).shape == (T, B, rssm.feat_dim) and rssm.feat_dim == 8 + stoch
    torch.testing.assert_close(posts.deter, priors.deter)  # the posterior keeps the prior's h
    states, actions = rssm.imagine(lambda s: torch.zeros(s.deter.shape[0], A), posts.select(-1), 4)
    assert states.deter.shape == (5, B, 8) and actions.shape == (4, B, A)
    assert rssm.open_loop(posts.select(-1), torch.zeros(4, B, A)).stoch.shape == (4, B, stoch)


def test_observe_resets_where_is_first():
    """A sequence with an episode start at t=3 gives, from t=3 on, exactly what the same
    steps give when observed as a fresh sequence (sampling off: modes)."""
    rssm = make()
    embed, action, is_first = sequence()
    is_first[3] = True
    state, outs = rssm.initial(B), []
    for t in range(T):
        state, _ = rssm.obs_step(state, action[t], embed[t], is_first[t], sample=False)
        outs.append(state)
    fresh, _ = rssm.obs_step(rssm.initial(B), torch.zeros(B, A), embed[3], sample=False)
    torch.testing.assert_close(outs[3].deter, fresh.deter)
    torch.testing.assert_close(outs[3].params, fresh.params)
    # the previous action does not leak across the reset either
    other, _ = rssm.obs_step(outs[2], action[3] + 1.0, embed[3], is_first[3], sample=False)
    torch.testing.assert_close(other.params, fresh.params)
    # without the reset the state differs
    kept, _ = rssm.obs_step(outs[2], action[3], embed[3], sample=False)
    assert not torch.allclose(kept.deter, fresh.deter)


def test_observe_uses_is_first_per_entry():
    """Only the entries flagged restart: others keep their history."""
    rssm = make()
    embed, action, _ = sequence()
    state = rssm.initial(B)
    is_first = torch.tensor([False, True, False])
    reset, _ = rssm.obs_step(state.map(lambda x: x + 1.0), action[0], embed[0], is_first, sample=False)
    kept, _ = rssm.obs_step(state.map(lambda x: x + 1.0), action[0], embed[0], sample=False)
    fresh, _ = rssm.obs_step(state, torch.zeros(B, A), embed[0], sample=False)
    torch.testing.assert_close(reset.deter[1], fresh.deter[1])
    torch.testing.assert_close(reset.deter[[0, 2]], kept.deter[[0, 2]])


class StepwiseRSSM(RSSM):
    """An RSSM whose subclass changes a verb: ``observe`` then calls the verbs step by step."""

    def obs_step(self, *args, **kwargs):
        return super().obs_step(*args, **kwargs)


@pytest.mark.parametrize("latent", ["gaussian", "categorical"])
def test_observe_runs_the_prior_head_once_with_the_values_and_gradients_of_the_steps(latent, monkeypatch):
    """``observe`` runs the prior's head over the whole sequence after the loop; with modes
    for samples (so both draw nothing) it gives the step-by-step verbs' states and
    gradients, resets mid-sequence included. A subclass that changes a verb gets the verbs."""
    fast, slow = make(latent), StepwiseRSSM(embed_dim=E, action_dim=A, deter=8, stoch=4, hidden=8,
                                            latent=latent, groups=3, classes=4)
    slow.load_state_dict(fast.state_dict())
    assert not fast._stepwise_observe() and slow._stepwise_observe()
    embed, action, is_first = sequence()
    is_first[3, 1] = True
    outs = []
    for rssm in (fast, slow):
        monkeypatch.setattr(rssm.latent, "sample", rssm.latent.mode)
        calls = []
        hook = rssm.img_out.register_forward_hook(lambda m, i, o: calls.append(o.shape))
        posts, priors = rssm.observe(embed, action, is_first)
        hook.remove()
        loss = rssm.kl_loss(posts, priors, balance=0.8)[0] + rssm.get_feat(posts).pow(2).mean()
        outs.append((posts, priors, torch.autograd.grad(loss, list(rssm.parameters())), calls))
    (fp, fq, fg, fcalls), (sp, sq, sg, scalls) = outs
    assert fcalls == [(T, B, fast.latent.param_size)] and len(scalls) == T
    for a, b in [*zip(fp, sp), *zip(fq, sq), *zip(fg, sg)]:
        torch.testing.assert_close(a, b)


def kl_and_grads(rssm, post, prior, **kw):
    loss, kl = rssm.kl_loss(post, prior, **kw)
    pg, qg = torch.autograd.grad(loss, [post.params, prior.params])
    return loss, kl, pg, qg


def leaf_states(rssm):
    posts, priors = rssm.observe(*sequence())
    leaf = lambda s: RSSMState(s.deter.detach(), s.stoch.detach(), s.params.detach().requires_grad_())  # noqa: E731
    return leaf(posts), leaf(priors)


@pytest.mark.parametrize("latent", ["gaussian", "categorical"])
def test_kl_balance_half_is_the_plain_kl(latent):
    rssm = make(latent)
    post, prior = leaf_states(rssm)
    plain = rssm.latent.kl(post.params, prior.params).mean()
    pg_plain, qg_plain = torch.autograd.grad(plain, [post.params, prior.params])
    loss, kl, pg, qg = kl_and_grads(rssm, post, prior, balance=0.5)
    torch.testing.assert_close(loss, plain)
    torch.testing.assert_close(kl.mean(), plain.detach())
    torch.testing.assert_close(pg, pg_plain)
    torch.testing.assert_close(qg, qg_plain)
    # balancing keeps the value and splits the gradient: alpha to the prior, 1 - alpha to the post
    loss8, _, pg8, qg8 = kl_and_grads(rssm, post, prior, balance=0.8)
    torch.testing.assert_close(loss8, plain)
    torch.testing.assert_close(qg8, 0.8 * qg_plain)
    torch.testing.assert_close(pg8, 0.2 * pg_plain)


def test_gaussian_kl_matches_torch_distributions():
    rssm = make()
    post, prior = leaf_states(rssm)
    D = torch.distributions
    dist = lambda p: D.Independent(D.Normal(*p.chunk(2, -1)), 1)  # noqa: E731
    expected = D.kl_divergence(dist(post.params), dist(prior.params))
    torch.testing.assert_close(rssm.latent.kl(post.params, prior.params), expected)


@pytest.mark.parametrize("balance", [0.5, 0.8])
def test_free_nats_clip_below_the_threshold_only(balance):
    rssm = make()
    post, prior = leaf_states(rssm)
    plain = rssm.latent.kl(post.params, prior.params).mean().item()
    # threshold above the KL: constant loss, no gradient
    loss, _, pg, qg = kl_and_grads(rssm, post, prior, free_nats=plain + 1.0, balance=balance)
    assert loss.item() == pytest.approx(plain + 1.0)
    assert pg.abs().sum() == 0 and qg.abs().sum() == 0
    # threshold below the KL: the KL itself, with gradients
    loss, _, pg, qg = kl_and_grads(rssm, post, prior, free_nats=plain - 0.01, balance=balance)
    assert loss.item() == pytest.approx(plain, rel=1e-5)
    assert pg.abs().sum() > 0 and qg.abs().sum() > 0


def test_free_nats_per_step_clip_each_steps_kl_before_the_mean():
    """``free_avg=False`` (Plan2Explore's code): steps whose KL is under the threshold are held
    at it and send no gradient, even though the mean is above it."""
    rssm = make()
    post, prior = leaf_states(rssm)
    kl = rssm.latent.kl(post.params, prior.params).detach()  # [T, B]
    free = kl.median().item()
    loss, _, pg, _ = kl_and_grads(rssm, post, prior, free_nats=free, free_avg=False)
    assert loss.item() == pytest.approx(kl.clamp(min=free).mean().item(), rel=1e-5)
    below = kl < free
    assert below.any() and (~below).any() and kl.mean() > free
    per_step = pg.abs().sum(-1)  # [T, B]
    assert (per_step[below] == 0).all() and (per_step[~below] > 0).all()
    mean_loss, _, pg_mean, _ = kl_and_grads(rssm, post, prior, free_nats=free)  # the mean is above it
    assert (pg_mean.abs().sum(-1) > 0).all() and mean_loss.item() == pytest.approx(kl.mean().item(), rel=1e-5)


def test_categorical_straight_through():
    rssm = make("categorical")
    logits = torch.randn(B, 12, requires_grad=True)
    sample = rssm.latent.sample(logits)  # [B, 12] = 3 groups x 4 classes
    groups = sample.detach().view(B, 3, 4)
    # forward values are one-hot (up to the float rounding of onehot + p - p)
    torch.testing.assert_close(groups, groups.round(), atol=1e-6, rtol=0)
    torch.testing.assert_close(groups.sum(-1), torch.ones(B, 3))
    (sample * torch.randn(B, 12)).sum().backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0
    mode = rssm.latent.mode(logits).detach().view(B, 3, 4)
    assert torch.equal(mode.argmax(-1), logits.detach().view(B, 3, 4).argmax(-1))


@pytest.mark.parametrize("latent", ["gaussian", "categorical"])
def test_imagination_gradients_reach_the_policy_through_the_dynamics(latent):
    rssm = make(latent)
    posts, _ = rssm.observe(*sequence())
    actor = torch.nn.Linear(rssm.feat_dim, A)
    traj = imagine_from(rssm, lambda s: torch.tanh(actor(rssm.get_feat(s).detach())), posts, 3)
    assert traj.feats.shape == (4, T * B, rssm.feat_dim) and traj.actions.shape == (3, T * B, A)
    # start states are detached: no gradient back into the posteriors
    assert torch.autograd.grad(traj.feats[-1].sum(), posts.deter, retain_graph=True, allow_unused=True)[0] is None
    traj.feats[-1].sum().backward()
    assert actor.weight.grad.abs().sum() > 0


def test_entropy_gaussian():
    rssm = make()
    params = torch.cat([torch.zeros(2, 4), torch.ones(2, 4)], -1)
    expected = torch.distributions.Normal(0.0, 1.0).entropy() * 4
    torch.testing.assert_close(rssm.latent.entropy(params), expected.expand(2))


def test_conv_encoder_decoder_shapes():
    enc, dec = ConvEncoder(depth=4), ConvDecoder(10, depth=4)
    assert enc(torch.zeros(2, 3, 3, 64, 64)).shape == (2, 3, 32 * 4) == (2, 3, enc.out_dim)
    assert dec(torch.zeros(2, 3, 10)).shape == (2, 3, 3, 64, 64)
    assert ConvEncoder().out_dim == 1024  # Dreamer's embedding at depth 32


def plain_conv_outputs(enc: ConvEncoder, dec: ConvDecoder, obs: torch.Tensor, feat: torch.Tensor):
    """The encoder's and decoder's maths with torch's plain layers, channels-first."""
    e = enc.convs(obs.reshape(-1, 3, 64, 64)).reshape(*obs.shape[:-3], -1)
    x = dec.linear(feat).reshape(-1, 32 * dec.depth, 1, 1)
    x = dec.deconvs[1:](nn.ConvTranspose2d.forward(dec.deconvs[0], x))
    return e, x.reshape(*feat.shape[:-1], 3, 64, 64)


def test_conv_encoder_decoder_compute_the_plain_layers_maths():
    """Channels-last inside and the first deconvolution as a matrix product change the speed,
    not the outputs or the gradients; the parameters are the plain layers'."""
    torch.manual_seed(0)
    enc, dec = ConvEncoder(depth=4, act="elu"), ConvDecoder(10, depth=4, act="elu")
    assert isinstance(dec.deconvs[0], PointDeconv) and isinstance(dec.deconvs[0], nn.ConvTranspose2d)
    assert "deconvs.0.weight" in dec.state_dict() and dec.deconvs[0].weight.shape == (128, 16, 5, 5)
    obs, feat = torch.rand(2, 3, 3, 64, 64) - 0.5, torch.randn(2, 3, 10)
    ours = (enc(obs), dec(feat))
    grads = torch.autograd.grad(sum(o.square().sum() for o in ours), [*enc.parameters(), *dec.parameters()])
    plain = plain_conv_outputs(enc, dec, obs, feat)
    plain_grads = torch.autograd.grad(sum(o.square().sum() for o in plain),
                                      [*enc.parameters(), *dec.parameters()])
    for a, b in zip((*ours, *grads), (*plain, *plain_grads)):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
    # under bf16 autocast the first deconvolution returns the plain layer's dtype
    with torch.autocast("cpu", dtype=torch.bfloat16):
        x = torch.randn(4, 128, 1, 1)
        point = dec.deconvs[0](x)
        assert point.dtype == nn.ConvTranspose2d.forward(dec.deconvs[0], x).dtype == torch.bfloat16
    # an input larger than one pixel takes the plain layer's path
    x = torch.randn(2, 128, 2, 2)
    torch.testing.assert_close(dec.deconvs[0](x), nn.ConvTranspose2d.forward(dec.deconvs[0], x))


def test_tanh_normal_actor():
    torch.manual_seed(0)
    actor = TanhNormalActor(6, 2, hidden=8, layers=2)
    feat = torch.randn(1000, 6)
    action, log_prob = actor.sample(feat)
    assert action.shape == (1000, 2) and log_prob.shape == (1000,)
    assert torch.all(action.abs() <= 1) and torch.all(actor.mode(feat).abs() <= 1)
    mean, std = actor(feat)
    assert 4.0 < std.mean() < 6.0  # init_std 5 at zero pre-activation
    # the log-prob matches torch's TransformedDistribution on a non-saturated sample
    D = torch.distributions
    dist = D.TransformedDistribution(D.Normal(mean, std), [D.TanhTransform()])
    ok = action.abs().max(-1).values < 0.99
    torch.testing.assert_close(log_prob[ok], dist.log_prob(action).sum(-1)[ok], atol=1e-3, rtol=1e-3)


def test_gaussian_nll():
    x = torch.randn(4, 3)
    expected = -torch.distributions.Normal(torch.zeros(4, 3), 1.0).log_prob(x).sum(-1)
    torch.testing.assert_close(gaussian_nll(torch.zeros(4, 3), x), expected)


# --- DreamerV2's pieces: the layer-normalised GRU cell and the truncated-Normal actor ---------


def test_norm_gru_cell_by_hand():
    torch.manual_seed(0)
    cell = NormGRUCell(3, 4)
    x, h = torch.randn(2, 3), torch.randn(2, 4)
    parts = torch.nn.functional.layer_norm(cell.linear(torch.cat([x, h], -1)), (12,),
                                           cell.norm.weight, cell.norm.bias)
    r, c, u = parts[:, :4], parts[:, 4:8], parts[:, 8:]
    u = torch.sigmoid(u - 1.0)
    expected = u * torch.tanh(torch.sigmoid(r) * c) + (1 - u) * h
    assert torch.allclose(cell(x, h), expected, atol=1e-6)
    # at initialisation the update gate is about sigmoid(-1) = 0.27: the state is mostly kept
    assert torch.sigmoid(torch.tensor(-1.0)) < 0.3


def test_rssm_with_the_norm_gru_cell_filters_and_rejects_unknown_cells():
    rssm = make("categorical", cell="norm_gru")
    assert isinstance(rssm.cell, NormGRUCell)
    posts, priors = rssm.observe(*sequence())
    assert posts.deter.shape == (T, B, 8) and torch.isfinite(posts.deter).all()
    with pytest.raises(ValueError, match="valid: gru, norm_gru"):
        make(cell="lstm")


def test_truncated_normal_actor_density_entropy_and_samples():
    """On a grid over [-1, 1], the density integrates to 1 and its entropy is the closed
    form; samples stay inside (-1, 1), have the density's mean and carry gradients."""
    torch.manual_seed(0)
    actor = TruncNormalActor(3, 2, hidden=8, layers=1)
    feat = torch.randn(4, 3)
    mean, std = actor(feat)
    assert (std >= 0.1).all() and (std <= 2.1).all() and (mean.abs() < 1).all()
    grid = torch.linspace(-1, 1, 20001)[:, None, None].expand(-1, 4, 2)  # [G, 4, 2]
    logp = torch.stack([actor._log_prob(grid[..., i:i + 1], mean[..., i:i + 1], std[..., i:i + 1])
                        for i in range(2)], -1)  # log-density per dimension [G, 4, 2]
    density = logp.exp()
    dx = 2 / 20000
    assert torch.allclose(density.sum(0) * dx, torch.ones(4, 2), atol=2e-3)
    entropy = -(density * logp).sum(0) * dx  # [4, 2]
    assert torch.allclose(actor.entropy(feat), entropy.sum(-1), atol=5e-3)
    many = feat[:1].expand(100_000, 3)
    action, log_prob = actor.sample(many)
    assert action.abs().max() < 1 and log_prob.shape == (100_000,)
    grid_mean = (density[:, 0] * grid[:, 0]).sum(0) * dx  # [2]
    assert torch.allclose(action.mean(0), grid_mean, atol=0.01)
    action.sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in actor.parameters())
    assert torch.equal(actor.mode(feat), mean)


def test_categorical_index_draws_each_class_at_its_probability():
    torch.manual_seed(0)
    # unnormalised rows with zero-probability classes first, inside and last; leading dims kept
    probs = torch.tensor([[0.0, 2.0, 0.0, 6.0, 2.0, 0.0], [1.0, 1.0, 1.0, 1.0, 1.0, 1.0]])
    n = 60_000
    draws = categorical_index(probs.expand(n, 2, 6).reshape(n // 2, 2, 2, 6))
    assert draws.shape == (n // 2, 2, 2) and draws.dtype == torch.int64
    for row in range(2):
        freq = torch.bincount(draws[..., row].reshape(-1), minlength=6).float() / n
        expected = probs[row] / probs[row].sum()
        assert (freq[expected == 0] == 0).all()  # never a class of probability zero
        assert torch.allclose(freq, expected, atol=0.01), (row, freq, expected)
    # a one-hot row always gives its class, also in bfloat16
    sure = torch.zeros(1000, 7, dtype=torch.bfloat16)
    sure[:, 4] = 1
    assert (categorical_index(sure) == 4).all()


@pytest.mark.parametrize("actor_cls", [TruncNormalActor, OneHotActor, TanhNormalActor])
def test_imagination_keeps_the_actor_outputs_its_loss_reuses(actor_cls):
    rssm = make("categorical")
    posts, _ = rssm.observe(*sequence())
    actor = actor_cls(rssm.feat_dim, A, hidden=8, layers=2)
    policy, outputs = record_actor_outputs(actor)
    traj = imagine_from(rssm, lambda s: policy(rssm.get_feat(s).detach()), posts, 3)
    out, feat, actions = outputs(), traj.feats[:-1].detach(), traj.actions.detach()
    again = actor(feat)  # what the loss computed before the outputs were kept
    for kept, fresh in zip(out if isinstance(out, tuple) else (out,), again if isinstance(again, tuple) else (again,)):
        assert kept.shape[:2] == (3, T * B)
        torch.testing.assert_close(kept, fresh)
    torch.testing.assert_close(actor.log_prob(None, actions, out=out), actor.log_prob(feat, actions))
    if actor_cls is not TanhNormalActor:  # exact entropies: the same value and the same gradient
        params = list(actor.parameters())
        kept = torch.autograd.grad(actor.entropy(None, out=out).sum(), params, retain_graph=True)
        fresh = torch.autograd.grad(actor.entropy(feat).sum(), params)
        for a, b in zip(kept, fresh):
            torch.testing.assert_close(a, b)
    # an actor of another type (a plugin's own) is called as before and nothing is kept
    plain = torch.nn.Linear(rssm.feat_dim, A)
    plain.sample = lambda f: (torch.tanh(plain(f)), None)
    policy, outputs = record_actor_outputs(plain)
    imagine_from(rssm, lambda s: policy(rssm.get_feat(s).detach()), posts, 2)
    assert outputs() is None
