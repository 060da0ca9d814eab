"""Lambda-returns and discount weights against hand computations."""

import pytest
import torch

from wmlab.returns import discount_weights, lambda_returns

REWARD = torch.tensor([1.0, 2.0, 3.0])  # r_0, r_1, r_2
NEXT_VALUE = torch.tensor([10.0, 20.0, 30.0])  # v_1, v_2, v_3
BOOTSTRAP = torch.tensor(30.0)  # v_3


def test_lambda_one_is_the_discounted_monte_carlo_return_with_bootstrap():
    g = 0.9
    out = lambda_returns(REWARD, NEXT_VALUE, g, BOOTSTRAP, lambda_=1.0)
    expected = torch.tensor([
        1 + g * 2 + g**2 * 3 + g**3 * 30,
        2 + g * 3 + g**2 * 30,
        3 + g * 30,
    ])
    torch.testing.assert_close(out, expected)


def test_lambda_zero_is_the_one_step_td_target():
    g = 0.9
    out = lambda_returns(REWARD, NEXT_VALUE, g, BOOTSTRAP, lambda_=0.0)
    torch.testing.assert_close(out, REWARD + g * NEXT_VALUE)


def test_intermediate_lambda_by_hand_with_per_step_discounts():
    lam = 0.5
    d = torch.tensor([0.9, 0.0, 0.8])  # the episode ends after r_1
    out = lambda_returns(REWARD, NEXT_VALUE, d, BOOTSTRAP, lambda_=lam)
    g2 = 3 + 0.8 * 30
    g1 = 2 + 0.0 * ((1 - lam) * 20 + lam * g2)
    g0 = 1 + 0.9 * ((1 - lam) * 10 + lam * g1)
    torch.testing.assert_close(out, torch.tensor([g0, g1, g2]))


def test_batched_shapes_and_gradients():
    H, N = 15, 7
    reward = torch.randn(H, N, 1, requires_grad=True)
    value = torch.randn(H + 1, N, 1, requires_grad=True)
    out = lambda_returns(reward, value[1:], torch.full((H, N, 1), 0.99), value[-1], 0.95)
    assert out.shape == (H, N, 1)
    out.sum().backward()
    assert reward.grad.abs().min() > 0 and value.grad[1:].abs().sum() > 0


@pytest.mark.parametrize("lam", [0.0, 0.95, 1.0])
def test_bootstrap_only(lam):
    """Zero rewards and values equal to the bootstrap: the return is discounted bootstrap."""
    H = 4
    out = lambda_returns(torch.zeros(H), torch.full((H,), 5.0), 0.5, torch.tensor(5.0), lam)
    if lam == 1.0:
        torch.testing.assert_close(out, 5.0 * 0.5 ** torch.arange(H, 0, -1).float())
    assert torch.all(out > 0)


def test_discount_weights():
    d = torch.tensor([0.9, 0.5, 0.1])
    torch.testing.assert_close(discount_weights(d), torch.tensor([1.0, 0.9, 0.45]))
