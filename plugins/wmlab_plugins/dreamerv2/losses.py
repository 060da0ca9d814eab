"""DreamerV2's actor loss: a mix of dynamics backpropagation and REINFORCE, with an entropy
bonus (Hafner et al. 2021, arXiv 2010.02193, Eq. 7; authors' ``agent.py::ActorCritic.actor_loss``).

Shapes: ``H`` imagined steps, ``N`` trajectories, ``A`` action dims; ``actions[t]`` was taken
in state ``s_t`` and ``G_t`` is the lambda-return from ``s_t``.
"""

from __future__ import annotations

import torch


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
