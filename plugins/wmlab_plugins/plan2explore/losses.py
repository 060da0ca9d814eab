"""Plan2Explore's ensemble loss and intrinsic reward (Sekar et al. 2020, arXiv 2005.05960,
Sec. 3, Eq. 5-6): pure functions; ``K`` ensemble members, ``D`` target dims."""

from __future__ import annotations

import torch

from wmlab.nets import gaussian_nll

from ..dreamer.losses import masked_mean


def disagreement(preds: torch.Tensor) -> torch.Tensor:
    """Variance across the members, averaged over dims: ``[K, ..., D]`` -> ``[..., 1]``.

    (The paper's expected information gain; danijar/dreamerv2 uses the standard deviation.)"""
    return preds.var(0, unbiased=False).mean(-1, keepdim=True)


def ensemble_loss(preds: torch.Tensor, target: torch.Tensor, valid: torch.Tensor | None = None
                  ) -> dict[str, torch.Tensor]:
    """``{"ensemble"}``: unit-variance Gaussian NLL of ``target [..., D]`` under each member's
    prediction ``[K, ..., D]``, averaged over ``valid [...]`` entries, summed over members."""
    nll = gaussian_nll(preds, target.detach().expand_as(preds))  # [K, ...]
    mask = None if valid is None else valid.expand_as(nll)
    return {"ensemble": preds.shape[0] * masked_mean(nll, mask)}  # every member has the same mask
