"""PlaNet: loss semantics (free nats, latent overshooting), a training step, the policy."""

import pytest
import torch
from sequence_helpers import fake_specs, fit_once, random_sequence_batch
from tensordict import TensorDict

from wmlab import keys
from wmlab.config import compose
from wmlab.nets import RSSM, RSSMState
from wmlab.nets.world_model import quantize_pixels, to_sequences
from wmlab_plugins.planet import PlaNet, losses


def make_method(kind="state", overrides=(), **spec_kw) -> PlaNet:
    torch.manual_seed(0)
    cfg = compose("planet", PlaNet, "cartpole-swingup", presets=["debug"], overrides=list(overrides))
    return PlaNet(cfg.method, fake_specs(kind, **spec_kw))


def random_batch(method: PlaNet, B=None, T=None) -> TensorDict:
    return random_sequence_batch(method.specs, B or method.cfg.batch_size, T or method.cfg.sequence_length)


# --- free nats -------------------------------------------------------------------------------

def test_free_nats_clip_each_step_before_averaging():
    kl = torch.tensor([0.5, 6.0], requires_grad=True)
    loss = losses.free_nats_kl(kl, 3.0)
    assert loss.item() == pytest.approx((3.0 + 6.0) / 2)  # not max(mean, 3) = 3.25
    loss.backward()
    assert kl.grad.tolist() == [0.0, 0.5]  # the clipped step gets no gradient


def test_free_nats_below_everywhere_gives_no_gradient_and_mask_excludes_steps():
    kl = torch.tensor([[1.0, 2.0], [0.1, 9.0]], requires_grad=True)
    mask = torch.tensor([[True, True], [True, False]])
    loss = losses.free_nats_kl(kl, 3.0, mask)
    assert loss.item() == pytest.approx(3.0)  # the 9 is masked out, the rest clipped
    loss.backward()
    assert torch.all(kl.grad == 0)
    assert losses.free_nats_kl(kl, 0.0).item() == pytest.approx(kl.mean().item())


# --- latent overshooting ---------------------------------------------------------------------

def small_rssm_sequence(T=7, B=3, A=2, E=5, first_at=None):
    torch.manual_seed(0)
    rssm = RSSM(embed_dim=E, action_dim=A, deter=8, stoch=4, hidden=8, act="relu")
    is_first = torch.zeros(T, B, dtype=torch.bool)
    is_first[0] = True
    if first_at is not None:
        is_first[first_at, 0] = True
    prev_action = torch.rand(T, B, A) * 2 - 1
    posts, priors = rssm.observe(torch.randn(T, B, E), prev_action, is_first)
    return rssm, posts, priors, prev_action, is_first


def test_overshooting_distance_one_equals_the_standard_kl_term():
    rssm, posts, priors, prev_action, is_first = small_rssm_sequence()
    start, action = losses.steps_before(rssm, posts, prev_action, is_first)
    rollouts = losses.overshoot(rssm, start, action, is_first, 1)
    assert len(rollouts) == 1
    torch.testing.assert_close(rollouts[0][0].params, priors.params)  # the filtering priors
    kls = losses.overshooting_kls(rssm, posts, rollouts, free_nats=1.0)
    standard = losses.free_nats_kl(rssm.latent.kl(posts.params, priors.params), 1.0)
    loss, one_step, over = losses.kl_objective(kls, kl_scale=1.0, overshooting_scale=1.0)
    torch.testing.assert_close(loss, standard)
    torch.testing.assert_close(one_step, standard)
    assert over.item() == 0.0


def test_overshooting_priors_are_open_loop_predictions_from_d_steps_back():
    rssm, posts, _, prev_action, is_first = small_rssm_sequence()
    start, action = losses.steps_before(rssm, posts, prev_action, is_first)
    rollouts = losses.overshoot(rssm, start, action, is_first, 3, sample=False)
    assert [r[0].params.shape[0] for r in rollouts] == [7, 6, 5]
    # distance 3, target step 5: from the posterior at step 2, actions a_2, a_3, a_4
    u, d = 3, 3
    expected = rssm.open_loop(posts.select(u - 1), prev_action[u:u + d], sample=False).select(-1)
    torch.testing.assert_close(rollouts[d - 1][0].params[u], expected.params)


def test_overshooting_masks_rollouts_that_cross_an_episode_start():
    rssm, posts, _, prev_action, is_first = small_rssm_sequence(first_at=4)
    start, action = losses.steps_before(rssm, posts, prev_action, is_first)
    rollouts = losses.overshoot(rssm, start, action, is_first, 3)
    valid2, valid3 = rollouts[1][1][:, 0], rollouts[2][1][:, 0]  # sequence 0
    # distance 2 from start u targets u + 1: invalid when step u + 1 is the episode start
    assert valid2.tolist() == [True, True, True, False, True, True]
    assert valid3.tolist() == [True, True, False, False, True]
    assert rollouts[2][1][:, 1:].all()


def test_overshooting_weighting_and_stopped_posterior_gradient():
    rssm, posts, _, prev_action, is_first = small_rssm_sequence()
    params = posts.params.detach().requires_grad_(True)
    posts = RSSMState(posts.deter, posts.stoch, params)
    start, action = losses.steps_before(rssm, posts, prev_action, is_first)
    kls = losses.overshooting_kls(rssm, posts, losses.overshoot(rssm, start, action, is_first, 3), 0.0)
    assert kls.shape == (3,)
    loss, one_step, over = losses.kl_objective(kls, kl_scale=2.0, overshooting_scale=0.5)
    torch.testing.assert_close(one_step, 2.0 * kls[0] / 3)
    torch.testing.assert_close(over, 0.5 * (kls[1] + kls[2]) / 3)
    torch.testing.assert_close(loss, one_step + over)
    grad, = torch.autograd.grad(kls[1:].sum(), params, allow_unused=True, retain_graph=True)
    assert grad is None or torch.all(grad == 0)  # d > 1 never moves the posterior
    grad, = torch.autograd.grad(kls[0], params)
    assert grad.abs().sum() > 0


# --- training step ---------------------------------------------------------------------------

@pytest.mark.parametrize("kind, overrides", [("state", []), ("pixels", []),
                                             ("state", ["method.overshooting=4"])])
def test_training_step_finite_losses_and_gradients_in_every_module(kind, overrides):
    method = make_method(kind, overrides)
    before = {k: v.clone() for k, v in method.state_dict().items()}
    metrics = fit_once(method, [random_batch(method)]).callback_metrics
    for term in ("model", "reconstruction", "reward", "kl", "overshooting"):
        assert torch.isfinite(metrics[f"train/loss/{term}"]), term
    assert (metrics["train/loss/overshooting"] > 0) == bool(overrides)
    for part in ("encoder", "rssm", "decoder", "reward"):
        assert torch.isfinite(metrics[f"train/grad_norm/{part}"]) and metrics[f"train/grad_norm/{part}"] > 0
    changed = {".".join(k.split(".")[:2]) for k, v in method.state_dict().items() if not torch.equal(v, before[k])}
    assert changed == {"world_model.encoder", "world_model.rssm", "world_model.decoder", "world_model.reward_head"}


def test_data_spec_derives_the_train_ratio_from_the_collect_interval():
    method = make_method("state", ["method.train_ratio=null", "method.seed_episodes=5"])
    spec = method.data_spec()
    assert spec.train_ratio == pytest.approx(100 / 50)  # C / episode policy steps
    assert spec.prefill_steps == 5 * 50 * 2  # 5 episodes of 50 policy steps x action repeat 2
    cfg = compose("planet", PlaNet, "cheetah-run").method
    assert (cfg.batch_size, cfg.sequence_length, cfg.horizon, cfg.candidates, cfg.elites,
            cfg.iterations, cfg.free_nats, cfg.overshooting) == (50, 50, 12, 1000, 100, 10, 3.0, 1)


def test_env_presets_pixels_and_action_repeat():
    for env, repeat in [("cartpole-swingup", 8), ("reacher-easy", 4), ("cheetah-run", 4),
                        ("finger-spin", 2), ("ball_in_cup-catch", 4), ("walker-walk", 2)]:
        cfg = compose("planet", PlaNet, env)
        assert cfg.env.obs == "pixels" and cfg.env.action_repeat == repeat, env
    assert compose("planet", PlaNet, "cheetah-run", overrides=["env.obs=state"]).env.obs == "state"


def test_quantize_pixels_to_five_bits():
    obs = torch.tensor([0, 7, 8, 255], dtype=torch.uint8)
    x = quantize_pixels(obs, 5)
    bins = torch.tensor([0, 0, 1, 31]) / 32 - 0.5
    assert torch.all(x >= bins) and torch.all(x < bins + 1 / 32)
    assert torch.equal(quantize_pixels(torch.ones(3), 5), torch.ones(3))  # floats pass through


# --- policy ----------------------------------------------------------------------------------

def test_policy_actions_within_bounds_for_a_batch_of_envs():
    method = make_method("state", low=-2.0, high=0.5)
    B = 3
    for explore in (True, False):
        policy = method.make_policy(explore=explore)
        for t in range(3):
            action = policy.act(torch.randn(B, 5), torch.full((B,), t == 0))
            assert action.shape == (B, 2)
            assert torch.all(action >= -2.0) and torch.all(action <= 0.5)


def test_policy_keeps_its_state_and_resets_it_at_is_init():
    method = make_method("state")
    policy = method.make_policy(explore=False)
    obs = torch.randn(2, 5)
    policy.act(obs, torch.tensor([True, True]))
    fresh = policy._state
    policy.act(obs, torch.tensor([False, False]))
    kept = policy._state
    assert not torch.equal(kept.deter, fresh.deter)  # state carried over
    torch.manual_seed(1)
    policy.act(obs, torch.tensor([True, False]))
    # env 0 restarted from the initial state and a zero action: its deterministic state equals
    # the one a new policy gets on its first step
    other = method.make_policy(explore=False)
    other.act(obs[:1], torch.tensor([True]))
    torch.testing.assert_close(policy._state.deter[0], other._state.deter[0])
    assert not torch.equal(policy._state.deter[1], other._state.deter[0])


def test_eval_videos_openloop_for_pixels_only():
    method = make_method("pixels")
    video = method.eval_videos(random_batch(method, B=2, T=8))["openloop"]
    assert video.dtype == torch.uint8 and video.shape == (8, 2 * 64, 128, 3)
    state = make_method("state")
    assert state.eval_videos(random_batch(state)) == {}


def test_to_sequences_lines_up_actions():
    method = make_method("state", low=-2.0, high=2.0)
    batch = random_batch(method, B=2, T=4)
    data = to_sequences(batch, method.from_env_action)
    assert data.obs.shape == (4, 2, 5) and data.prev_action.shape == (4, 2, 2)
    torch.testing.assert_close(data.prev_action[1:], batch[keys.ACTION][:, :-1].transpose(0, 1) / 2)
    assert data.is_first[0].all() and not data.is_first[1:].any()
