"""Plan2Explore: disagreement, the exploration actor ignores the env reward, stages, the
policy's actor switch, training steps in both stages."""

import pytest
import torch
from test_dreamer import fit_one, make_specs, random_batch

from wmlab.api import Stage
from wmlab.config import compose
from wmlab_plugins.dreamer import Dreamer
from wmlab_plugins.plan2explore import Plan2Explore
from wmlab_plugins.plan2explore.losses import disagreement, ensemble_loss
from wmlab_plugins.plan2explore.networks import Ensemble


def make_method(overrides=(), kind="state") -> Plan2Explore:
    torch.manual_seed(0)
    cfg = compose("plan2explore", Plan2Explore, "cartpole-swingup", presets=["debug"], overrides=list(overrides))
    return Plan2Explore(cfg.method, make_specs(kind))


def test_disagreement_is_zero_for_identical_members_and_positive_otherwise():
    torch.manual_seed(0)
    ens = Ensemble(4, 6, 3, hidden=8, layers=2)
    x = torch.randn(5, 7, 6)  # [T, B, in]
    preds = ens(x)
    assert preds.shape == (4, 5, 7, 3)
    assert disagreement(preds).shape == (5, 7, 1) and (disagreement(preds) > 0).all()
    with torch.no_grad():
        for p in ens.parameters():
            p.copy_(p[:1].expand_as(p))  # every member a copy of the first
    assert torch.equal(disagreement(ens(x)), torch.zeros(5, 7, 1))


def test_members_are_independent_mlps():
    torch.manual_seed(0)
    ens = Ensemble(3, 4, 2, hidden=5, layers=1)
    x = torch.randn(10, 4)
    h = torch.nn.functional.elu(x @ ens.hidden[0].weight[1] + ens.hidden[0].bias[1])
    assert torch.allclose(ens(x)[1], h @ ens.out.weight[1] + ens.out.bias[1], atol=1e-6)


def test_each_member_on_its_own_inputs():
    torch.manual_seed(0)
    ens = Ensemble(3, 4, 2, hidden=5, layers=1)
    x = torch.randn(3, 6, 4)  # [K, M, in]
    own = ens.each(x)
    for k in range(3):
        assert torch.allclose(own[k], ens(x[k])[k], atol=1e-6)


def test_ensemble_loss_averages_each_members_own_mask_then_sums():
    preds = torch.zeros(2, 3, 1)  # [K, N, D]
    target = torch.tensor([[[1.0], [2.0], [3.0]], [[1.0], [2.0], [3.0]]])
    valid = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]])
    half_log_2pi = 0.5 * torch.log(torch.tensor(2 * torch.pi))
    expected = (0.5 + half_log_2pi) + ((0.5 * 4 + 0.5 * 9) / 2 + half_log_2pi)
    assert torch.allclose(ensemble_loss(preds, target, valid)["ensemble"], expected)


def test_bootstrap_gives_each_member_its_own_resample(monkeypatch):
    """With ``ensemble_bootstrap``, member k is fitted on the batch's sequences picked by its
    own row of draws with replacement; without, every member on the whole batch."""
    m = make_method()
    seen = []
    monkeypatch.setattr(m.ensemble, "each", lambda x: seen.append(x) or torch.zeros(*x.shape[:-1], m.ensemble.out_dim))
    data = m.unpack(random_batch(m))
    _, posts = m.world_model_loss(data)
    torch.manual_seed(3)
    m.ensemble_terms(data, posts)
    inputs = seen[-1]  # [K, T-1, B, in]
    k, batch = m.ensemble.k, inputs.shape[2]
    torch.manual_seed(3)
    pick = torch.randint(batch, (k, batch))
    full = torch.cat([m.world_model.rssm.get_feat(posts)[:-1], data.prev_action[1:]], -1)
    for member in range(k):
        assert torch.equal(inputs[member], full[:, pick[member]])
    assert any(len(set(row.tolist())) < batch for row in pick)  # drawn with replacement
    m = make_method(["method.ensemble_bootstrap=false"])
    monkeypatch.setattr(m.ensemble, "each", lambda x: seen.append(x) or torch.zeros(*x.shape[:-1], m.ensemble.out_dim))
    _, posts = m.world_model_loss(data)
    m.ensemble_terms(data, posts)
    assert torch.equal(seen[-1][0], seen[-1][1])  # the whole batch, the same for every member


def test_stages_explore_then_adapt_without_env_steps():
    m = make_method()
    explore, adapt = m.stages()
    assert (explore.name, explore.env_steps, explore.explore) == ("explore", None, True)
    assert (adapt.name, adapt.env_steps, adapt.updates) == ("adapt", 0, m.cfg.adapt_updates)
    fewshot = make_method(["method.fewshot_steps=100"]).stages()[-1]
    assert (fewshot.name, fewshot.env_steps) == ("fewshot", 100)


def test_policy_switches_actors_at_stage_start():
    m = make_method()
    calls = {"expl": 0, "task": 0}
    m.expl_actor.register_forward_hook(lambda *a: calls.__setitem__("expl", calls["expl"] + 1))
    m.actor.register_forward_hook(lambda *a: calls.__setitem__("task", calls["task"] + 1))
    obs, first = torch.randn(2, 5), torch.ones(2, dtype=torch.bool)
    explore, adapt, fewshot = make_method(["method.fewshot_steps=100"]).stages()
    m.on_stage_start(explore)
    m.make_policy(explore=True).act(obs, first)
    assert calls == {"expl": 1, "task": 0}
    m.make_policy(explore=False).act(obs, first)  # evaluation: the task actor
    assert calls == {"expl": 1, "task": 1}
    for stage in (adapt, fewshot):
        m.on_stage_start(stage)
        m.make_policy(explore=True).act(obs, first)
    assert calls == {"expl": 1, "task": 3}


def losses_with_reward_scale(scale: float, head_scale: float = 1.0) -> dict:
    """One update with a frozen world model (lr 0), env rewards scaled by ``scale`` and the
    reward head's predictions by ``head_scale``."""
    m = make_method(["method.model_lr=0.0"])
    with torch.no_grad():
        for p in m.world_model.reward_head.net[-1].parameters():
            p.mul_(head_scale)
    batch = random_batch(m)
    batch["next", "reward"] = batch["next", "reward"] * scale
    torch.manual_seed(1)
    return {k: v.clone() for k, v in fit_one(m, [batch]).callback_metrics.items()}


def test_exploration_actor_ignores_the_env_reward():
    a, b = losses_with_reward_scale(1.0), losses_with_reward_scale(10.0)
    for key in ("expl_actor", "expl_value", "ensemble"):
        assert torch.equal(a[f"train/loss/{key}"], b[f"train/loss/{key}"]), key
    assert not torch.equal(a["train/loss/reward"], b["train/loss/reward"])  # the reward head learns it
    # the predicted reward drives the task actor, never the exploration actor
    c = losses_with_reward_scale(1.0, head_scale=10.0)
    assert torch.equal(a["train/loss/expl_actor"], c["train/loss/expl_actor"])
    assert not torch.equal(a["train/loss/task_actor"], c["train/loss/task_actor"])


@pytest.mark.parametrize("target", ["embed", "stoch"])
def test_explore_step_trains_everything_with_finite_losses(target):
    m = make_method([f"method.disag_target={target}"], kind="pixels")
    assert isinstance(m, Dreamer)
    m.on_stage_start(Stage("explore"))
    before = {k: v.clone() for k, v in m.state_dict().items()}
    metrics = fit_one(m, [random_batch(m)]).callback_metrics
    for key in ("model", "ensemble", "expl_actor", "expl_value", "task_actor", "task_value"):
        assert torch.isfinite(metrics[f"train/loss/{key}"]), key
    changed = {k.split(".")[0] for k, v in m.state_dict().items() if not torch.equal(v, before[k])}
    assert {"world_model", "ensemble", "expl_actor", "expl_value", "actor", "value"} <= changed


@pytest.mark.parametrize("adapt_world_model", [True, False])
def test_adapt_step_trains_only_the_task_side(adapt_world_model):
    m = make_method([f"method.adapt_world_model={adapt_world_model}"])
    m.on_stage_start(m.stages()[1])
    before = {k: v.clone() for k, v in m.state_dict().items()}
    metrics = fit_one(m, [random_batch(m)]).callback_metrics
    assert not any("expl_" in k or "ensemble" in k for k in metrics)
    assert torch.isfinite(metrics["train/loss/task_actor"]) and torch.isfinite(metrics["train/loss/reward"])
    changed = {".".join(k.split(".")[:2]) for k, v in m.state_dict().items() if not torch.equal(v, before[k])}
    task = {"actor.net", "value.net", "world_model.reward_head"}
    if adapt_world_model:
        assert task | {"world_model.encoder", "world_model.rssm", "world_model.decoder"} <= changed
        assert not any(k.startswith(("expl_", "ensemble")) for k in changed)
    else:
        assert changed == task
