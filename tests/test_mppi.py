"""MPPI planner: finds known optima, uses prior samples, warm starts, stays batched and bounded."""

import pytest
import torch

from wmlab.planners import MPPI, warm_start


def point_mass_value(x0: torch.Tensor):
    """1-D point mass x' = x + a, reward -(x')^2 per step: the best first action is -x0."""

    def value(actions: torch.Tensor) -> torch.Tensor:  # [H, B, N, 1] -> [B, N]
        x = x0.view(-1, 1).expand(-1, actions.shape[2])  # [B, N]
        ret = torch.zeros_like(x)
        for a in actions.unbind(0):
            x = x + a[..., 0]
            ret = ret - x**2
        return ret

    return value


@pytest.mark.parametrize("horizon", [1, 3])
def test_finds_best_action_for_each_env(horizon):
    torch.manual_seed(0)
    x0 = torch.tensor([0.7, -0.3, 0.0, 0.5])
    planner = MPPI(num_samples=512, num_elites=64, iterations=6, temperature=0.5,
                   min_std=0.01, select="mean")
    mean = torch.zeros(horizon, 4, 1)
    out = planner.plan(point_mass_value(x0), mean)
    assert out.action.shape == (4, 1)
    assert out.mean.shape == (horizon, 4, 1) and out.std.shape == (horizon, 4, 1)
    torch.testing.assert_close(out.action[:, 0], -x0, atol=0.05, rtol=0)


def test_sampled_elite_action_is_also_near_optimum():
    torch.manual_seed(1)
    x0 = torch.tensor([0.6, -0.6])
    planner = MPPI(num_samples=256, num_elites=32, iterations=6, temperature=0.5, min_std=0.01)
    out = planner.plan(point_mass_value(x0), torch.zeros(1, 2, 1))
    torch.testing.assert_close(out.action[:, 0], -x0, atol=0.1, rtol=0)


def test_prior_trajectories_are_scored_and_can_win():
    torch.manual_seed(0)
    best = torch.full((2, 3, 1, 2), 0.37)  # [H, B, P, A]: one prior sequence per env

    def value(actions):  # only the exact prior sequence scores 0, everything else < 0
        return -(actions - 0.37).abs().sum(dim=(0, 3))

    planner = MPPI(num_samples=64, num_elites=1, iterations=1, momentum=0.0, select="mean")
    with_prior = planner.plan(value, torch.zeros(2, 3, 2), prior=best)
    torch.testing.assert_close(with_prior.mean, torch.full((2, 3, 2), 0.37))
    without = planner.plan(value, torch.zeros(2, 3, 2))
    assert not torch.allclose(without.mean, torch.full((2, 3, 2), 0.37))


def test_value_fn_sees_all_candidates_at_once():
    calls = []

    def value(actions):
        calls.append(actions.shape)
        return actions.sum(dim=(0, 3))

    planner = MPPI(num_samples=16, num_elites=4, iterations=3)
    planner.plan(value, torch.zeros(4, 5, 2), prior=torch.zeros(4, 5, 3, 2))
    assert calls == [torch.Size([4, 5, 19, 2])] * 3


def test_actions_within_bounds_when_exploring():
    torch.manual_seed(0)
    low, high = torch.tensor([-0.5, 0.0]), torch.tensor([0.5, 0.2])
    planner = MPPI(num_samples=32, num_elites=4, iterations=2, low=low, high=high)
    out = planner.plan(lambda a: torch.randn(a.shape[1], a.shape[2]), torch.zeros(3, 8, 2), explore=True)
    assert out.action.shape == (8, 2)
    assert (out.action >= low).all() and (out.action <= high).all()
    assert (out.std >= planner.min_std).all() and (out.std <= planner.max_std).all()


def test_min_std_override_and_exploration_noise():
    torch.manual_seed(0)
    planner = MPPI(num_samples=32, num_elites=4, iterations=2, select="mean")
    flat = lambda a: torch.zeros(a.shape[1], a.shape[2])  # noqa: E731
    out = planner.plan(flat, torch.zeros(2, 64, 1), min_std=0.3)
    assert (out.std >= 0.3 - 1e-6).all()
    greedy = planner.plan(flat, torch.zeros(2, 64, 1), min_std=0.3)
    noisy = planner.plan(flat, torch.zeros(2, 64, 1), min_std=0.3, explore=True)
    assert noisy.action.std() > greedy.action.std()


def test_momentum_one_keeps_the_mean():
    planner = MPPI(num_samples=16, num_elites=4, iterations=3, momentum=1.0)
    mean = torch.rand(2, 3, 1) - 0.5
    out = planner.plan(lambda a: a.sum(dim=(0, 3)), mean)
    torch.testing.assert_close(out.mean, mean)


def test_warm_start_shifts_and_resets():
    prev = torch.arange(3 * 2 * 1, dtype=torch.float32).view(3, 2, 1)  # [H, B, A]
    mean = warm_start(prev, 3, 2, 1)
    torch.testing.assert_close(mean[:-1], prev[1:])
    assert (mean[-1] == 0).all()
    reset = warm_start(prev, 3, 2, 1, reset=torch.tensor([True, False]))
    assert (reset[:, 0] == 0).all()
    torch.testing.assert_close(reset[:-1, 1], prev[1:, 1])


def test_warm_start_handles_horizon_and_batch_changes():
    prev = torch.ones(2, 4, 3)
    grown = warm_start(prev, 5, 4, 3)
    assert grown.shape == (5, 4, 3)
    assert (grown[:1] == 1).all() and (grown[1:] == 0).all()
    assert (warm_start(prev, 2, 3, 3) == 0).all()  # another number of envs
    assert (warm_start(None, 2, 4, 3) == 0).all()
