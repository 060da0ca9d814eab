"""Optimisation helpers shared by methods with several named modules per optimizer."""

from __future__ import annotations

from typing import Mapping

import torch
from torch import nn


def grad_norms(modules: Mapping[str, nn.Module]) -> dict[str, torch.Tensor]:
    """L2 norm of the gradients of each named module (modules without gradients are left
    out); 0-dim tensors, no host synchronisation."""
    norms = {}
    for name, m in modules.items():
        grads = [p.grad for p in m.parameters() if p.grad is not None]
        if grads:
            norms[name] = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
    return norms


def clip_grad_norms_(modules: Mapping[str, nn.Module], max_norm: float | None) -> dict[str, torch.Tensor]:
    """Per-module gradient norms (before clipping), then one global-norm clip over all the
    modules' parameters together (``max_norm=None`` does not clip)."""
    norms = grad_norms(modules)
    if max_norm is not None:
        params = [p for m in modules.values() for p in m.parameters()]
        torch.nn.utils.clip_grad_norm_(params, max_norm, foreach=True)
    return norms
