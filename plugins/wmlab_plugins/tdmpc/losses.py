"""TD-MPC losses: pure functions on time-major tensors, returning named terms.

Shapes: ``H`` rollout steps, ``B`` sequences. ``weights`` is ``[H]`` (``rho ** t``) or
``[H, B]`` (``rho ** t`` times a validity mask); per-step losses are multiplied by it and
summed over time, as in the authors' ``update`` (``src/algorithm/tdmpc.py``).
"""

from __future__ import annotations

import torch


def rho_weights(steps: int, rho: float, *, device: torch.device | str | None = None) -> torch.Tensor:
    """``[rho ** 0, rho ** 1, ..., rho ** (steps - 1)]``: ``[steps]``."""
    return torch.pow(torch.tensor(rho, device=device), torch.arange(steps, device=device))


def _weighted_sum(per_step: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """``per_step [H, B]`` x ``weights [H] | [H, B]`` summed over time: ``[B]``."""
    if weights.dim() == 1:
        weights = weights.unsqueeze(1)
    return (per_step * weights).sum(0)


def consistency_loss(z_pred: torch.Tensor, z_target: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Latent consistency per sequence ``[B]``: sum_t w_t * mean_d (z_pred - z_target)^2.

    ``z_pred [H, B, D]``: d-rollout latents z_1..z_H; ``z_target [H, B, D]``: target-encoder
    latents of o_1..o_H (treated as constants).
    """
    per_step = (z_pred - z_target.detach()).pow(2).mean(-1)  # [H, B]
    return _weighted_sum(per_step, weights)


def reward_loss(reward_pred: torch.Tensor, reward: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Reward MSE per sequence ``[B]``; ``reward_pred``, ``reward``: ``[H, B, 1]``."""
    per_step = (reward_pred - reward).pow(2).squeeze(-1)  # [H, B]
    return _weighted_sum(per_step, weights)


@torch.no_grad()
def td_target(reward: torch.Tensor, next_q: torch.Tensor, discount: float) -> torch.Tensor:
    """``r + discount * min_i Q_i`` (no gradient): ``[H, B, 1]``.

    ``next_q [num_q, H, B, 1]``: target-network values of (z_{t+1}, pi(z_{t+1})).
    """
    return reward + discount * next_q.min(0).values


def value_loss(qs: torch.Tensor, target: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """TD loss per sequence ``[B]``, summed over the Q-functions: ``qs [num_q, H, B, 1]``."""
    per_step = (qs - target.detach().unsqueeze(0)).pow(2).sum(0).squeeze(-1)  # [H, B]
    return _weighted_sum(per_step, weights)


def told_loss(
    *,
    z_pred: torch.Tensor,
    z_target: torch.Tensor,
    reward_pred: torch.Tensor,
    reward: torch.Tensor,
    qs: torch.Tensor,
    target: torch.Tensor,
    weights: torch.Tensor,
    consistency_coef: float = 2.0,
    reward_coef: float = 0.5,
    value_coef: float = 0.1,
    clip: float = 1e4,
) -> dict[str, torch.Tensor]:
    """The model objective: ``{"total", "consistency", "reward", "value"}`` (scalars).

    Each term is a batch mean divided by the horizon H; ``total`` weights the per-sample
    terms clamped at ``clip``. The 1/H matches the authors' gradient hook ``grad * (1/H)``.
    """
    horizon = z_pred.shape[0]
    c = consistency_loss(z_pred, z_target, weights)  # [B]
    r = reward_loss(reward_pred, reward, weights)
    v = value_loss(qs, target, weights)
    total = consistency_coef * c.clamp(max=clip) + reward_coef * r.clamp(max=clip) + value_coef * v.clamp(max=clip)
    return {
        "total": total.mean() / horizon,
        "consistency": c.mean() / horizon,
        "reward": r.mean() / horizon,
        "value": v.mean() / horizon,
    }


def policy_loss(qs: torch.Tensor, weights: torch.Tensor) -> dict[str, torch.Tensor]:
    """``{"policy": sum_t w_t * mean_b(-min_i Q_i(z_t, pi(z_t)))}``; ``qs [num_q, H+1, B, 1]``.

    The caller evaluates ``qs`` on detached latents with the Q parameters cut from the graph,
    so only the policy is trained by it.
    """
    per_step = -qs.min(0).values.squeeze(-1)  # [H+1, B]
    return {"policy": _weighted_sum(per_step, weights).mean()}
