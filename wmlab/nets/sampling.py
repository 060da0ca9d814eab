"""Sampling helpers shared by the latent and action distributions."""

from __future__ import annotations

import torch


def categorical_index(probs: torch.Tensor) -> torch.Tensor:
    """One index per row of ``probs [..., C]`` (non-negative, each row with a positive sum,
    not necessarily normalised), drawn with probability ``probs[..., k] / sum``: ``[...]``
    (int64).

    Inverse-CDF sampling: one uniform number per row, compared with the row's running sum.
    ``torch.multinomial`` draws one exponential number per class instead; for DreamerV2's
    32 x 32 latents of a 16 x 50 batch (25,600 rows of 32) that took 36-60 ms per call on one
    CPU core against about 7 ms here, and imagination calls it at every step. Classes of
    zero probability are never drawn: the index is the first class whose running sum
    exceeds the uniform threshold ``u * sum`` with ``u`` in [0, 1)."""
    cdf = probs.float().cumsum(-1)  # (a running sum in bfloat16 would bias the draw)
    threshold = torch.rand(probs.shape[:-1] + (1,), dtype=cdf.dtype, device=cdf.device) * cdf[..., -1:]
    return (cdf <= threshold).sum(-1).clamp_max_(probs.shape[-1] - 1)
