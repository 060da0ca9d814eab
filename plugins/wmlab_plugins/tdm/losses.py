"""TDM losses: pure functions on batch-major tensors (``B`` samples, ``G`` goal dimensions).

The TDM target of one sample (vector-valued, one entry per goal dimension)::

    tau = 0:  y = -scale * |g'_ach - g|           (the distance is paid at the horizon only)
    tau > 0:  y = gamma * Q'(s', pi'(s', g, tau - 1), g, tau - 1)   (nothing paid on the way)

and a terminated transition bootstraps nothing. The HER baseline's target is the usual
infinite-horizon one on a scalar reward, ``y = r + gamma * (1 - terminated) * Q'(s', pi'(s'))``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def goal_reward(next_achieved: torch.Tensor, goal: torch.Tensor, *, scale: float,
                vectorized: bool) -> torch.Tensor:
    """Minus the distance of the next achieved goal to the goal, times ``scale``:
    per dimension ``[B, G]`` (``vectorized``, TDM) or Euclidean ``[B, 1]`` (HER, dense)."""
    diff = next_achieved - goal
    if vectorized:
        return -scale * diff.abs()
    return -scale * torch.linalg.vector_norm(diff, dim=-1, keepdim=True)


def sparse_goal_reward(next_achieved: torch.Tensor, goal: torch.Tensor, *,
                       tolerance: float) -> torch.Tensor:
    """HER's reward ``[B, 1]``: 0 within ``tolerance`` of the goal, else -1."""
    distance = torch.linalg.vector_norm(next_achieved - goal, dim=-1, keepdim=True)
    return -(distance > tolerance).float()


def tdm_target(reward: torch.Tensor, next_q: torch.Tensor, tau: torch.Tensor,
               terminated: torch.Tensor, *, discount: float) -> torch.Tensor:
    """The TDM target ``[B, G]``: ``reward [B, G]`` where ``tau [B] == 0``, else
    ``discount * next_q [B, G]`` (the target networks' value at ``tau - 1``); a
    ``terminated [B]`` transition gets 0 past its reward."""
    at_horizon = (tau == 0).unsqueeze(-1)  # [B, 1]
    going_on = (~terminated.bool()).unsqueeze(-1).to(next_q.dtype)  # [B, 1]
    return torch.where(at_horizon, reward, discount * going_on * next_q)


def her_target(reward: torch.Tensor, next_q: torch.Tensor, terminated: torch.Tensor, *,
               discount: float) -> torch.Tensor:
    """``reward + discount * (1 - terminated) * next_q``: ``[B, 1]``."""
    return reward + discount * (1 - terminated.float().unsqueeze(-1)) * next_q


def critic_loss(q: torch.Tensor, target: torch.Tensor, *, delta: float) -> torch.Tensor:
    """Huber loss of ``q`` to the (constant) ``target``, averaged over samples and goal
    dimensions (rlkit's ``HuberLoss`` over the whole ``[B, G]`` output)."""
    return F.huber_loss(q, target.detach(), delta=delta)


def actor_loss(q: torch.Tensor) -> torch.Tensor:
    """Minus the Q of the policy's actions, summed over goal dimensions, averaged over the
    batch (DDPG; for TDM, minus the predicted distance to the goal)."""
    return -q.sum(-1).mean()
