"""TD-MPC: loss semantics, a training step, planning through the Policy, a learning check."""

import lightning as L
import pytest
import torch
from omegaconf import OmegaConf
from tensordict import TensorDict
from torch.utils.data import DataLoader, IterableDataset

from wmlab import keys
from wmlab.api import EnvSpecs, Policy
from wmlab.config import compose
from wmlab_plugins.tdmpc import TDMPC, TDMPCConfig, losses

OBS, ACT = 5, 2


def make_specs(obs_shape=(OBS,), low=-1.0, high=1.0, kind="state"):
    return EnvSpecs(name="toy", obs_kind=kind, obs_shape=obs_shape, action_shape=(ACT,),
                    action_low=torch.full((ACT,), low), action_high=torch.full((ACT,), high),
                    action_repeat=2, episode_policy_steps=500)


def make_method(specs=None, **overrides):
    cfg = OmegaConf.merge(OmegaConf.structured(TDMPCConfig), TDMPC.presets["debug"]["method"], overrides)
    return TDMPC(cfg, specs or make_specs())


def random_batch(method, *, obs=None, reward=None):
    B, L_ = method.cfg.batch_size, method.cfg.horizon + 1
    shape = method.specs.obs_shape
    if obs is None:
        obs = (torch.randint(0, 256, (B, L_, *shape), dtype=torch.uint8) if len(shape) == 3
               else torch.randn(B, L_, *shape))
    return TensorDict({
        keys.OBSERVATION: obs,
        keys.ACTION: torch.rand(B, L_, ACT) * 2 - 1,
        keys.REWARD: torch.randn(B, L_, 1) if reward is None else reward,
        keys.IS_INIT: torch.zeros(B, L_, 1, dtype=torch.bool),
    }, batch_size=[B, L_])


class _Batches(IterableDataset):
    def __init__(self, make, n):
        self.make, self.n = make, n

    def __iter__(self):
        return (self.make() for _ in range(self.n))


def fit(method, make_batch, n):
    trainer = L.Trainer(max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(method, DataLoader(_Batches(make_batch, n), batch_size=None, collate_fn=lambda x: x))
    return trainer


# --- losses -----------------------------------------------------------------------------
def test_perfect_model_has_zero_consistency_and_reward_loss():
    z, r = torch.randn(3, 4, 8), torch.randn(3, 4, 1)
    w = losses.rho_weights(3, 0.5)
    assert losses.consistency_loss(z, z.clone(), w).abs().max() == 0
    assert losses.reward_loss(r, r.clone(), w).abs().max() == 0


def test_rho_weighting_matches_hand_computation():
    z_target = torch.zeros(3, 1, 1)
    z_pred = torch.tensor([1.0, 2.0, 3.0]).view(3, 1, 1)
    w = losses.rho_weights(3, 0.5)
    torch.testing.assert_close(w, torch.tensor([1.0, 0.5, 0.25]))
    # 1 * 1 + 0.5 * 4 + 0.25 * 9
    torch.testing.assert_close(losses.consistency_loss(z_pred, z_target, w), torch.tensor([5.25]))
    q = torch.stack([z_pred, 2 * z_pred])  # [2, H, B, 1]; target 0: (1 + 4) * (1, 4, 9) rho-weighted
    torch.testing.assert_close(losses.value_loss(q, z_target, w), torch.tensor([5 * 5.25]))
    terms = losses.told_loss(z_pred=z_pred, z_target=z_target, reward_pred=z_pred, reward=z_target,
                             qs=q, target=z_target, weights=w)
    torch.testing.assert_close(terms["consistency"], torch.tensor(5.25 / 3))
    torch.testing.assert_close(terms["total"], torch.tensor((2 * 5.25 + 0.5 * 5.25 + 0.1 * 26.25) / 3))


def test_td_target_uses_min_of_target_qs_and_is_detached():
    r = torch.tensor([[[1.0]]])
    next_q = torch.tensor([3.0, 2.0]).view(2, 1, 1, 1).requires_grad_()
    target = losses.td_target(r, next_q, 0.9)
    torch.testing.assert_close(target, torch.tensor([[[1.0 + 0.9 * 2.0]]]))
    assert not target.requires_grad
    q = torch.zeros(2, 1, 1, 1, requires_grad=True)
    moving_target = torch.ones(1, 1, 1, requires_grad=True)
    losses.value_loss(q, moving_target, torch.ones(1)).sum().backward()
    assert moving_target.grad is None and q.grad is not None


@pytest.mark.parametrize("term", ["consistency", "reward", "value"])
def test_zero_coefficient_removes_a_term(term):
    torch.manual_seed(0)
    H, B = 3, 4
    args = dict(z_pred=torch.randn(H, B, 6), z_target=torch.randn(H, B, 6), reward_pred=torch.randn(H, B, 1),
                reward=torch.randn(H, B, 1), qs=torch.randn(2, H, B, 1), target=torch.randn(H, B, 1),
                weights=losses.rho_weights(H, 0.5))
    coefs = dict(consistency_coef=2.0, reward_coef=0.5, value_coef=0.1)
    coefs[f"{term}_coef"] = 0.0
    terms = losses.told_loss(**args, **coefs)
    expected = sum(coefs[f"{k}_coef"] * terms[k] for k in ("consistency", "reward", "value"))
    torch.testing.assert_close(terms["total"], expected)
    assert terms[term] > 0  # still reported, just not optimised


def test_policy_loss_is_rho_weighted_negative_min_q():
    qs = torch.tensor([[1.0, 2.0], [4.0, 0.5]]).view(2, 2, 1, 1)  # [num_q, H+1, B, 1]
    out = losses.policy_loss(qs, losses.rho_weights(2, 0.5))
    torch.testing.assert_close(out["policy"], torch.tensor(-(1.0 + 0.5 * 0.5)))


# --- method -----------------------------------------------------------------------------
def test_data_spec_and_paper_defaults():
    m = make_method()
    spec = m.data_spec()
    assert spec.sequence_length == m.cfg.horizon + 1 and spec.batch_size == m.cfg.batch_size
    assert spec.train_ratio == 1.0 and spec.prefill_steps == m.cfg.seed_steps * 2
    d = TDMPCConfig()
    assert (d.latent_dim, d.mlp_dim, d.enc_dim, d.horizon, d.batch_size) == (50, 512, 256, 5, 512)
    assert (d.iterations, d.num_samples, d.num_elites, d.temperature, d.momentum) == (6, 512, 64, 0.5, 0.1)
    assert (d.consistency_coef, d.reward_coef, d.value_coef, d.rho, d.tau, d.lr) == (2, 0.5, 0.1, 0.5, 0.01, 1e-3)


def test_debug_preset_composes_over_the_whole_tree():
    cfg = compose("tdmpc", TDMPC, "cheetah-run", presets=["debug"])
    assert cfg.method.latent_dim == 8 and cfg.env.action_repeat == 2
    assert compose("tdmpc", TDMPC, "cheetah-run").env.action_repeat == 4
    assert compose("tdmpc", TDMPC, "walker-walk").env.action_repeat == 2
    pixels = compose("tdmpc", TDMPC, "cartpole-swingup", presets=["pixels"])
    assert pixels.method.iterations == 8 and pixels.env.frame_stack == 3 and pixels.env.image_size == 84


def test_training_step_updates_nets_and_polyak_averages_targets():
    torch.manual_seed(0)
    m = make_method()
    before = {k: v.clone() for k, v in m.model.state_dict().items()}
    trainer = fit(m, lambda: random_batch(m), 1)
    metrics = trainer.callback_metrics
    for name in ("total", "consistency", "reward", "value", "policy"):
        assert torch.isfinite(metrics[f"train/loss/{name}"])
    for name in ("encoder", "dynamics", "reward", "q", "pi"):
        assert f"train/grad_norm/{name}" in metrics
        grads = [p.grad for p in getattr(m.model, f"_{'Qs' if name == 'q' else name}").parameters()]
        assert any(g is not None and g.abs().sum() > 0 for g in grads), name
    after = m.model.state_dict()
    tau = m.cfg.tau
    for target, online in (("_target_encoder", "_encoder"), ("_target_Qs", "_Qs")):
        for key in [k for k in after if k.startswith(target + ".")]:
            src = online + key[len(target):]
            expected = (1 - tau) * before[key] + tau * after[src]
            torch.testing.assert_close(after[key], expected)
    targets = (m.model._target_encoder, m.model._target_Qs)
    target_params = {id(p) for t in targets for p in t.parameters()}
    in_optim = {id(p) for opt in trainer.optimizers for g in opt.param_groups for p in g["params"]}
    assert not target_params & in_optim
    assert all(p.grad is None for p in m.model._target_Qs.parameters())


def test_targets_wait_for_update_freq():
    m = make_method()
    m.progress.updates = 1  # odd update: no Polyak step with update_freq 2
    before = [p.clone() for p in m.model._target_Qs.parameters()]
    fit(m, lambda: random_batch(m), 1)
    assert all(torch.equal(a, b) for a, b in zip(before, m.model._target_Qs.parameters()))


def test_transitions_after_an_episode_start_are_masked():
    m = make_method()
    batch = random_batch(m)
    batch[keys.IS_INIT][0, 2] = True
    _, _, _, valid = m.unpack(batch)
    assert valid[:, 0].tolist() == [1.0, 0.0, 0.0] and valid[:, 1:].eq(1).all()


def test_pixels_training_step_and_policy():
    torch.manual_seed(0)
    m = make_method(make_specs(obs_shape=(9, 64, 64), kind="pixels"), batch_size=4)  # 3 stacked frames
    trainer = fit(m, lambda: random_batch(m), 1)
    assert torch.isfinite(trainer.callback_metrics["train/loss/total"])
    td = TensorDict({keys.OBSERVATION: torch.randint(0, 256, (2, 9, 64, 64), dtype=torch.uint8)}, batch_size=[2])
    assert m.make_policy(explore=True)(td)[keys.ACTION].shape == (2, ACT)


@pytest.mark.parametrize("explore", [True, False])
def test_policy_plans_batched_within_bounds_and_warm_starts(explore):
    torch.manual_seed(0)
    m = make_method(make_specs(low=0.0, high=2.0))
    policy = m.make_policy(explore=explore)
    assert isinstance(policy, Policy)
    assert not list(policy.parameters())  # the model is referenced, not registered twice
    td = TensorDict({keys.OBSERVATION: torch.randn(6, OBS), keys.IS_INIT: torch.ones(6, 1, dtype=torch.bool)},
                    batch_size=[6])
    action = policy(td)[keys.ACTION]
    assert action.shape == (6, ACT) and (action >= 0).all() and (action <= 2).all()
    assert policy._mean.shape == (m.planning_horizon(), 6, ACT)
    m.progress.env_steps = 10_000  # schedules: horizon grows to 3, std decays to min_std
    assert m.planning_horizon() == m.cfg.horizon and m.planning_std() == pytest.approx(m.cfg.min_std)
    td[keys.IS_INIT] = torch.zeros(6, 1, dtype=torch.bool)
    assert policy(td)[keys.ACTION].shape == (6, ACT)
    assert policy._mean.shape == (m.cfg.horizon, 6, ACT)


def test_learns_reward_on_a_fixed_buffer():
    """Reward prediction error falls > 5x over 200 updates on a small synthetic buffer."""
    torch.manual_seed(0)
    m = make_method(batch_size=32)
    n, L_ = 256, m.cfg.horizon + 1
    act = torch.rand(n, L_, ACT) * 2 - 1
    dyn_o, dyn_a = 0.9 * torch.linalg.qr(torch.randn(OBS, OBS))[0], torch.randn(ACT, OBS)
    obs = [torch.randn(n, OBS)]
    for t in range(L_ - 1):  # learnable dynamics o_{t+1} = o_t A + a_t B
        obs.append(obs[-1] @ dyn_o + 0.5 * act[:, t] @ dyn_a)
    obs = torch.stack(obs, 1)
    w_o, w_a = torch.randn(OBS), torch.randn(ACT)
    reward = (torch.tanh(obs @ w_o) + 0.5 * act @ w_a).unsqueeze(-1)  # r_t = f(o_t, a_t)
    buffer = TensorDict({keys.OBSERVATION: obs, keys.ACTION: act, keys.REWARD: reward,
                         keys.IS_INIT: torch.zeros(n, L_, 1, dtype=torch.bool)}, batch_size=[n, L_])

    def reward_error():
        with torch.no_grad():
            o, a, r, valid = m.unpack(buffer)
            return m.model_loss(o, a, r, losses.rho_weights(L_ - 1, m.cfg.rho)[:, None] * valid)[0]["reward"]

    start = reward_error()
    fit(m, lambda: buffer[torch.randint(0, n, (32,))], 200)
    assert reward_error() < start / 5
