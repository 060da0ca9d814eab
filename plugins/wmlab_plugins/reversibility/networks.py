"""Reversibility-aware RL's networks, plain MLPs on state vectors: the precedence estimator
psi, the action reversibility estimator phi and PPO's actor-critic. Tensors in and out."""

from __future__ import annotations

import torch
from torch import nn

from wmlab.nets.mlp import mlp, orthogonal_init_


class Precedence(nn.Module):
    """psi: the logit that ``second`` came after ``first`` in their trajectory,
    ``[B, D], [B, D] -> [B]``.

    ``form="pair"``: an MLP on both observations side by side. ``form="potential"``: the
    difference ``f(second) - f(first)`` of a learned scalar of one observation (an MLP), so
    psi(s, s') = 1 - psi(s', s) by construction and two observations close in state space
    get psi near 0.5: order comes only from what drifts one way along trajectories, never
    from reading one step's dynamics (e.g. positions changing with the velocities). ``bound``
    > 0 squashes f into ``(-bound, bound)``: a slow drift over many steps then cannot make
    one step's psi confident, a fast one (a fall) still does.

    Both forms are wmlab's: the authors' psi (model.py, ``CartpoleRev``, ``GrasslandRev``)
    encodes each observation with one shared encoder and reads the pair of codes with a linear
    head (see ``ReversibilityConfig.psi_hidden``)."""

    def __init__(self, obs_dim: int, hidden: int, form: str = "pair", bound: float = 0.0):
        super().__init__()
        self.form, self.bound = form, bound
        inputs = 2 * obs_dim if form == "pair" else obs_dim
        self.net = mlp(inputs, [hidden, hidden], 1, act="relu")

    def forward(self, first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
        if self.form == "potential":
            return (self.potential(second) - self.potential(first)).squeeze(-1)
        return self.net(torch.cat([first, second], -1)).squeeze(-1)

    def potential(self, obs: torch.Tensor) -> torch.Tensor:
        """f(obs) ``[B, 1]``, squashed into ``(-bound, bound)`` if ``bound`` > 0."""
        f = self.net(obs)
        return self.bound * torch.tanh(f / self.bound) if self.bound > 0 else f


class ActionReversibility(nn.Module):
    """phi: for every action, the logit of psi(s, s') expected after taking it in ``s``,
    ``[B, D] -> [B, A]`` (high: the action is likely irreversible). Two hidden layers
    (wmlab's); model.py's ``CartpoleARev`` has one of 64 units."""

    def __init__(self, obs_dim: int, actions: int, hidden: int):
        super().__init__()
        self.net = mlp(obs_dim, [hidden, hidden], actions, act="relu")

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net(obs)


class ActorCritic(nn.Module):
    """PPO's policy and value, separate tanh MLPs: ``[B, D] -> (logits [B, A], value [B])``;
    orthogonal weights, the policy's last layer scaled by 0.01 (nearly uniform at first), as
    stable_baselines3_copy/common/policies.py's ``MlpPolicy``."""

    def __init__(self, obs_dim: int, actions: int, hidden: int):
        super().__init__()
        self.actor = mlp(obs_dim, [hidden, hidden], actions, act="tanh")
        self.critic = mlp(obs_dim, [hidden, hidden], 1, act="tanh")
        self.apply(orthogonal_init_)
        with torch.no_grad():
            self.actor[-1].weight.mul_(0.01)

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.actor(obs), self.critic(obs).squeeze(-1)
