"""CEM planner: finds the best action sequence of toy problems, batched over envs."""

import pytest
import torch

from wmlab.planners import CEM


def quadratic(targets):
    """Return of each candidate: -||a - target||^2 summed over time; ``targets [H, B, A]``."""
    def value_fn(actions):  # [H, B, N, A] -> [B, N]
        return -(actions - targets.unsqueeze(2)).pow(2).sum((0, 3))
    return value_fn


def test_finds_the_best_sequence_batched():
    torch.manual_seed(0)
    H, B, A = 12, 3, 2
    targets = torch.rand(H, B, A) * 1.6 - 0.8  # inside the bounds, different per env
    cem = CEM(num_candidates=1000, num_elites=100, iterations=10)
    result = cem.plan(quadratic(targets), torch.zeros(H, B, A))
    assert result.action.shape == (B, A) and result.mean.shape == (H, B, A) == result.std.shape
    torch.testing.assert_close(result.mean, targets, atol=0.05, rtol=0)
    torch.testing.assert_close(result.action, targets[0], atol=0.05, rtol=0)
    assert torch.all(result.std < 0.1)


def test_respects_bounds_when_the_optimum_is_outside():
    H, B, A = 3, 2, 1
    targets = torch.full((H, B, A), 5.0)
    cem = CEM(num_candidates=200, num_elites=20, iterations=5, low=-1.0, high=1.0)
    result = cem.plan(quadratic(targets), torch.zeros(H, B, A))
    assert torch.all(result.action <= 1.0) and torch.all(result.action > 0.95)


def test_per_dimension_bounds_as_tensors():
    cem = CEM(num_candidates=50, num_elites=5, iterations=3, low=torch.tensor([-1.0, 0.0]),
              high=torch.tensor([1.0, 0.5]))
    result = cem.plan(quadratic(torch.full((2, 1, 2), -3.0)), torch.zeros(2, 1, 2))
    assert result.action[0, 1] >= 0.0 and result.action[0, 0] >= -1.0


def test_envs_are_independent():
    """The plan of env 0 does not change when env 1's problem changes."""
    H, A = 4, 1
    t0 = torch.full((H, 1, A), 0.5)
    plans = []
    for other in (-0.5, 0.9):
        torch.manual_seed(1)
        targets = torch.cat([t0, torch.full((H, 1, A), other)], 1)
        plans.append(CEM(num_candidates=100, num_elites=10, iterations=4).plan(
            quadratic(targets), torch.zeros(H, 2, A)).mean[:, 0])
    torch.testing.assert_close(plans[0], plans[1])


def test_invalid_elites():
    with pytest.raises(ValueError, match="num_elites"):
        CEM(num_candidates=10, num_elites=20)
