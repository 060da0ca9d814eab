"""DreamerV2's actor loss: a mix of dynamics backpropagation and REINFORCE, with an entropy
bonus (Hafner et al. 2021, arXiv 2010.02193, Eq. 7; authors' ``agent.py::ActorCritic.actor_loss``).

Shapes: ``H`` imagined steps, ``N`` trajectories, ``A`` action dims; ``actions[t]`` was taken
in state ``s_t`` and ``G_t`` is the lambda-return from ``s_t``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


def tanh_normal_log_prob(mean: torch.Tensor, std: torch.Tensor, action: torch.Tensor,
                         eps: float = 1e-6) -> torch.Tensor:
    """``log p(action)`` under ``tanh(Normal(mean, std))``: ``[...]`` from ``[..., A]`` each.

    The action is clipped to ``(-1 + eps, 1 - eps)`` before ``atanh`` (REINFORCE needs the
    likelihood of an action that was sampled, not its pre-tanh value)."""
    x = torch.atanh(action.clamp(-1.0 + eps, 1.0 - eps))
    log_prob = -0.5 * ((x - mean) / std).pow(2) - std.log() - _HALF_LOG_2PI
    # tanh's log-det-Jacobian, stable form 2 (log 2 - x - softplus(-2x))
    return (log_prob - 2.0 * (math.log(2.0) - x - F.softplus(-2.0 * x))).sum(-1)


def actor_loss(*, returns: torch.Tensor, weights: torch.Tensor, mix: float, ent_scale: float,
               entropy: torch.Tensor, log_prob: torch.Tensor | None = None,
               advantage: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """``{"actor", "actor_entropy"}``: ``-mean(w_t (rho G_t + (1 - rho) log pi(a_t|s_t)
    sg(G_t - v(s_t)) + eta H[pi(.|s_t)]))``.

    ``returns``, ``weights``, ``advantage`` ``[H, N, 1]``; ``log_prob``, ``entropy`` ``[H, N]``.
    ``mix`` (rho) 1 is pure dynamics backpropagation, 0 pure REINFORCE; a term whose weight is 0
    is left out of the graph, so with ``mix=0`` no gradient reaches the dynamics."""
    objective = ent_scale * entropy.unsqueeze(-1)  # [H, N, 1]
    if mix > 0.0:
        objective = objective + mix * returns
    if mix < 1.0:
        objective = objective + (1.0 - mix) * log_prob.unsqueeze(-1) * advantage.detach()
    return {"actor": -(weights.detach() * objective).mean(), "actor_entropy": entropy.detach().mean()}
