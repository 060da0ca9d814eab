"""TDM networks: a goal- and horizon-conditioned Q-function and deterministic policy.

Tensors in and out. Every network reads ``x = [observation, achieved goal, goal, goal -
achieved goal, tau]`` (``[B, D + 3G + 1]``, built by :func:`goal_input`); the Q-function also
the action scaled to [-1, 1].
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from wmlab.nets import ema_update_, mlp, set_requires_grad_


def goal_input(obs: torch.Tensor, achieved: torch.Tensor, goal: torch.Tensor,
               tau: torch.Tensor, max_tau: int) -> torch.Tensor:
    """``[B, D + 3G + 1]``: the inputs side by side, tau scaled to [0, 1] by ``max_tau``. The
    goal's offset from the achieved goal is given too (rlkit's ``TdmPolicy`` names it as the
    input it means to give): without it, small nets on a short budget learn a
    goal-independent posture first (Reacher: the arm folded at the centre of the targets)."""
    scaled = tau.to(obs.dtype).unsqueeze(-1) / max(max_tau, 1)
    return torch.cat([obs, achieved, goal, goal - achieved, scaled], -1)


class GoalQ(nn.Module):
    """``Q(x, a)``. Vector-valued (TDM): ``-|f(x, a) - g|`` per goal dimension ``[B, G]``,
    so Q is the negated predicted distance of the state reached at the horizon to the goal
    [rlkit ``TdmQf``, ``norm_difference``, vectorized]. Scalar (HER): ``f(x, a)`` ``[B, 1]``."""

    def __init__(self, *, in_dim: int, action_dim: int, goal_dim: int, hidden: int, layers: int,
                 vectorized: bool):
        super().__init__()
        self.vectorized = vectorized
        self.net = mlp(in_dim + action_dim, [hidden] * layers, goal_dim if vectorized else 1,
                       act="relu")

    def forward(self, x: torch.Tensor, action: torch.Tensor, goal: torch.Tensor) -> torch.Tensor:
        f = self.net(torch.cat([x, action], -1))
        return -(f - goal).abs() if self.vectorized else f


class GoalPolicy(nn.Module):
    """``pi(x)``: a deterministic action in [-1, 1] ``[B, A]`` (tanh output)."""

    def __init__(self, *, in_dim: int, action_dim: int, hidden: int, layers: int):
        super().__init__()
        self.net = mlp(in_dim, [hidden] * layers, action_dim, act="relu", out_act="tanh")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class ActorCritic(nn.Module):
    """The Q-function and policy with their Polyak-averaged targets."""

    def __init__(self, *, in_dim: int, action_dim: int, goal_dim: int, hidden: int, layers: int,
                 vectorized: bool):
        super().__init__()
        self.q = GoalQ(in_dim=in_dim, action_dim=action_dim, goal_dim=goal_dim, hidden=hidden,
                       layers=layers, vectorized=vectorized)
        self.pi = GoalPolicy(in_dim=in_dim, action_dim=action_dim, hidden=hidden, layers=layers)
        self.q_target = set_requires_grad_(copy.deepcopy(self.q), False)
        self.pi_target = set_requires_grad_(copy.deepcopy(self.pi), False)

    @torch.no_grad()
    def update_targets(self, rate: float) -> None:
        ema_update_(self.q_target, self.q, rate)
        ema_update_(self.pi_target, self.pi, rate)
