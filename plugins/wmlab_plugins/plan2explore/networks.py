"""The ensemble of one-step predictors (Plan2Explore, Sekar et al. 2020, Sec. 3): K MLPs
evaluated together with batched matrix products (one kernel per layer, not K)."""

from __future__ import annotations

import math

import torch
from torch import nn

from wmlab.nets import activation


class EnsembleLinear(nn.Module):
    """K independent linear layers: ``[K, M, in]`` -> ``[K, M, out]``; each member initialised
    as ``nn.Linear`` (uniform in +-1/sqrt(in))."""

    def __init__(self, k: int, in_dim: int, out_dim: int):
        super().__init__()
        bound = 1.0 / math.sqrt(in_dim)
        self.weight = nn.Parameter(torch.empty(k, in_dim, out_dim).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(k, 1, out_dim).uniform_(-bound, bound))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.baddbmm(self.bias, x, self.weight)


class Ensemble(nn.Module):
    """K MLPs of ``layers`` x ``hidden``: inputs ``[..., in]`` -> predictions ``[K, ..., out]``."""

    def __init__(self, k: int, in_dim: int, out_dim: int, *, hidden: int = 400, layers: int = 4,
                 act: str = "elu"):
        super().__init__()
        dims = [in_dim] + [hidden] * layers
        self.hidden = nn.ModuleList(EnsembleLinear(k, i, o) for i, o in zip(dims, dims[1:]))
        self.out = EnsembleLinear(k, dims[-1], out_dim)
        self.act = activation(act)
        self.k, self.out_dim = k, out_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Every member on the same inputs ``[..., in]`` -> ``[K, ..., out]``."""
        return self.each(x.unsqueeze(0).expand(self.k, *x.shape))

    def each(self, x: torch.Tensor) -> torch.Tensor:
        """Member k on its own inputs ``x[k]``: ``[K, ..., in]`` -> ``[K, ..., out]``."""
        lead = x.shape[1:-1]
        h = x.reshape(self.k, -1, x.shape[-1])  # [K, M, in]
        for layer in self.hidden:
            h = self.act(layer(h))
        return self.out(h).reshape(self.k, *lead, self.out_dim)
