"""Dreamer's convolutional image encoder and transposed-convolution decoder.

As in Hafner et al. 2019/2020 (PlaNet arXiv 1811.04551, Dreamer arXiv 1912.01603,
authors' code ``models.py``): 64x64x3 images, 4 conv layers of depth ``d, 2d, 4d, 8d``
(kernel 4, stride 2, ReLU, no padding) giving a ``32 d``-dimensional embedding (1024 for
``d = 32``); the decoder maps a feature vector through a Linear to ``32 d`` channels at
1x1 and 4 transposed convolutions (kernels 5, 5, 6, 6, stride 2) back to 64x64x3, the mean
of a unit-variance Gaussian over pixels.

Images are channels-first ``[..., 3, 64, 64]``; any number of leading dims is allowed.

Speed, not maths: on a CPU the convolutions run on channels-last tensors
(``torch.channels_last``, oneDNN's native layout; elsewhere the layout is left as it comes,
not measured on a GPU), and the decoder's first transposed convolution, whose input
is a single pixel, runs as the matrix product it amounts to (:class:`PointDeconv`); plain
``nn.ConvTranspose2d`` runs that layer at a tenth of the CPU's matrix speed. Outputs equal the
plain layers' to float rounding, parameters and ``state_dict`` keys are those of the plain
layers. On a 2-core Intel Xeon, 1 thread, 800 images (DreamerV2's batch, depth 48), encoder
and decoder forward and backward: 1.50x as fast in float32, 2.53x in ``bf16-mixed``
(``benchmarks/conv_throughput.py``).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from wmlab.nets.mlp import activation


def cpu_channels_last(x: torch.Tensor) -> torch.Tensor:
    """``x [N, C, H, W]`` in channels-last memory on a CPU (the same values); as it is elsewhere."""
    return x.contiguous(memory_format=torch.channels_last) if x.device.type == "cpu" else x


class PointDeconv(nn.ConvTranspose2d):
    """``nn.ConvTranspose2d`` (no padding, dilation or groups) that computes a 1x1 input as
    one matrix product: each input channel scatters its kernel ``[C_out, k, k]`` scaled by its
    value, so the output is ``x [N, C_in] @ W [C_in, C_out * k * k]`` plus the bias per
    output channel. Other inputs take the plain layer's path."""

    def forward(self, x: torch.Tensor, output_size=None) -> torch.Tensor:
        plain = (self.padding != (0, 0) or self.output_padding != (0, 0) or self.dilation != (1, 1)
                 or self.groups != 1 or output_size is not None)
        if plain or x.dim() != 4 or x.shape[-2:] != (1, 1):
            return super().forward(x, output_size)
        kh, kw = self.kernel_size
        x, weight = x.flatten(1), self.weight.flatten(1)  # [N, C_in], [C_in, C_out * kh * kw]
        out = x @ weight if self.bias is None else \
            torch.addmm(self.bias.repeat_interleave(kh * kw), x, weight)  # (as the plain layer under autocast)
        return out.view(x.shape[0], self.out_channels, kh, kw)


class ConvEncoder(nn.Module):
    """``[..., C, 64, 64]`` (scaled to [-0.5, 0.5]) -> ``[..., 32 * depth]``."""

    def __init__(self, obs_shape: Sequence[int] = (3, 64, 64), *, depth: int = 32, act: str = "relu"):
        super().__init__()
        c = obs_shape[0]
        layers: list[nn.Module] = []
        for mult in (1, 2, 4, 8):
            layers += [nn.Conv2d(c, mult * depth, 4, stride=2), activation(act)]
            c = mult * depth
        self.convs = nn.Sequential(*layers)
        with torch.no_grad():
            self.out_dim = int(self.convs(torch.zeros(1, *obs_shape)).numel())
        self.obs_shape = tuple(obs_shape)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        lead = obs.shape[:-3]
        x = cpu_channels_last(obs.reshape(-1, *obs.shape[-3:]))
        x = self.convs(x)  # [N, 8d, 2, 2]
        return x.reshape(*lead, -1)  # [..., 32d] (reshape reads in channels-first order)


class ConvDecoder(nn.Module):
    """``[..., feat_dim]`` -> image mean ``[..., C, 64, 64]`` (in the encoder's scale)."""

    def __init__(self, feat_dim: int, obs_shape: Sequence[int] = (3, 64, 64), *, depth: int = 32,
                 act: str = "relu"):
        super().__init__()
        if tuple(obs_shape[1:]) != (64, 64):
            raise ValueError(f"ConvDecoder produces 64x64 images, not {tuple(obs_shape)}")
        self.depth = depth
        self.linear = nn.Linear(feat_dim, 32 * depth)
        chans = [32 * depth, 4 * depth, 2 * depth, depth]
        layers: list[nn.Module] = []
        for c_in, c_out, k in zip(chans[:-1], chans[1:], (5, 5, 6)):
            deconv = PointDeconv if not layers else nn.ConvTranspose2d  # the first reads 1x1
            layers += [deconv(c_in, c_out, k, stride=2), activation(act)]
        layers.append(nn.ConvTranspose2d(depth, obs_shape[0], 6, stride=2))
        self.deconvs = nn.Sequential(*layers)
        self.obs_shape = tuple(obs_shape)

    def forward(self, feat: torch.Tensor) -> torch.Tensor:
        lead = feat.shape[:-1]
        x = self.linear(feat).reshape(-1, 32 * self.depth, 1, 1)  # [N, 32d, 1, 1]
        x = self.deconvs[1](self.deconvs[0](x))  # [N, 4d, 5, 5]
        x = self.deconvs[2:](cpu_channels_last(x))  # [N, C, 64, 64]
        return x.reshape(*lead, *self.obs_shape)
