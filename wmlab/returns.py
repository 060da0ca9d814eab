"""Returns over imagined (or real) trajectories: lambda-returns and discount weights.

Time-major throughout: step ``t`` of a length-``H`` trajectory is index ``t`` of dim 0.
The convention (Dreamer, Hafner et al. 2020, arXiv 1912.01603, Eq. 6; authors' code
``tools.lambda_return``)::

    state   s_0 ──a_0──► s_1 ──a_1──► ... ──► s_H
    reward        r_0          r_1                       r_t   received on the way to s_{t+1}
    discount      d_0          d_1                       d_t = gamma * continue(s_{t+1})
    value   v_0          v_1          ...     v_H        v_t = V(s_t)

    G_t = r_t + d_t * ((1 - lambda) * v_{t+1} + lambda * G_{t+1}),   G_H = v_H (bootstrap)

``lambda = 1`` gives the discounted Monte-Carlo return bootstrapped with ``v_H``;
``lambda = 0`` gives the one-step TD target ``r_t + d_t * v_{t+1}``.
"""

from __future__ import annotations

import torch


def lambda_returns(
    reward: torch.Tensor,
    next_value: torch.Tensor,
    discount: torch.Tensor,
    bootstrap: torch.Tensor,
    lambda_: float = 0.95,
) -> torch.Tensor:
    """TD(lambda) returns ``G_0 .. G_{H-1}``: ``[H, ...]``.

    Args:
        reward: ``r_t`` ``[H, ...]``.
        next_value: ``v_{t+1}`` ``[H, ...]`` (the value of the state each reward leads to).
        discount: ``d_t`` ``[H, ...]`` (gamma times the probability of continuing), or a
            float broadcast to every step.
        bootstrap: ``G_H``, usually ``v_H`` ``[...]``.
        lambda_: the mixing weight; 0.95 in Dreamer.
    """
    discount = torch.as_tensor(discount, dtype=reward.dtype, device=reward.device).expand_as(reward)
    inputs = reward + discount * (1.0 - lambda_) * next_value  # [H, ...]
    out = []
    last = bootstrap
    for t in range(reward.shape[0] - 1, -1, -1):  # backwards; H is short (15)
        last = inputs[t] + discount[t] * lambda_ * last
        out.append(last)
    return torch.stack(out[::-1])


def discount_weights(discount: torch.Tensor) -> torch.Tensor:
    """Weights ``w_t = prod_{k<t} d_k`` (``w_0 = 1``) of each step's loss: ``[H, ...]``.

    A step after a likely episode end (or far in the future) counts less; Dreamer weights
    its actor and value losses this way (``cumprod`` of the discounts, no gradient).
    """
    ones = torch.ones_like(discount[:1])
    return torch.cumprod(torch.cat([ones, discount[:-1]], 0), 0).detach()


def gae(
    reward: torch.Tensor,
    value: torch.Tensor,
    next_value: torch.Tensor,
    terminated: torch.Tensor,
    done: torch.Tensor,
    discount: float,
    lambda_: float = 0.95,
) -> torch.Tensor:
    """Generalised advantage estimates ``A_0 .. A_{T-1}`` of a real rollout: ``[T, ...]``
    (Schulman et al. 2016, arXiv 1506.02438)::

        delta_t = r_t + gamma * (1 - terminated_t) * V(o_{t+1}) - V(o_t)
        A_t     = delta_t + gamma * lambda * (1 - done_t) * A_{t+1},   A_T = 0

    ``next_value`` is the value of each step's own next observation (the final frame of an
    episode cut by the time limit is bootstrapped; a termination is not), and ``done``
    (terminated or truncated) stops the sum at every episode end, so episodes that go on
    after the rollout's last step are bootstrapped through ``next_value`` there.

    Args:
        reward, value, next_value: ``[T, ...]``.
        terminated, done: ``[T, ...]``, bool or 0/1.
        discount: gamma; lambda_: GAE's lambda (1: Monte-Carlo advantages, 0: one-step TD).
    """
    keep = 1.0 - terminated.to(reward.dtype)
    go_on = 1.0 - done.to(reward.dtype)
    delta = reward + discount * keep * next_value - value  # [T, ...]
    out = []
    last = torch.zeros_like(reward[0])
    for t in range(reward.shape[0] - 1, -1, -1):
        last = delta[t] + discount * lambda_ * go_on[t] * last
        out.append(last)
    return torch.stack(out[::-1])
