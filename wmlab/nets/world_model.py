"""An RSSM world model and the replay-to-sequence plumbing around it, shared by the RSSM
methods (PlaNet, Dreamer, DreamerV2, Plan2Explore).

* :func:`make_encoder` / :func:`make_decoder`: the conv encoder and decoder for 64x64 images
  (:mod:`wmlab.nets.conv`), MLPs for state vectors.
* :class:`WorldModel`: encoder, :class:`~wmlab.nets.rssm.RSSM`, decoder, reward head and an
  optional continue head, used through verbs (``encode``, ``decode``, ``obs_nll``, ``reward``,
  ``cont``, ``parts``); the RSSM's own verbs are reached as ``world_model.rssm``.
* :func:`to_sequences`: a replay batch ``[B, T]`` as time-major :class:`Sequences` lined up for
  the RSSM (``prev_action[t]`` is the action that led to ``o_t``).
* :func:`openloop_video`: real frames beside the model's, reconstructed for ``context`` frames
  and then imagined open loop from the same actions (PlaNet's and Dreamer's summaries, the
  authors' ``open_loop_context = 5``).
* :func:`quantize_pixels`: PlaNet's 5-bit image preprocessing.
* :class:`RSSMPolicy`: the acting side, which filters observations into the posterior and keeps
  it (and the previous action) per env between calls.

Layout (time-major, see :mod:`wmlab.keys`)::

    t:            0        1        2      ...
    obs           o_0      o_1      o_2
    prev_action   0        a_0      a_1          a_{t-1}: led to o_t
    reward        r_0      r_1      r_2          r_t: after a_t, predicted from the state at t + 1
"""

from __future__ import annotations

from typing import Callable, NamedTuple, Sequence

import torch
from tensordict import TensorDictBase
from torch import nn

from wmlab import keys
from wmlab.api import Policy
from wmlab.errors import ConfigError
from wmlab.nets.conv import ConvDecoder, ConvEncoder
from wmlab.nets.heads import BernoulliHead, GaussianHead, gaussian_nll
from wmlab.nets.mlp import mlp, preprocess_obs
from wmlab.nets.rssm import RSSM, RSSMState


def make_encoder(obs_shape: Sequence[int], *, cnn_depth: int, units: int, layers: int,
                 act: str = "elu", cnn_act: str = "relu") -> nn.Module:
    """Images ``[3, 64, 64]``: the conv encoder (``cnn_act``: ReLU as PlaNet and Dreamer, ELU
    as DreamerV2); vectors: an MLP of ``layers`` x ``units`` to ``units`` features. The
    module has ``out_dim``."""
    if len(obs_shape) == 3:
        if tuple(obs_shape[1:]) != (64, 64):
            raise ConfigError(f"the conv encoder and decoder of the RSSM methods read 64x64 images, not "
                              f"{obs_shape[1]}x{obs_shape[2]}: set env.image_size=64")
        return ConvEncoder(obs_shape, depth=cnn_depth, act=cnn_act)
    encoder = mlp(int(obs_shape[0]), [units] * layers, units, act=act)
    encoder.out_dim = units
    return encoder


def make_decoder(obs_shape: Sequence[int], feat_dim: int, *, cnn_depth: int, units: int,
                 layers: int, act: str = "elu", cnn_act: str = "relu") -> nn.Module:
    """The mean of a unit-variance Gaussian over the observation, from features ``[..., F]``."""
    if len(obs_shape) == 3:
        return ConvDecoder(feat_dim, obs_shape, depth=cnn_depth, act=cnn_act)
    return GaussianHead(feat_dim, int(obs_shape[0]), hidden=units, layers=layers, act=act)


def quantize_pixels(obs: torch.Tensor, bits: int = 5) -> torch.Tensor:
    """``uint8`` images to ``bits`` bits in ``[-0.5, 0.5]`` with uniform dequantisation noise
    (PlaNet, Hafner et al. 2019, Appendix A; authors' ``tools/preprocess.py``:
    ``floor(x / 2^(8-bits)) / 2^bits + U(0, 2^-bits) - 0.5``). Float inputs (already scaled)
    and ``bits >= 8`` fall back to :func:`~wmlab.nets.preprocess_obs`."""
    if obs.dtype != torch.uint8 or bits >= 8:
        return preprocess_obs(obs)
    bins = 2 ** bits
    x = torch.div(obs, 2 ** (8 - bits), rounding_mode="floor").float() / bins
    return x + torch.rand_like(x) / bins - 0.5


class WorldModel(nn.Module):
    """Encoder, RSSM, decoder, reward head and an optional continue head.

    ``preprocess`` maps raw observations to network inputs and reconstruction targets
    (default :func:`~wmlab.nets.preprocess_obs`; PlaNet: :func:`quantize_pixels`)."""

    def __init__(self, *, encoder: nn.Module, rssm: RSSM, decoder: nn.Module, reward: GaussianHead,
                 cont: BernoulliHead | None = None, obs_ndim: int = 1,
                 preprocess: Callable[[torch.Tensor], torch.Tensor] = preprocess_obs):
        super().__init__()
        self.encoder, self.rssm, self.decoder, self.reward_head = encoder, rssm, decoder, reward
        self.cont_head = cont
        self.obs_ndim = obs_ndim
        self.preprocess = preprocess

    def encode(self, obs: torch.Tensor) -> torch.Tensor:
        """Raw observations ``[..., *obs_shape]`` -> embeddings ``[..., E]``."""
        return self.encoder(self.preprocess(obs))

    def decode(self, feat: torch.Tensor) -> torch.Tensor:
        """Features ``[..., F]`` -> predicted observation ``[..., *obs_shape]`` (images in
        [-0.5, 0.5], the scale of ``preprocess``)."""
        return self.decoder(feat)

    def obs_nll(self, feat: torch.Tensor, obs: torch.Tensor) -> torch.Tensor:
        """``-log p(o | s)``, summed over the observation's dims: ``[...]``."""
        return gaussian_nll(self.decode(feat), self.preprocess(obs), self.obs_ndim)

    def reward(self, feat: torch.Tensor) -> torch.Tensor:
        """Predicted reward (the mean) ``[..., 1]`` received on arriving in each state."""
        return self.reward_head(feat)

    def cont(self, feat: torch.Tensor) -> torch.Tensor | None:
        """Probability that the episode goes on in each state ``[..., 1]``, or ``None``."""
        return None if self.cont_head is None else self.cont_head.prob(feat)

    def compiled_modules(self) -> list[str]:
        """The networks every update and policy step runs (names under this module), for
        ``run.compile``: the RSSM's prior and posterior nets and recurrent cell, the encoder,
        the decoder and the reward head."""
        return ["encoder", "decoder", "reward_head", "rssm.img_in", "rssm.cell", "rssm.img_out",
                "rssm.obs_out"]

    def parts(self) -> dict[str, nn.Module]:
        """The trained parts by name (for the optimizer and grad-norm logging)."""
        parts = {"encoder": self.encoder, "rssm": self.rssm, "decoder": self.decoder,
                 "reward": self.reward_head}
        if self.cont_head is not None:
            parts["continue"] = self.cont_head
        return parts


class Sequences(NamedTuple):
    """A replay batch, time-major, lined up for the RSSM."""

    obs: torch.Tensor
    """``[T, B, *obs]``: o_t, raw (uint8 images or float vectors)."""
    prev_action: torch.Tensor
    """``[T, B, A]``: a_{t-1} in [-1, 1], the action that led to o_t (0 at t = 0)."""
    reward: torch.Tensor
    """``[T, B, 1]``: r_t, received after a_t (so predicted from the state at t + 1)."""
    cont: torch.Tensor
    """``[T, B, 1]``: 1 - terminated_t, whether the episode goes on after a_t."""
    is_first: torch.Tensor
    """``[T, B]`` bool: o_t starts an episode, or t = 0 (every sequence starts from the
    initial state, as in the authors' code)."""


def to_sequences(batch: TensorDictBase,
                 from_env_action: Callable[[torch.Tensor], torch.Tensor] = lambda a: a) -> Sequences:
    """Batch-major ``[B, T]`` TensorDict -> time-major :class:`Sequences`; ``from_env_action``
    maps env actions to the model's [-1, 1]."""
    B, T = batch.batch_size[:2]
    t_major = lambda x: x.reshape(B, T, -1).float().transpose(0, 1)  # noqa: E731
    action = from_env_action(t_major(batch.get(keys.ACTION)))  # [T, B, A]
    prev_action = torch.cat([torch.zeros_like(action[:1]), action[:-1]])
    is_first = batch.get(keys.IS_INIT).reshape(B, T).transpose(0, 1).clone()
    is_first[0] = True
    terminated = batch.get(keys.TERMINATED, None)
    reward = t_major(batch.get(keys.REWARD))
    cont = torch.ones_like(reward) if terminated is None else 1.0 - t_major(terminated)
    return Sequences(obs=batch.get(keys.OBSERVATION).transpose(0, 1), prev_action=prev_action,
                     reward=reward, cont=cont, is_first=is_first)


@torch.no_grad()
def openloop_video(world_model: WorldModel, data: Sequences, *, context: int = 5) -> torch.Tensor:
    """Open-loop prediction of image sequences ``data [T, n]``: real frames (left) beside the
    model's (right), reconstructions for ``context`` frames, then imagined from the same actions
    alone (the prior's mode); the ``n`` sequences stacked vertically: ``uint8 [T, n*H, 2W, 3]``."""
    wm = world_model
    posts, _ = wm.rssm.observe(wm.encode(data.obs[:context]), data.prev_action[:context],
                               data.is_first[:context])
    priors = wm.rssm.open_loop(posts.select(-1), data.prev_action[context:])  # [T-C, n]
    model = wm.decode(wm.rssm.get_feat(RSSMState.cat([posts, priors])))  # [T, n, 3, H, W]
    frames = torch.cat([preprocess_obs(data.obs), model], -1) + 0.5  # [T, n, 3, H, 2W]
    frames = frames.permute(0, 1, 3, 4, 2).flatten(1, 2)  # [T, n*H, 2W, 3]
    return (frames.clamp(0, 1) * 255).to(torch.uint8).cpu()


class RSSMPolicy(Policy):
    """Acts through ``method.act(state [B], prev_action [B, A], obs, is_init, explore=...) ->
    (action in [-1, 1] [B, A], posterior [B])`` (one filtering step, then an actor or a planner)
    and ``method.to_env_action``; keeps the posterior and the executed action per env between
    calls. ``method.act`` resets both where ``is_init`` is true (:meth:`RSSM.obs_step` does)."""

    def __init__(self, method, *, explore: bool):
        super().__init__(device=method.device)
        object.__setattr__(self, "_method", method)  # a reference, not a submodule
        self.explore = explore
        self._state: RSSMState | None = None  # [B]
        self._action: torch.Tensor | None = None  # [B, A]

    def act(self, obs: torch.Tensor, is_init: torch.Tensor) -> torch.Tensor:
        m = self._method
        obs, is_init = obs.to(m.device), is_init.to(m.device)
        if self._state is None or self._state.deter.shape[0] != obs.shape[0]:
            self._state = m.world_model.rssm.initial(obs.shape[0], m.device)
            self._action = torch.zeros(obs.shape[0], m.specs.action_dim, device=m.device)
        self._action, self._state = m.act(self._state, self._action, obs, is_init, explore=self.explore)
        return m.to_env_action(self._action)
