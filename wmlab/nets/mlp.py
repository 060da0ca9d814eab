"""Shared building blocks: MLPs, observation scaling, initialisation, target-network updates.

Plain functions and ``nn.Module`` factories, tensors in and out; no config objects.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Sequence

import torch
from torch import nn

#: activation names accepted by :func:`mlp`
ACTIVATIONS = {
    "elu": nn.ELU,
    "mish": nn.Mish,
    "relu": nn.ReLU,
    "silu": nn.SiLU,
    "tanh": nn.Tanh,
}


def activation(name: str) -> nn.Module:
    """A fresh activation module by name (``elu``, ``mish``, ``relu``, ``silu``, ``tanh``)."""
    try:
        return ACTIVATIONS[name]()
    except KeyError:
        raise ValueError(f"unknown activation {name!r}; valid: {', '.join(ACTIVATIONS)}") from None


def mlp(
    in_dim: int,
    hidden_dims: Sequence[int],
    out_dim: int,
    *,
    act: str = "elu",
    layer_norm: bool = False,
    out_act: str | None = None,
    dropout: float = 0.0,
) -> nn.Sequential:
    """``Linear -> [Dropout] -> [LayerNorm] -> act`` per hidden layer, then a plain ``Linear``.

    ``layer_norm=True`` with ``act="mish"`` is TD-MPC2's ``NormedLinear`` stack;
    ``layer_norm=False`` with ``act="elu"`` is TD-MPC's. ``dropout`` applies after the
    first hidden layer only (as TD-MPC2's Q-functions). ``out_act`` optionally follows
    the last layer.
    """
    layers: list[nn.Module] = []
    dims = [in_dim, *hidden_dims]
    for i, (d_in, d_out) in enumerate(zip(dims[:-1], dims[1:])):
        layers.append(nn.Linear(d_in, d_out))
        if dropout > 0 and i == 0:
            layers.append(nn.Dropout(dropout))
        if layer_norm:
            layers.append(nn.LayerNorm(d_out))
        layers.append(activation(act))
    layers.append(nn.Linear(dims[-1], out_dim))
    if out_act is not None:
        layers.append(activation(out_act))
    return nn.Sequential(*layers)


def preprocess_obs(obs: torch.Tensor) -> torch.Tensor:
    """``uint8`` images to float in ``[-0.5, 0.5]``; float32 vectors are returned unchanged
    (float64 and integer vectors become float32).

    Idempotent: applying it to its own output changes nothing, so a network may call it
    on inputs that were already scaled (e.g. after augmentation).
    """
    if obs.dtype == torch.uint8:
        return obs.float().div_(255.0).sub_(0.5)
    if not obs.is_floating_point() or obs.dtype == torch.float64:
        return obs.float()
    return obs


def orthogonal_init_(module: nn.Module) -> None:
    """Orthogonal weights and zero biases; use as ``net.apply(orthogonal_init_)``.

    Linear layers get gain 1 and convolutions the ReLU gain, as TD-MPC's ``orthogonal_init``.
    """
    if isinstance(module, nn.Linear):
        nn.init.orthogonal_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Conv2d):
        nn.init.orthogonal_(module.weight, nn.init.calculate_gain("relu"))
        if module.bias is not None:
            nn.init.zeros_(module.bias)


def trunc_normal_init_(module: nn.Module, std: float = 0.02) -> None:
    """Truncated-normal weights (``+-2 std``) and zero biases, as TD-MPC2's ``weight_init``."""
    if isinstance(module, (nn.Linear, nn.Conv2d)):
        nn.init.trunc_normal_(module.weight, std=std, a=-2 * std, b=2 * std)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


def zero_init_last_(net: nn.Module) -> None:
    """Zero the weights and bias of the last ``nn.Linear`` in ``net`` (reward and value heads
    start at 0, as in TD-MPC and TD-MPC2)."""
    last = [m for m in net.modules() if isinstance(m, nn.Linear)][-1]
    nn.init.zeros_(last.weight)
    if last.bias is not None:
        nn.init.zeros_(last.bias)


@torch.no_grad()
def ema_update_(target: nn.Module, source: nn.Module, tau: float) -> None:
    """Polyak averaging in place: ``target <- (1 - tau) * target + tau * source``.

    Parameters are paired in registration order; both modules must have the same structure.
    One fused ``_foreach_lerp_`` call, no host synchronisation.
    """
    t_params = list(target.parameters())
    s_params = list(source.parameters())
    if len(t_params) != len(s_params):
        raise ValueError("ema_update_: target and source have different parameter lists")
    torch._foreach_lerp_(t_params, s_params, tau)


def set_requires_grad_(module: nn.Module, flag: bool) -> nn.Module:
    """Turn gradient tracking of every parameter of ``module`` on or off; returns ``module``."""
    for p in module.parameters():
        p.requires_grad_(flag)
    return module


@contextmanager
def frozen(*modules: nn.Module) -> Iterator[None]:
    """Temporarily stop gradient tracking of the modules' parameters (restored on exit)."""
    params = [p for m in modules for p in m.parameters()]
    flags = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, f in zip(params, flags):
            p.requires_grad_(f)
