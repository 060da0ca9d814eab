"""TOLD, TD-MPC's task-oriented latent dynamics model: plain modules, tensors in and out.

The model is used through verbs, never one ``forward``:
``encode(obs)`` h, ``next(z, a)`` d, ``reward(z, a)`` R, ``Q(z, a)`` Q1/Q2, ``pi(z)`` pi.
Target copies of the encoder and the Q-functions live inside the model (Polyak-averaged by
:meth:`TOLD.update_targets`, never trained); the authors keep a target copy of the whole
model but only ever read these two parts of it.
"""

from __future__ import annotations

import copy
from typing import Sequence

import torch
from torch import nn
from torch.func import functional_call

from wmlab.errors import ConfigError
from wmlab.nets import ema_update_, mlp, orthogonal_init_, preprocess_obs, set_requires_grad_, zero_init_last_

#: the smallest image side the pixel encoder reads: 39 -> 17 -> 7 -> 3 -> 1 through its convs
MIN_PIXELS = 39


class PixelEncoder(nn.Module):
    """TD-MPC's pixel encoder: 4 conv layers (kernels 7, 5, 3, 3, stride 2, ReLU), then Linear."""

    def __init__(self, obs_shape: Sequence[int], latent_dim: int, *, channels: int = 32):
        super().__init__()
        c, h, w = obs_shape
        layers: list[nn.Module] = []
        for k in (7, 5, 3, 3):
            layers += [nn.Conv2d(c, channels, k, stride=2), nn.ReLU()]
            c = channels
        self.convs = nn.Sequential(*layers)
        if min(h, w) < MIN_PIXELS:
            raise ConfigError(f"TD-MPC's pixel encoder (4 convs of stride 2) needs images of at least "
                              f"{MIN_PIXELS}x{MIN_PIXELS} pixels, not {h}x{w}: set env.image_size >= {MIN_PIXELS}")
        with torch.no_grad():
            flat = self.convs(torch.zeros(1, *obs_shape)).numel()
        self.out = nn.Linear(flat, latent_dim)
        self.obs_ndim = len(obs_shape)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        lead = obs.shape[: -self.obs_ndim]
        x = obs.reshape(-1, *obs.shape[-self.obs_ndim :])  # [N, C, H, W]
        z = self.out(self.convs(x).flatten(1))  # [N, D]
        return z.reshape(*lead, -1)


def q_net(in_dim: int, mlp_dim: int) -> nn.Sequential:
    """TD-MPC's Q-function: Linear -> LayerNorm -> Tanh -> Linear -> ELU -> Linear(1)."""
    return nn.Sequential(
        nn.Linear(in_dim, mlp_dim), nn.LayerNorm(mlp_dim), nn.Tanh(),
        *mlp(mlp_dim, [mlp_dim], 1, act="elu"),
    )


def random_shift(x: torch.Tensor, pad: int) -> torch.Tensor:
    """Shift each image of ``x [N, C, H, W]`` by up to ``pad`` pixels (replicate padding).

    Integer shifts, the same transform as DrQ's ``RandomShiftsAug`` used by TD-MPC.
    """
    if pad <= 0:
        return x
    n, _, h, w = x.shape
    padded = nn.functional.pad(x, (pad, pad, pad, pad), mode="replicate")
    dy = torch.randint(0, 2 * pad + 1, (n, 1), device=x.device)
    dx = torch.randint(0, 2 * pad + 1, (n, 1), device=x.device)
    rows = (torch.arange(h, device=x.device) + dy)[:, :, None]  # [N, H, 1]
    cols = (torch.arange(w, device=x.device) + dx)[:, None, :]  # [N, 1, W]
    batch = torch.arange(n, device=x.device)[:, None, None]
    return padded.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2)  # [N, C, H, W]


class TOLD(nn.Module):
    """Encoder h, dynamics d, reward R, two Q-functions and a deterministic policy pi."""

    def __init__(
        self,
        *,
        obs_shape: Sequence[int],
        action_dim: int,
        latent_dim: int = 50,
        mlp_dim: int = 512,
        enc_dim: int = 256,
        num_channels: int = 32,
        pi_noise_clip: float = 0.3,
    ):
        super().__init__()
        za = latent_dim + action_dim
        self._encoder = self._make_encoder(obs_shape, latent_dim, enc_dim, num_channels)
        self._dynamics = mlp(za, [mlp_dim, mlp_dim], latent_dim, act="elu")
        self._reward = mlp(za, [mlp_dim, mlp_dim], 1, act="elu")
        self._pi = mlp(latent_dim, [mlp_dim, mlp_dim], action_dim, act="elu")
        self._Qs = nn.ModuleList([q_net(za, mlp_dim) for _ in range(2)])
        self.apply(orthogonal_init_)
        for head in (self._reward, *self._Qs):
            zero_init_last_(head)
        self._target_encoder = set_requires_grad_(copy.deepcopy(self._encoder), False)
        self._target_Qs = set_requires_grad_(copy.deepcopy(self._Qs), False)
        self.pi_noise_clip = pi_noise_clip

    def compiled_modules(self) -> list[str]:
        """Every network (names under this module), for ``run.compile``."""
        qs = [f"{group}.{i}" for group in ("_Qs", "_target_Qs") for i in range(len(self._Qs))]
        return ["_encoder", "_target_encoder", "_dynamics", "_reward", "_pi", *qs]

    @staticmethod
    def _make_encoder(obs_shape, latent_dim, enc_dim, num_channels) -> nn.Module:
        if len(obs_shape) == 3:
            return PixelEncoder(obs_shape, latent_dim, channels=num_channels)
        return mlp(int(obs_shape[0]), [enc_dim], latent_dim, act="elu")

    # --- verbs ------------------------------------------------------------------------
    def encode(self, obs: torch.Tensor, *, target: bool = False) -> torch.Tensor:
        """``obs [..., *obs_shape]`` (raw or preprocessed) -> ``z [..., D]``."""
        encoder = self._target_encoder if target else self._encoder
        return encoder(preprocess_obs(obs))

    def next(self, z: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        """Latent dynamics: ``z [..., D], a [..., A] -> z' [..., D]``."""
        return self._dynamics(torch.cat([z, a], dim=-1))

    def reward(self, z: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        """One-step reward of ``a`` in ``z``: ``[..., 1]``."""
        return self._reward(torch.cat([z, a], dim=-1))

    def Q(self, z: torch.Tensor, a: torch.Tensor, *, target: bool = False, detach: bool = False) -> torch.Tensor:
        """Both Q-values stacked: ``[2, ..., 1]``.

        ``target``: the Polyak-averaged copies. ``detach``: the online Qs with their
        parameters cut from the graph (gradients reach ``a`` and ``z`` only), for the policy loss.
        """
        x = torch.cat([z, a], dim=-1)
        if target:
            return torch.stack([q(x) for q in self._target_Qs])
        if detach:
            return torch.stack([_call_detached(q, x) for q in self._Qs])
        return torch.stack([q(x) for q in self._Qs])

    def pi(self, z: torch.Tensor, std: float = 0.0) -> torch.Tensor:
        """Policy action in ``[-1, 1]``: ``tanh(mu(z))``, plus clipped N(0, std) noise if ``std > 0``.

        The clamp to the bounds after the noise passes gradients straight through (as the
        authors' ``TruncatedNormal.sample``).
        """
        mu = torch.tanh(self._pi(z))
        if std <= 0:
            return mu
        eps = (torch.randn_like(mu) * std).clamp(-self.pi_noise_clip, self.pi_noise_clip)
        x = mu + eps
        return x + (x.clamp(-1.0 + 1e-6, 1.0 - 1e-6) - x).detach()

    # --- parameters -------------------------------------------------------------------
    def model_modules(self) -> dict[str, nn.Module]:
        """The parts trained by the model loss, by name (for optimizers and grad norms)."""
        return {"encoder": self._encoder, "dynamics": self._dynamics, "reward": self._reward, "q": self._Qs}

    def policy_modules(self) -> dict[str, nn.Module]:
        """The parts trained by the policy loss, by name."""
        return {"pi": self._pi}

    @torch.no_grad()
    def update_targets(self, tau: float) -> None:
        """Polyak-average the target encoder and target Qs towards the online ones."""
        ema_update_(self._target_encoder, self._encoder, tau)
        ema_update_(self._target_Qs, self._Qs, tau)


def _call_detached(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    params = {name: p.detach() for name, p in module.named_parameters()}
    return functional_call(module, params, (x,))
