"""Dreamer's world model: encoder, RSSM, observation decoder, reward and continue heads.

Plain modules, tensors in and out; the pieces themselves are the core's
(:mod:`wmlab.nets.rssm`, :mod:`wmlab.nets.conv`, :mod:`wmlab.nets.heads`). The model is
used through verbs: ``encode``, ``decode``, ``obs_nll``, ``reward``, ``cont``; the RSSM's
own verbs (``observe``, ``imagine``, ...) are reached as ``world_model.rssm``.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from wmlab.nets import (
    RSSM,
    BernoulliHead,
    ConvDecoder,
    ConvEncoder,
    GaussianHead,
    gaussian_nll,
    mlp,
    preprocess_obs,
)


def make_encoder(obs_shape: Sequence[int], *, cnn_depth: int, units: int, layers: int) -> nn.Module:
    """Images ``[3, 64, 64]``: Dreamer's conv encoder; vectors: an ELU MLP to ``units``."""
    if len(obs_shape) == 3:
        return ConvEncoder(obs_shape, depth=cnn_depth)
    encoder = mlp(int(obs_shape[0]), [units] * layers, units, act="elu")
    encoder.out_dim = units
    return encoder


def make_decoder(obs_shape: Sequence[int], feat_dim: int, *, cnn_depth: int, units: int,
                 layers: int) -> nn.Module:
    """The mean of a unit-variance Gaussian over the observation, from features."""
    if len(obs_shape) == 3:
        return ConvDecoder(feat_dim, obs_shape, depth=cnn_depth)
    return GaussianHead(feat_dim, int(obs_shape[0]), hidden=units, layers=layers)


class WorldModel(nn.Module):
    """Encoder, RSSM, decoder, reward head and an optional continue head."""

    def __init__(self, *, encoder: nn.Module, rssm: RSSM, decoder: nn.Module, reward: GaussianHead,
                 cont: BernoulliHead | None = None, obs_ndim: int = 1):
        super().__init__()
        self.encoder, self.rssm, self.decoder, self.reward_head = encoder, rssm, decoder, reward
        self.cont_head = cont
        self.obs_ndim = obs_ndim

    def encode(self, obs: torch.Tensor) -> torch.Tensor:
        """Raw observations ``[..., *obs_shape]`` -> embeddings ``[..., E]``."""
        return self.encoder(preprocess_obs(obs))

    def decode(self, feat: torch.Tensor) -> torch.Tensor:
        """Features ``[..., F]`` -> predicted observation ``[..., *obs_shape]`` (images in
        [-0.5, 0.5], as :func:`wmlab.nets.preprocess_obs` scales them)."""
        return self.decoder(feat)

    def obs_nll(self, feat: torch.Tensor, obs: torch.Tensor) -> torch.Tensor:
        """``-log p(o | s)``, summed over the observation's dims: ``[...]``."""
        return gaussian_nll(self.decode(feat), preprocess_obs(obs), self.obs_ndim)

    def reward(self, feat: torch.Tensor) -> torch.Tensor:
        """Predicted reward (the mean) ``[..., 1]`` received on arriving in each state."""
        return self.reward_head(feat)

    def cont(self, feat: torch.Tensor) -> torch.Tensor | None:
        """Probability that the episode goes on in each state ``[..., 1]``, or ``None``."""
        return None if self.cont_head is None else self.cont_head.prob(feat)

    def parts(self) -> dict[str, nn.Module]:
        """The trained parts by name (for the optimizer and grad-norm logging)."""
        parts = {"encoder": self.encoder, "rssm": self.rssm, "decoder": self.decoder,
                 "reward": self.reward_head}
        if self.cont_head is not None:
            parts["continue"] = self.cont_head
        return parts
