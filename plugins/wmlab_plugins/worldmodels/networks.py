"""World Models' three parts: V (a convolutional VAE), M (an MDN-RNN) and C (a linear
controller), as plain modules and functions on tensors, and their losses."""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from wmlab.nets.conv import ConvDecoder, ConvEncoder
from wmlab.nets.mlp import preprocess_obs

# --------------------------------------------------------------------------------------
# V: the convolutional VAE


class VAE(nn.Module):
    """Frames ``uint8 [..., 3, 64, 64]`` -> z ``[..., z_dim]`` and back (the paper's V: four
    stride-2 convolutions of depth d, 2d, 4d, 8d with kernel 4 and ReLU, dense mean and
    log-variance; a dense layer and four transposed convolutions, kernels 5, 5, 6, 6, a
    sigmoid at the end)."""

    def __init__(self, obs_shape=(3, 64, 64), *, z_dim: int = 32, depth: int = 32):
        super().__init__()
        self.encoder = ConvEncoder(obs_shape, depth=depth)
        self.mean = nn.Linear(self.encoder.out_dim, z_dim)
        self.logvar = nn.Linear(self.encoder.out_dim, z_dim)
        self.decoder = ConvDecoder(z_dim, obs_shape, depth=depth)
        self.z_dim = z_dim

    def encode(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and log-variance ``[..., z_dim]`` of q(z | frame) (float32 under mixed
        precision, as the outputs below)."""
        h = self.encoder(preprocess_obs(obs))
        return self.mean(h).float(), self.logvar(h).float()

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Frames in [0, 1], ``[..., 3, 64, 64]``."""
        return torch.sigmoid(self.decoder(z).float())


def vae_loss(target: torch.Tensor, recon: torch.Tensor, mean: torch.Tensor,
             logvar: torch.Tensor, kl_tolerance: float) -> dict[str, torch.Tensor]:
    """The paper's V loss on a batch ``[B, ...]`` of frames in [0, 1]: the squared error
    summed over a frame's pixels, plus the KL of q(z | frame) to N(0, I) summed over z and
    floored per frame at ``kl_tolerance * z_dim``; each averaged over the batch.

    Returns ``{"loss", "reconstruction", "kl"}`` (``kl`` before the floor)."""
    recon_err = (recon - target).pow(2).flatten(1).sum(-1)  # [B]
    kl = -0.5 * (1 + logvar - mean.pow(2) - logvar.exp()).sum(-1)  # [B]
    floored = kl.clamp(min=kl_tolerance * mean.shape[-1])
    return {"loss": (recon_err + floored).mean(), "reconstruction": recon_err.mean(),
            "kl": kl.mean()}


# --------------------------------------------------------------------------------------
# M: the mixture density network RNN


class Mixture(NamedTuple):
    """A mixture of ``K`` diagonal Gaussians per z dimension: ``[..., z_dim, K]`` each."""

    logits: torch.Tensor
    mean: torch.Tensor
    logstd: torch.Tensor


def mixture_log_prob(mix: Mixture, z: torch.Tensor) -> torch.Tensor:
    """``log p(z)`` ``[..., z_dim]`` of ``z`` ``[..., z_dim]``, per dimension (each dimension
    has its own mixture of ``K`` one-dimensional Gaussians, as the paper's M)."""
    z = z.unsqueeze(-1)
    log_gauss = (-0.5 * ((z - mix.mean) / mix.logstd.exp()).pow(2) - mix.logstd
                 - 0.5 * math.log(2 * math.pi))
    return torch.logsumexp(mix.logits.log_softmax(-1) + log_gauss, -1)


def sample_mixture(mix: Mixture, temperature: float = 1.0,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """One z ``[..., z_dim]`` from the mixture at ``temperature`` tau: the weights'
    logits divided by tau, each Gaussian's variance multiplied by tau."""
    tau = float(temperature)
    probs = (mix.logits / tau).softmax(-1)
    flat = probs.reshape(-1, probs.shape[-1])
    pick = torch.multinomial(flat, 1, generator=generator).reshape(*probs.shape[:-1], 1)
    mean = mix.mean.gather(-1, pick).squeeze(-1)
    std = mix.logstd.gather(-1, pick).squeeze(-1).exp() * math.sqrt(tau)
    noise = torch.randn(mean.shape, generator=generator, device=mean.device)
    return mean + std * noise


#: M's pieces between resets run in groups whose shortest is at least 1 / this of the longest
PIECE_RATIO = 1.5


class MDNRNN(nn.Module):
    """M: an LSTM over ``[z_t, a_t]`` whose output predicts z_{t+1} as a mixture of
    ``mixtures`` Gaussians per dimension (and, with ``done_head``, the episode's end)."""

    def __init__(self, *, z_dim: int, action_dim: int, hidden: int = 256, mixtures: int = 5,
                 done_head: bool = False):
        super().__init__()
        self.z_dim, self.hidden, self.mixtures = z_dim, hidden, mixtures
        # one LSTM layer, stepped (dreams, acting) or run over whole sequences (training)
        self.lstm = nn.LSTM(z_dim + action_dim, hidden)
        self.mdn = nn.Linear(hidden, 3 * z_dim * mixtures)
        self.done = nn.Linear(hidden, 1) if done_head else None

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # checkpoints written before M held an ``nn.LSTM`` name an ``nn.LSTMCell``'s
        # parameters (``cell.weight_ih``...); the tensors are the same
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            old = f"{prefix}cell.{name}"
            if old in state_dict:
                state_dict[f"{prefix}lstm.{name}_l0"] = state_dict.pop(old)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def initial_state(self, batch: int, device=None) -> tuple[torch.Tensor, torch.Tensor]:
        zeros = torch.zeros(batch, self.hidden, device=device)
        return zeros, zeros.clone()

    def step(self, z: torch.Tensor, action: torch.Tensor,
             state: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """The LSTM state ``(h, c)`` ``[B, hidden]`` after reading ``z`` and ``action``."""
        out, (h, c) = self.lstm(torch.cat([z, action], -1).unsqueeze(0),
                                (state[0].unsqueeze(0), state[1].unsqueeze(0)))
        return h.squeeze(0), c.squeeze(0)

    def heads(self, h: torch.Tensor) -> tuple[Mixture, torch.Tensor | None]:
        """The next z's mixture (``[..., z_dim, K]`` each) and the done logit ``[...]``."""
        out = self.mdn(h).float().reshape(*h.shape[:-1], self.z_dim, 3, self.mixtures)
        mix = Mixture(out[..., 0, :], out[..., 1, :], out[..., 2, :].clamp(-7.0, 5.0))
        done = self.done(h).float().squeeze(-1) if self.done is not None else None
        return mix, done

    def unroll(self, z: torch.Tensor, action: torch.Tensor,
               reset: torch.Tensor | None = None) -> torch.Tensor:
        """LSTM outputs h ``[B, T, hidden]`` over a sequence ``z`` ``[B, T, z_dim]``, ``action``
        ``[B, T, A]`` from a zero state (h_t has read steps 0..t); where ``reset`` ``[B, T]``
        is set (a new episode starts at step t) the state is zeroed before step t is read.

        Whole sequences go through the LSTM's fused kernel (an update 1.8x faster than
        stepping the LSTM at the ``cpu`` preset's sizes on a CPU, 1.24x at the ``doom``
        preset's; ``benchmarks/worldmodels_m_update.py``): the rows are cut at their resets into pieces that each start from a
        zero state, and pieces of similar length (within ``PIECE_RATIO`` of the longest of
        their group) run as one padded batch; padding after a piece cannot reach its
        outputs."""
        x = torch.cat([z, action], -1)  # [B, T, I]
        batch, steps = x.shape[:2]
        if reset is None or not bool(reset[:, 1:].any()):
            return self.lstm(x.transpose(0, 1))[0].transpose(0, 1)
        starts = reset.clone()
        starts[:, 0] = True
        starts = starts.reshape(-1)
        piece = starts.long().cumsum(0) - 1  # [B * T]: the piece of each step
        t = torch.arange(steps, device=x.device).repeat(batch)
        pos = t - t[starts][piece]  # [B * T]: the step's place in its piece
        lengths = torch.bincount(piece)  # [P]
        order = lengths.argsort(descending=True)
        sorted_lengths = lengths[order].tolist()
        flat = x.reshape(batch * steps, -1)
        outs, taken, first = [], [], 0
        while first < len(order):
            last = first
            while last < len(order) and sorted_lengths[last] * PIECE_RATIO >= sorted_lengths[first]:
                last += 1
            slot = torch.full_like(lengths, -1)  # [P]: the column of each piece in this group
            slot[order[first:last]] = torch.arange(last - first, device=x.device)
            rows = (slot[piece] >= 0).nonzero().squeeze(1)  # the steps of this group's pieces
            where = (pos[rows], slot[piece[rows]])
            padded = flat.new_zeros(sorted_lengths[first], last - first, flat.shape[-1])
            outs.append(self.lstm(padded.index_put(where, flat[rows]))[0][where])
            taken.append(rows)
            first = last
        back = torch.empty_like(piece)
        back[torch.cat(taken)] = torch.arange(batch * steps, device=x.device)
        return torch.cat(outs)[back].reshape(batch, steps, -1)


def mdn_loss(mix: Mixture, target: torch.Tensor, done_logit: torch.Tensor | None = None,
             done: torch.Tensor | None = None, done_weight: float = 1.0,
             mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """M's loss: the negative log-likelihood of the next z ``target`` ``[..., z_dim]``
    under ``mix``, averaged over z dimensions and steps (the authors' ``z_cost``), plus
    with a done head the binary cross-entropy of ``done`` ``[...]`` with ending steps
    weighted ``done_weight``. ``mask`` ``[...]`` (1: a real transition) averages only over
    those steps."""
    nll = -mixture_log_prob(mix, target).mean(-1)  # [...]
    mask = torch.ones_like(nll) if mask is None else mask.to(nll.dtype)
    denom = mask.sum().clamp(min=1.0)
    terms = {"z": (nll * mask).sum() / denom}
    loss = terms["z"]
    if done_logit is not None and done is not None:
        target_done = done.to(nll.dtype)
        weight = 1.0 + (done_weight - 1.0) * target_done
        bce = F.binary_cross_entropy_with_logits(done_logit, target_done, reduction="none")
        terms["done"] = (bce * weight * mask).sum() / denom
        loss = loss + terms["done"]
    terms["loss"] = loss
    return terms


# --------------------------------------------------------------------------------------
# C: the linear controller


def controller_shapes(in_dim: int, out_dim: int, bias: bool = True) -> tuple[int, int]:
    """``(rows, params)``: a controller on ``in_dim`` features with ``out_dim`` outputs has a
    weight ``[out_dim, in_dim]`` and, with ``bias``, a bias ``[out_dim]``: ``out_dim * (in_dim
    + 1)`` parameters (CarRacing: 3 * (32 + 256) + 3 = 867), without it ``out_dim * in_dim``
    (the authors' Doom controller: 1 * (64 + 512 + 512) = 1,088)."""
    return out_dim, out_dim * (in_dim + int(bias))


def controller_act(params: torch.Tensor, features: torch.Tensor, out_dim: int) -> torch.Tensor:
    """``tanh(W x + b)`` of flat parameter vectors ``params`` ``[..., out_dim * (in + 1)]``
    (W row-major, then b) on ``features`` ``[..., in]`` -> ``[..., out_dim]``; parameter
    vectors of ``out_dim * in`` entries are W alone (no bias)."""
    in_dim = features.shape[-1]
    w = params[..., :out_dim * in_dim].reshape(*params.shape[:-1], out_dim, in_dim)
    out = (w @ features.unsqueeze(-1)).squeeze(-1)
    if params.shape[-1] > out_dim * in_dim:
        out = out + params[..., out_dim * in_dim:]
    return torch.tanh(out)
