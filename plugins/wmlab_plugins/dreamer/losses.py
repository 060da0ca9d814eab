"""Dreamer's losses: pure functions on time-major tensors, returning named scalar terms.

Shapes: ``T`` sequence steps and ``B`` sequences for the world model; ``H`` imagined steps
and ``N = T * B`` imagined trajectories for behaviour. Likelihoods are unit-variance
Gaussians (observations, rewards, values) and a Bernoulli (continue), as the authors'
``dreamer.py::Dreamer._train``; NLLs include their constants.
"""

from __future__ import annotations

import torch

from wmlab.nets import gaussian_nll


def masked_mean(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean of ``x [...]`` over the entries where ``mask [...]`` is 1 (all if ``None``)."""
    if mask is None:
        return x.mean()
    return (x * mask).sum() / mask.sum().clamp(min=1.0)


def world_model_loss(
    *,
    obs_nll: torch.Tensor,
    reward_nll: torch.Tensor,
    kl_loss: torch.Tensor,
    kl: torch.Tensor,
    valid: torch.Tensor | None = None,
    cont_nll: torch.Tensor | None = None,
    kl_scale: float = 1.0,
    cont_scale: float = 10.0,
) -> dict[str, torch.Tensor]:
    """``{"model", "obs", "reward", "kl", ["continue"]}``.

    ``model = kl_scale * kl_loss + obs + reward [+ cont_scale * continue]`` where each term is
    a mean over batch and time: ``obs_nll [T, B]``; ``reward_nll``, ``cont_nll [T-1, B]``
    (transitions, masked by ``valid [T-1, B]``); ``kl_loss`` the (clipped, balanced) KL
    scalar; ``kl [T, B]`` the plain KL, logged only.
    """
    terms = {"obs": obs_nll.mean(), "reward": masked_mean(reward_nll, valid), "kl": kl.mean()}
    total = kl_scale * kl_loss + terms["obs"] + terms["reward"]
    if cont_nll is not None:
        terms["continue"] = masked_mean(cont_nll, valid)
        total = total + cont_scale * terms["continue"]
    return {"model": total, **terms}


def actor_loss(returns: torch.Tensor, weights: torch.Tensor, *, entropy: torch.Tensor | None = None,
               ent_scale: float = 0.0) -> dict[str, torch.Tensor]:
    """Dynamics backpropagation: ``{"actor": -mean(w_t (G_t + eta H_t))}``; ``returns``,
    ``weights`` ``[H, N, 1]``. Gradients reach the actor through the imagined states
    (Dreamer Eq. 7). ``entropy [H, N]`` with ``ent_scale`` (eta) adds an entropy bonus (not in
    the paper, which has ``eta = 0``; DreamerV2's ``actor_ent``)."""
    objective = returns
    terms = {}
    if entropy is not None and ent_scale > 0.0:
        objective = objective + ent_scale * entropy.unsqueeze(-1)
        terms["actor_entropy"] = entropy.detach().mean()
    return {"actor": -(weights * objective).mean(), **terms}


def value_loss(value: torch.Tensor, target: torch.Tensor, weights: torch.Tensor) -> dict[str, torch.Tensor]:
    """``{"value": mean(w_t * -log N(G_t; v(s_t), 1))}``; ``value``, ``target``, ``weights``
    ``[H, N, 1]``; the target is treated as a constant (Dreamer Eq. 8)."""
    nll = gaussian_nll(value, target.detach(), event_dims=1)  # [H, N]
    return {"value": (weights.squeeze(-1) * nll).mean()}
