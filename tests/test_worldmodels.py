"""World Models: V's loss, M's mixture, C's size, the CMA-ES wiring and its checkpointed
state, the dream, and bad input."""

import io
import math

import numpy as np
import pytest
import torch
from tensordict import TensorDict

from wmlab import keys
from wmlab.api import EnvSpecs, Stage
from wmlab.cli import main
from wmlab.config import compose
from wmlab.errors import ConfigError
from wmlab.replay import Replay
from wmlab.samplers import Windows
from wmlab_plugins.worldmodels import WorldModels
from wmlab_plugins.worldmodels.latents import LATENT_STATS
from wmlab_plugins.worldmodels.networks import (Mixture, controller_act, mdn_loss,
                                                mixture_log_prob, sample_mixture, vae_loss)
from wmlab_plugins.worldmodels.search import CMAES


def specs(action_dim=3, discrete=False, name="gym:CarRacing-v3"):
    low = torch.zeros(action_dim) if discrete else -torch.ones(action_dim)
    return EnvSpecs(name=name, obs_kind="pixels", obs_shape=(3, 64, 64),
                    action_shape=(action_dim,), action_low=low, action_high=torch.ones(action_dim),
                    action_repeat=1, episode_policy_steps=1000, discrete=discrete)


def method(preset="debug", env="doom:take-cover", s=None, **overrides):
    cfg = compose("worldmodels", WorldModels, env, presets=[preset],
                  overrides=[f"method.{k}={v}" for k, v in overrides.items()])
    return WorldModels(cfg.method, s or specs(discrete=True, name=env))


# --- V ---------------------------------------------------------------------------------


def test_vae_loss_is_summed_error_plus_floored_kl():
    target = torch.rand(4, 3, 8, 8)
    z = 16
    prior = torch.zeros(4, z)  # q = N(0, I): KL 0, floored at 0.5 * z = 8 nats
    terms = vae_loss(target, target, prior, prior, kl_tolerance=0.5)
    assert terms["reconstruction"] == 0 and terms["kl"] == 0
    assert torch.isclose(terms["loss"], torch.tensor(8.0))
    # squared error summed over a frame's pixels, averaged over frames
    off = (target + 0.1).clamp(max=1)
    expected = (off - target).pow(2).flatten(1).sum(-1).mean()
    assert torch.isclose(vae_loss(target, off, prior, prior, 0.0)["reconstruction"], expected)
    # a KL above the floor counts in full: mean 3 on every dimension, KL = 0.5 * 9 * z = 72
    mean = torch.full((4, z), 3.0, requires_grad=True)
    terms = vae_loss(target, target, mean, prior, kl_tolerance=0.5)
    assert torch.isclose(terms["kl"], torch.tensor(72.0)) and torch.isclose(terms["loss"], torch.tensor(72.0))
    # below the floor the KL gives no gradient: V is not pushed to encode less
    small = torch.full((4, z), 0.1, requires_grad=True)
    vae_loss(target, target, small, prior, kl_tolerance=0.5)["loss"].backward()
    assert torch.all(small.grad == 0)
    terms["loss"].backward()
    assert torch.all(mean.grad > 0)


# --- M ---------------------------------------------------------------------------------


def test_mixture_log_prob_of_a_known_mixture():
    # one dimension, two Gaussians: 0.25 N(-1, 0.5^2) + 0.75 N(2, 1)
    logits = torch.log(torch.tensor([[0.25, 0.75]]))
    mix = Mixture(logits, torch.tensor([[-1.0, 2.0]]), torch.log(torch.tensor([[0.5, 1.0]])))
    x = torch.tensor([0.3])

    def normal(x, m, s):
        return math.exp(-0.5 * ((x - m) / s) ** 2) / (s * math.sqrt(2 * math.pi))

    expected = math.log(0.25 * normal(0.3, -1, 0.5) + 0.75 * normal(0.3, 2, 1))
    assert torch.allclose(mixture_log_prob(mix, x), torch.tensor([expected]), atol=1e-6)
    # the loss is its negative, averaged over dimensions and steps
    assert torch.isclose(mdn_loss(mix, x)["loss"], torch.tensor(-expected), atol=1e-6)


def test_sampling_follows_the_mixture_and_temperature():
    g = torch.Generator().manual_seed(0)
    n = 40_000
    logits = torch.log(torch.tensor([0.25, 0.75])).expand(n, 1, 2)
    mix = Mixture(logits, torch.tensor([-1.0, 2.0]).expand(n, 1, 2),
                  torch.log(torch.tensor([0.5, 1.0])).expand(n, 1, 2))
    x = sample_mixture(mix, 1.0, generator=g).squeeze(-1)
    assert abs(x.mean() - (0.25 * -1 + 0.75 * 2)) < 0.03
    assert abs((x < 0.5).float().mean() - (0.25 + 0.75 * 0.0668)) < 0.02
    # a low temperature picks the likelier Gaussian and narrows it
    cold = sample_mixture(mix, 0.05, generator=g).squeeze(-1)
    assert abs(cold.mean() - 2.0) < 0.01 and abs(cold.std() - math.sqrt(0.05)) < 0.01


def test_done_head_loss_weights_endings():
    mix = Mixture(torch.zeros(2, 1, 1), torch.zeros(2, 1, 1), torch.zeros(2, 1, 1))
    z = torch.zeros(2, 1)
    logit = torch.zeros(2)
    done = torch.tensor([1.0, 0.0])
    plain = mdn_loss(mix, z, logit, done, done_weight=1.0)["done"]
    weighted = mdn_loss(mix, z, logit, done, done_weight=10.0)["done"]
    assert torch.isclose(plain, torch.tensor(math.log(2)))
    assert torch.isclose(weighted, torch.tensor(11 * math.log(2) / 2))


def episode_replay(episodes: int = 20, steps: int = 100) -> Replay:
    """A replay of ``episodes`` episodes of ``steps`` policy steps (each ending in a death)
    and their final rows; a row's observation is its step ``t``."""
    replay = Replay(episodes * (steps + 1), "cpu")
    for _ in range(episodes):
        for t in range(steps + 1):  # the policy steps, then the final row
            dead = t >= steps - 1
            replay.write(TensorDict({
                keys.OBSERVATION: torch.tensor([float(t)]), keys.ACTION: torch.zeros(3),
                keys.IS_INIT: torch.tensor([t == 0]), keys.REWARD: torch.zeros(1),
                keys.DONE: torch.tensor([dead]), keys.TERMINATED: torch.tensor([dead]),
                keys.TRUNCATED: torch.tensor([False])}, batch_size=[]).unsqueeze(0), torch.tensor([0]))
    return replay


def label_shares(sampler, steps: int = 100) -> tuple[float, float]:
    """How often M's windows (from ``sampler``) hold the death of an episode of ``steps``
    policy steps as a done label, and how often a mid-episode row, as a label."""
    labels = sampler.sample(episode_replay(steps=steps), 40_000).get(keys.OBSERVATION).squeeze(-1)[:, :-1]
    return ((labels == steps - 1).float().mean().item(),
            (labels == steps // 2).float().mean().item())


def test_m_sees_each_death_about_as_often_as_any_other_step():
    """The done head's only positive labels are the deaths, one per episode: M's windows
    draw the one ending an episode often enough that its death is a label about as often as
    a mid-episode step (the authors' concatenated episodes: exactly as often); uniform
    windows of 8 show it 7 times less often."""
    torch.manual_seed(0)
    m = method()
    sampler = next(s for s in m.stages() if s.name == "mdn").data.sampler.inner  # (the windows)
    death, middle = label_shares(sampler)
    assert 0.8 < death / middle < 1.6, (death, middle)
    death, middle = label_shares(Windows(m.cfg.rnn_sequence))
    assert death / middle < 0.25, (death, middle)


def death_positions(sampler, steps: int = 100) -> torch.Tensor:
    """Where in M's windows (as a done label, row t of t -> t + 1) the deaths fall."""
    labels = sampler.sample(episode_replay(steps=steps), 20_000).get(keys.OBSERVATION).squeeze(-1)[:, :-1]
    return (labels == steps - 1).nonzero()[:, 1]


def test_deaths_fall_anywhere_in_m_windows_so_m_cannot_time_them_from_its_reset():
    """Inside-episode windows put every death at the window's last label, the same number of
    steps after M's zeroed state, and M learns to die on that count whatever it does; with
    episodes back to back (the authors' batches) deaths fall at every position."""
    torch.manual_seed(0)
    m = method()
    spans = death_positions(m.rnn_windows())
    assert spans.unique().numel() == m.cfg.rnn_sequence - 1
    assert spans.float().std() > m.cfg.rnn_sequence / 5
    ends = death_positions(method(rnn_windows="episodes").rnn_windows())
    assert ends.unique().tolist() == [m.cfg.rnn_sequence - 2]


def test_m_unrolls_whole_batches_as_its_steps_do_resets_and_gradients_included():
    torch.manual_seed(0)
    rnn = method(rnn_hidden=16).rnn
    z, a = torch.randn(5, 12, rnn.z_dim, requires_grad=True), torch.randn(5, 12, 3)
    reset = torch.zeros(5, 12, dtype=torch.bool)
    reset[0, 1] = reset[0, 7] = reset[0, 11] = True  # several pieces in a row, one of 1 step
    reset[2, 5] = reset[3, 0] = True  # (a reset at step 0 changes nothing)

    def stepped():
        state, out = rnn.initial_state(5), []
        for t in range(12):
            keep = (~reset[:, t]).float().unsqueeze(-1)
            state = rnn.step(z[:, t], a[:, t], (state[0] * keep, state[1] * keep))
            out.append(state[0])
        return torch.stack(out, 1)

    for reset_given in (reset, None):
        if reset_given is None:
            reset = torch.zeros_like(reset)
        fused, slow = rnn.unroll(z, a, reset_given), stepped()
        assert torch.allclose(fused, slow, atol=1e-5)
        grads = [torch.autograd.grad((h * torch.linspace(-1, 1, 16)).sum(), [z, *rnn.lstm.parameters()])
                 for h in (fused, slow)]
        for g_fused, g_slow in zip(*grads):
            assert torch.allclose(g_fused, g_slow, atol=1e-5)


def test_m_loads_checkpoints_that_name_an_lstm_cell():
    rnn = method(rnn_hidden=16).rnn
    old = {(f"cell.{k[5:-3]}" if k.startswith("lstm.") else k): v.clone() + 1
           for k, v in rnn.state_dict().items()}
    rnn.load_state_dict(old)
    assert torch.equal(rnn.lstm.weight_hh_l0, old["cell.weight_hh"])


def test_m_resets_at_episode_starts_and_learns_no_transition_across_them():
    torch.manual_seed(0)
    m = method()
    z, a = torch.randn(2, 6, m.cfg.z_dim), torch.randn(2, 6, 3)
    reset = torch.zeros(2, 6, dtype=torch.bool)
    reset[0, 3] = True
    h = m.rnn.unroll(z, a, reset)
    assert torch.allclose(h[0, 3:], m.rnn.unroll(z[:1, 3:], a[:1, 3:])[0], atol=1e-6)
    assert torch.allclose(h[1], m.rnn.unroll(z[1:], a[1:])[0], atol=1e-6)
    assert not torch.allclose(h[0, 3:], m.rnn.unroll(z[:1], a[:1])[0, 3:], atol=1e-3)
    # fit_rnn: the pair (final row -> next episode's first row) is masked out of the loss
    seen = {}
    real = mdn_loss

    def spy(*args, mask=None, **kw):
        seen["mask"] = mask
        return real(*args, mask=mask, **kw)

    import wmlab_plugins.worldmodels.method as wm

    batch = TensorDict({keys.OBSERVATION: torch.zeros(2, 6, 3, 64, 64, dtype=torch.uint8),
                        keys.ACTION: torch.zeros(2, 6, 3), keys.IS_INIT: reset.clone(),
                        keys.TERMINATED: torch.zeros(2, 6, 1, dtype=torch.bool)}, batch_size=[2, 6])
    opt = torch.optim.Adam(m.rnn.parameters())
    m.manual_backward = lambda loss: loss.backward()
    m.log_dict = lambda *a, **k: None
    old, wm.mdn_loss = wm.mdn_loss, spy
    try:
        m.fit_rnn(batch, opt)
    finally:
        wm.mdn_loss = old
    expected = torch.ones(2, 5, dtype=torch.bool)
    expected[0, 2] = False  # row 2 -> row 3 crosses into a new episode
    assert torch.equal(seen["mask"], expected)


# --- C ---------------------------------------------------------------------------------


def test_controller_has_867_parameters_on_carracing_shapes():
    m = method("carracing", env="gym:CarRacing-v3", s=specs())
    assert m.cfg.z_dim == 32 and m.cfg.rnn_hidden == 256
    assert m.controller.numel() == 867 == 3 * (32 + 256) + 3
    v_only = method("carracing", env="gym:CarRacing-v3", s=specs(), controller_input="z")
    assert v_only.controller.numel() == 3 * 32 + 3


def test_controller_is_tanh_of_a_linear_map_and_actions_fit_the_bounds():
    params = torch.arange(8.0) / 10  # W [2, 3] row-major, then b [2]
    x = torch.tensor([1.0, -1.0, 0.5])
    w, b = params[:6].reshape(2, 3), params[6:]
    assert torch.allclose(controller_act(params, x, 2), torch.tanh(w @ x + b))
    m = method("carracing", env="gym:CarRacing-v3", s=EnvSpecs(
        name="gym:CarRacing-v3", obs_kind="pixels", obs_shape=(3, 64, 64), action_shape=(3,),
        action_low=torch.tensor([-1.0, 0.0, 0.0]), action_high=torch.ones(3), action_repeat=1,
        episode_policy_steps=1000))
    a = m.to_action(torch.tensor([[-1.0, -1.0, 1.0], [0.0, 0.0, 0.0]]))
    assert torch.allclose(a, torch.tensor([[-1.0, 0.0, 1.0], [0.0, 0.5, 0.5]]))
    d = method(discrete_output="argmax")  # one-hot of the largest output
    assert torch.equal(d.to_action(torch.tensor([[0.1, -0.2, 0.3]])), torch.tensor([[0.0, 0.0, 1.0]]))


def test_doom_controller_is_the_authors_one_thresholded_output_on_z_c_h():
    m = method("doom")
    assert (m.cfg.controller_input, m.cfg.discrete_output) == ("zch", "threshold")
    assert m.controller.numel() == 1088 == 64 + 512 + 512  # no bias [code: doomrnn config.py]
    # left below -1/3, right above 1/3, stay between (choices: 0 no-op, 1 left, 2 right)
    out = torch.tensor([[-0.5], [-0.3], [0.0], [0.3], [0.5]])
    assert m.to_action(out).argmax(-1).tolist() == [1, 0, 0, 0, 2]
    z, h, c = torch.randn(2, 64), torch.randn(2, 512), torch.randn(2, 512)
    assert torch.equal(m.features(z, (h, c)), torch.cat([z, c, h], -1))
    params = torch.randn(1088)
    expected = torch.tanh(torch.cat([z, c, h], -1) @ params).unsqueeze(-1)
    assert torch.allclose(controller_act(params, m.features(z, (h, c)), 1), expected, atol=1e-5)


# --- CMA-ES ------------------------------------------------------------------------------


def test_cma_es_maximises_fitness():
    """Fitness is higher-is-better; cma minimises: the search must climb, not descend."""
    np.random.seed(0)
    es = CMAES(5, population=16, sigma=0.5)
    target = np.arange(5.0) / 5
    for _ in range(60):
        x = es.ask()
        es.tell(-((x - target) ** 2).sum(-1))  # best at target
    assert np.abs(es.mean - target).max() < 0.05


def test_tell_passes_minus_fitness_to_cma():
    es = CMAES(3, population=4, sigma=0.1)
    seen = {}
    original = es.es.tell
    es.es.tell = lambda sols, values: seen.setdefault("values", values) and original(sols, values)
    es.ask()
    es.tell(np.array([1.0, 2.0, 3.0, 4.0]))
    assert seen["values"] == [-1.0, -2.0, -3.0, -4.0]


@pytest.mark.parametrize("seed", range(5))
def test_search_state_survives_a_checkpoint(seed):
    m = method()
    m.initial_count.fill_(1)  # (the dream scores the mean at the search's last generation)
    np.random.seed(seed)
    torch.manual_seed(seed)
    for _ in range(3):
        m.ask()
        m.tell(torch.randn(m.cfg.population))
    state = {}
    m.on_save_checkpoint(state)
    state["module"] = m.state_dict()
    buf = io.BytesIO()
    torch.save(state, buf)  # as the core writes it: tensors, arrays and numbers only
    buf.seek(0)
    from wmlab.checkpoint import SAFE_GLOBALS

    with torch.serialization.safe_globals(SAFE_GLOBALS):
        loaded = torch.load(buf, weights_only=True)
    clone = method()
    clone.load_state_dict(loaded["module"])
    clone.on_load_checkpoint(loaded)
    assert torch.equal(clone.controller, m.controller)
    assert clone.controller_score == m.controller_score > float("-inf")
    assert clone.search.es.countiter == m.search.es.countiter == 3
    for _ in range(5):  # the same generations follow, candidate for candidate
        rng = np.random.get_state()
        a = m.ask()
        np.random.set_state(rng)
        b = clone.ask()
        assert all(torch.equal(x.params, y.params) for x, y in zip(a, b))
        fitness = torch.randn(m.cfg.population)
        m.tell(fitness)
        clone.tell(fitness)
    assert torch.equal(clone.controller, m.controller) and clone.search.sigma == m.search.sigma


def test_in_the_dream_c_is_the_best_scoring_mean_checked_every_select_every_generations(monkeypatch):
    """The authors' ``train.py``: the mean is scored every ``eval_steps`` generations and the
    best one is the controller; here also at the search's last generation."""
    m = method(select_every=2, generations=5)
    scores = iter([5.0, 3.0, 7.0])
    monkeypatch.setattr(m, "selection_score", lambda params: next(scores))
    np.random.seed(0)
    means, logged = [], []
    for _ in range(5):
        m.ask()
        logged.append(m.tell(torch.randn(m.cfg.population)))
        means.append(torch.as_tensor(m.search.mean, dtype=torch.float32))
        if len(means) == 1:
            assert not m.controller.any()  # nothing scored yet: C is still the start
    assert [("mean_score" in x) for x in logged] == [False, True, False, True, True]
    assert logged[3]["mean_score"] == 3.0 and logged[3]["controller_score"] == 5.0
    assert logged[4]["controller_score"] == 7.0
    assert torch.equal(m.controller, means[4])  # generation 5 (the last): 7 beat 5
    m2 = method(select_every=2, generations=5)
    scores2 = iter([5.0, 3.0, 4.0])
    monkeypatch.setattr(m2, "selection_score", lambda params: next(scores2))
    np.random.seed(0)
    for i in range(5):
        m2.ask()
        m2.tell(torch.randn(m2.cfg.population))
        if i == 1:
            kept = torch.as_tensor(m2.search.mean, dtype=torch.float32)
    assert torch.equal(m2.controller, kept) and m2.controller_score == 5.0  # gen 2's mean stays
    latest = method(select_every=0)  # off: C follows the mean after every generation
    for _ in range(2):
        latest.ask()
        assert "mean_score" not in latest.tell(torch.randn(latest.cfg.population))
        np.testing.assert_array_equal(latest.controller.numpy(), latest.search.mean.astype(np.float32))


def test_selection_scores_use_the_same_draws_and_leave_the_global_generator_alone():
    m = method(dream_done="sample", dream_steps=200, select_episodes=64)
    m.initial_count.fill_(1)
    with torch.no_grad():
        m.rnn.done.weight.zero_()
        m.rnn.done.bias.fill_(math.log(0.05 / 0.95))
    params = torch.randn(m.controller.numel())
    torch.manual_seed(3)
    before = torch.random.get_rng_state()
    first = m.selection_score(params)
    assert torch.equal(torch.random.get_rng_state(), before)
    assert m.selection_score(params) == first  # common random numbers: scores compare controllers
    assert 10 < first < 40  # p(done) 0.05: about 20 steps


# --- the dream ---------------------------------------------------------------------------


def test_dream_return_counts_steps_until_the_done_head_fires():
    m = method()
    m.initial_count.fill_(1)
    params = torch.zeros(5, m.controller.numel())
    with torch.no_grad():
        m.rnn.done.weight.zero_()
        m.rnn.done.bias.fill_(5.0)  # p(done) ~ 1: every dream ends after its first step
        assert torch.equal(m.dream_returns(params), torch.ones(5))
        m.rnn.done.bias.fill_(-5.0)  # never: cut at dream_steps
        assert torch.equal(m.dream_returns(params), torch.full((5,), float(m.cfg.dream_steps)))
    fitness = m.score(m.ask())
    assert fitness.shape == (m.cfg.population,)


def test_sampled_dream_deaths_follow_the_done_head():
    torch.manual_seed(0)
    m = method(dream_done="sample", dream_steps=500)
    m.initial_count.fill_(1)
    with torch.no_grad():
        m.rnn.done.weight.zero_()
        m.rnn.done.bias.fill_(math.log(0.1 / 0.9))  # p(done) = 0.1 a step: 10 steps on average
        returns = m.dream_returns(torch.zeros(2000, m.controller.numel()))
    assert abs(returns.mean() - 10.0) < 0.6


def test_calibrated_dream_deaths_undo_the_done_weight():
    # the head trained with ends weighted 10x says odds 10x the data's: p 0.1 / 0.9 * 10 here
    torch.manual_seed(0)
    m = method(dream_done="calibrated", dream_steps=500, done_weight=10.0)
    m.initial_count.fill_(1)
    with torch.no_grad():
        m.rnn.done.weight.zero_()
        m.rnn.done.bias.fill_(math.log(10 * 0.1 / 0.9))
        returns = m.dream_returns(torch.zeros(2000, m.controller.numel()))
    assert abs(returns.mean() - 10.0) < 0.6  # p(done) = 0.1 a step again: 10 steps on average


@pytest.mark.parametrize("hold, mean_run", [(1, 1.0), (10, 5.5)])
def test_held_random_actions_are_kept_one_to_collect_hold_steps(hold, mean_run):
    from wmlab_plugins.worldmodels.method import CollectPolicy

    torch.manual_seed(0)
    m = method(collect_policy="held_random", collect_hold=hold)
    policy = CollectPolicy(m)
    obs, first = torch.zeros(1, 3, 64, 64, dtype=torch.uint8), torch.ones(1, dtype=torch.bool)
    runs, draws = [], 0
    for t in range(4000):
        before = policy.left.clone() if policy.left is not None else None
        policy.act(obs, first if t == 0 else ~first)
        if before is None or before[0] <= 0:  # a new action was drawn at this step
            runs.append(int(policy.left[0]) + 1)
            draws += 1
    assert max(runs) == hold and min(runs) == 1
    assert abs(sum(runs) / draws - mean_run) < 0.2


# --- bad input ---------------------------------------------------------------------------


@pytest.mark.parametrize("overrides, message", [
    ({"population": 1}, "at least 2 candidates"),
    ({"collect_hold": 0}, "collect_hold=0 must be >= 1"),
    ({"train_in": "moon"}, "valid: env, dream"),
    ({"train_in": "dream", "done_head": "false"}, "done_head"),
    ({"train_in": "dream", "rnn_updates": 0}, "trained M"),
    ({"controller_input": "h"}, "valid: zh, z, zch"),
    ({"discrete_output": "sample"}, "valid: argmax, threshold"),
    ({"rnn_windows": "random"}, "valid: spans, episodes"),
    ({"iterations": 0}, "iterations=0 must be >= 1"),
    ({"select_every": -1}, "select_every=-1 must be >= 0"),
    ({"select_episodes": 0}, "select_episodes=0 must be >= 1"),
])
def test_bad_settings_are_config_errors(overrides, message):
    with pytest.raises(ConfigError, match=message):
        method(**overrides)


def test_threshold_output_needs_three_choices():
    with pytest.raises(ConfigError, match="discrete_output=argmax"):
        method("carracing", env="gym:CarRacing-v3", s=specs(), discrete_output="threshold")


def test_iterative_training_rounds_collect_with_the_controller_retrain_m_and_search_again():
    from wmlab_plugins.worldmodels.method import CollectPolicy, ControllerPolicy

    m = method(iterations=3, iteration_steps=500, iteration_rnn_updates=7)
    stages = m.stages()
    assert [s.name for s in stages] == ["collect", "vae", "mdn", "controller", "collect2", "mdn2",
                                        "controller2", "collect3", "mdn3", "controller3"]
    assert stages[4].env_steps == 500 and stages[5].updates == 7 and stages[6].search is not None
    assert m.data_spec().capacity >= m.cfg.collect_steps + 2 * 500  # the replay keeps every round
    m.rnn_trained.fill_(1)
    m.on_stage_start(stages[0])
    assert type(m.make_policy(explore=True)) is CollectPolicy  # the random data policy
    m.on_stage_start(stages[3])
    first = m.search
    m.initial_count.fill_(1)
    for _ in range(3):  # the first round's search moves away from zero
        m.ask()
        m.tell(torch.arange(m.cfg.population, dtype=torch.float32))
    assert np.abs(first.mean).max() > 0 and m.controller.abs().max() > 0
    m.on_stage_start(stages[4])
    assert type(m.make_policy(explore=True)) is ControllerPolicy  # later rounds: the controller
    m.on_stage_start(stages[5])
    assert m.phase == "mdn"
    m.on_stage_start(stages[6])
    assert m.search is not first  # a new search in the retrained M ...
    np.testing.assert_array_equal(m.search.mean, m.controller.double().numpy())  # ... from C
    assert m.controller_score == float("-inf")  # (C's score was in the old M)
    assert m.search.sigma == m.cfg.sigma
    cold = method(iterations=3, iteration_steps=500, iteration_rnn_updates=7,
                  iteration_warm_start=False)
    cold.rnn_trained.fill_(1)
    cold.on_stage_start(stages[3])
    cold.search.ask()
    cold.search.tell(np.arange(cold.cfg.population, dtype=np.float64))
    cold.on_stage_start(stages[6])
    assert not cold.search.mean.any()  # off: from zero, as the first round
    # a run resumed inside controller2 keeps that round's search
    ckpt = {}
    m.on_save_checkpoint(ckpt)
    resumed = method(iterations=3, iteration_steps=500, iteration_rnn_updates=7)
    resumed.rnn_trained.fill_(1)
    resumed.on_load_checkpoint(ckpt)
    before = resumed.search
    resumed.on_stage_start(stages[6])
    assert resumed.search is before


def test_dream_without_a_trained_m_is_refused_at_the_stage():
    m = method(train_in="dream")
    with pytest.raises(ConfigError, match="trained M"):
        m.on_stage_start(Stage("controller"))


def test_bad_input_on_the_command_line_is_one_line(capsys):
    argv = ["fit", "--method", "worldmodels", "--env", "doom:take-cover", "--preset", "debug",
            "method.population=1"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "method.population=1" in err[0], err


def frame_replay(episodes: int, steps: int, capacity: int) -> Replay:
    """A replay of random 64x64 frames, ``episodes`` episodes of ``steps`` rows each."""
    replay = Replay(capacity, "cpu")
    for _ in range(episodes):
        for t in range(steps):
            replay.write(TensorDict({
                keys.OBSERVATION: torch.randint(0, 256, (3, 64, 64), dtype=torch.uint8),
                keys.ACTION: torch.zeros(3), keys.IS_INIT: torch.tensor([t == 0]),
                keys.REWARD: torch.zeros(1), keys.DONE: torch.tensor([t == steps - 1]),
                keys.TERMINATED: torch.tensor([t == steps - 1]), keys.TRUNCATED: torch.tensor([False])},
                batch_size=[]).unsqueeze(0), torch.tensor([0]))
    return replay


def test_m_batches_carry_what_v_gives_each_frame_encoded_once():
    """With ``cache_latents`` M's batches hold V's mean and log-variance of their rows' frames
    (no frames), the same windows the plain sampler draws, each stored frame encoded once
    while it stays in the replay and again after V changes or a new row takes its slot."""
    torch.manual_seed(0)
    m = method()
    stage = next(s for s in m.stages() if s.name == "mdn")
    sampler, windows = stage.data.sampler, m.rnn_windows()
    replay = frame_replay(episodes=3, steps=10, capacity=30)
    torch.manual_seed(1)
    batch = sampler.sample(replay, 6)
    torch.manual_seed(1)
    plain = windows.sample(replay, 6)
    assert keys.OBSERVATION not in batch.keys() and batch.batch_size == plain.batch_size
    assert torch.equal(batch.get(keys.IS_INIT), plain.get(keys.IS_INIT))
    assert torch.equal(batch.get(keys.TERMINATED), plain.get(keys.TERMINATED))
    with torch.no_grad():
        mean, logvar = m.vae.encode(plain.get(keys.OBSERVATION))
    stats = batch.get(LATENT_STATS)
    torch.testing.assert_close(stats[..., 0, :], mean, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(stats[..., 1, :], logvar, atol=1e-5, rtol=1e-5)
    assert 0 < m.latent_store.encoded <= 6 * m.cfg.rnn_sequence
    def lookup_all():
        every = replay.slots(torch.tensor(0), torch.arange(30))  # oldest to newest
        with torch.no_grad():
            expected = torch.stack(m.vae.encode(replay[torch.arange(30)].get(keys.OBSERVATION)), 1)
        torch.testing.assert_close(m.latent_store.lookup(replay, every), expected, atol=1e-5, rtol=1e-5)

    lookup_all()
    assert m.latent_store.encoded == 30  # each row once, whatever the batches drew before
    sampler.sample(replay, 6)
    assert m.latent_store.encoded == 30
    m.on_stage_start(Stage("mdn"))  # a new stage: V may have changed
    assert m.latent_store.encoded == 0
    lookup_all()
    assert m.latent_store.encoded == 30
    # a later collection overwrites the oldest 10 slots: those rows are encoded anew
    new = frame_replay(episodes=1, steps=10, capacity=10)
    for t in range(10):
        replay.write(new[t].unsqueeze(0), torch.tensor([0]))
    lookup_all()
    assert m.latent_store.encoded == 40


def test_m_trains_on_frames_without_the_store():
    m = method(cache_latents=False)
    stage = next(s for s in m.stages() if s.name == "mdn")
    assert stage.data.sampler == m.rnn_windows()
    batch = stage.data.sampler.sample(frame_replay(episodes=2, steps=10, capacity=20), 3)
    opt = torch.optim.Adam(m.rnn.parameters())
    m.manual_backward = lambda loss: loss.backward()
    m.log_dict = lambda *a, **k: None
    before = [p.clone() for p in m.rnn.parameters()]
    m.fit_rnn(batch, opt)
    assert any(not torch.equal(a, b) for a, b in zip(before, m.rnn.parameters()))


def test_a_run_logs_its_stages_videos_and_search(capsys):
    """The debug preset end to end: V's and M's losses, the search's per-generation fitness,
    and at the last evaluation V's reconstructions and a decoded dream as videos."""
    import mlflow

    from wmlab.tracking import tracking_uri

    argv = ["fit", "--method", "worldmodels", "--env", "doom:take-cover", "--preset", "debug"]
    assert main(argv) == 0
    client = mlflow.MlflowClient(tracking_uri(None))
    run, = client.search_runs([client.get_experiment_by_name("wmlab").experiment_id])
    metrics = run.data.metrics
    for key in ("train/loss/vae", "train/loss/vae_kl", "train/loss/mdn", "train/loss/mdn_done",
                "search/best_fitness", "search/mean_fitness", "search/sigma", "eval/episode_return"):
        assert key in metrics, (key, sorted(metrics))
    generations = client.get_metric_history(run.info.run_id, "search/mean_fitness")
    assert len(generations) == 2  # one value per generation
    videos = {a.path for a in client.list_artifacts(run.info.run_id, "videos")}
    assert any("vae_" in v for v in videos) and any("dream_" in v for v in videos), videos


def test_resuming_into_the_dream_without_a_trained_m_is_one_line(capsys):
    """A run whose M had no update (``rnn_updates=0``, controller trained in the env),
    resumed at its controller stage with ``train_in=dream``: refused when the stage starts."""
    import re

    argv = ["fit", "--method", "worldmodels", "--env", "doom:take-cover", "--preset", "debug",
            "method.train_in=env", "method.rnn_updates=0", "eval.every=0"]
    assert main(argv) == 0
    run_id = re.search(r"run ([0-9a-f]{32})", capsys.readouterr().out).group(1)
    assert main(["fit", "--resume", run_id, "method.train_in=dream", "method.rnn_updates=5"]) == 2
    err = capsys.readouterr().err.strip().splitlines()  # (the run's own line, then the error)
    errors = [line for line in err if line.startswith("wmlab: error:")]
    assert len(errors) == 1 and "needs a trained M" in errors[0] and err[-1] == errors[0], err
