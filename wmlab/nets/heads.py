"""Prediction heads on latent features: Gaussian (reward, value, decoders), Bernoulli
(continue / discount), the tanh-Normal actor (Dreamer) and the truncated-Normal actor
(DreamerV2) for continuous actions, and the one-hot actor (discrete actions).

As Dreamer's ``DenseDecoder`` and ``ActionDecoder`` (Hafner et al. 2020, arXiv 1912.01603;
authors' code ``models.py``): an ELU MLP, then a unit-variance Normal over the target
(reward: 2 hidden layers, value: 3, of 400 units), a Bernoulli over "the episode continues"
(3 layers), and for actions a Normal squashed by tanh (4 layers) with
``mean = 5 tanh(mu / 5)`` and ``std = softplus(s + softplus^-1(5)) + 1e-4``.

For discrete actions (DreamerV1 and V2 on Atari) the actor is a categorical over the
choices whose samples are one-hot vectors with straight-through gradients (authors' code,
``OneHotDist``), so the same imagination and dynamics-gradient code serves both kinds.

All actors offer the same verbs: ``sample`` (action and log-probability), ``mode`` (the
evaluation action), ``log_prob`` (of a given action, for REINFORCE) and ``entropy``.
``sample``, ``log_prob`` and ``entropy`` also take ``out=``, the actor's output (``forward``)
for those features computed before: imagination keeps the output of each step
(:func:`record_actor_outputs`) so that the actor's loss does not run the MLP again over
every imagined state.

Negative log-likelihoods include their constants, so logged losses are true NLLs in nats.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from wmlab.nets.mlp import mlp
from wmlab.nets.sampling import categorical_index

_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


def gaussian_nll(mean: torch.Tensor, target: torch.Tensor, event_dims: int = 1) -> torch.Tensor:
    """``-log N(target; mean, 1)`` summed over the last ``event_dims`` dims: ``[...]``."""
    nll = 0.5 * (target - mean).pow(2) + _HALF_LOG_2PI
    return nll.flatten(-event_dims).sum(-1) if event_dims > 0 else nll


def bernoulli_nll(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``-log Bernoulli(target; sigmoid(logits))`` summed over the last dim: ``[...]``."""
    return F.binary_cross_entropy_with_logits(logits, target, reduction="none").sum(-1)


class GaussianHead(nn.Module):
    """Features ``[..., F]`` -> mean ``[..., out_dim]`` of a unit-variance Normal.

    Reward and value heads (``out_dim=1``) and the state-vector decoder."""

    def __init__(self, in_dim: int, out_dim: int = 1, *, hidden: int = 400, layers: int = 2,
                 act: str = "elu"):
        super().__init__()
        self.net = mlp(in_dim, [hidden] * layers, out_dim, act=act)

    def forward(self, feat: torch.Tensor) -> torch.Tensor:
        return self.net(feat)

    def nll(self, feat: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """``[...]``: negative log-likelihood of ``target [..., out_dim]``."""
        return gaussian_nll(self(feat), target)


class BernoulliHead(nn.Module):
    """Features ``[..., F]`` -> logits ``[..., 1]`` of "the episode continues" (the continue
    or ``pcont`` head; Dreamer's optional discount predictor)."""

    def __init__(self, in_dim: int, *, hidden: int = 400, layers: int = 3, act: str = "elu"):
        super().__init__()
        self.net = mlp(in_dim, [hidden] * layers, 1, act=act)

    def forward(self, feat: torch.Tensor) -> torch.Tensor:
        return self.net(feat)

    def prob(self, feat: torch.Tensor) -> torch.Tensor:
        """``[..., 1]``: probability of continuing (the mean of the Bernoulli)."""
        return torch.sigmoid(self(feat))

    def nll(self, feat: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """``[...]``: negative log-likelihood of ``target [..., 1]`` in [0, 1]."""
        return bernoulli_nll(self(feat), target)


class TanhNormalActor(nn.Module):
    """Dreamer's action model: ``tanh(Normal(mean, std))`` per action dimension, in [-1, 1]."""

    def __init__(self, in_dim: int, action_dim: int, *, hidden: int = 400, layers: int = 4,
                 act: str = "elu", init_std: float = 5.0, min_std: float = 1e-4, mean_scale: float = 5.0):
        super().__init__()
        self.net = mlp(in_dim, [hidden] * layers, 2 * action_dim, act=act)
        self.raw_init_std = math.log(math.expm1(init_std))  # softplus^-1(init_std)
        self.min_std, self.mean_scale = min_std, mean_scale

    def forward(self, feat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Pre-tanh ``mean, std``: ``[..., A]`` each."""
        mean, std = self.net(feat).chunk(2, -1)
        mean = self.mean_scale * torch.tanh(mean / self.mean_scale)
        std = F.softplus(std + self.raw_init_std) + self.min_std
        return mean, std

    def sample(self, feat: torch.Tensor | None, *, out=None,
               log_prob: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
        """A reparameterised action ``[..., A]`` and its log-probability ``[...]`` (``None``
        with ``log_prob=False``, which skips computing it). ``out``: this actor's output for
        ``feat`` if it was computed already (``feat`` is then unused)."""
        mean, std = self(feat) if out is None else out
        x = mean + std * torch.randn_like(mean)
        return torch.tanh(x), (_tanh_normal_log_prob(x, mean, std) if log_prob else None)

    def mode(self, feat: torch.Tensor) -> torch.Tensor:
        """``tanh(mean)``: ``[..., A]`` (the deterministic evaluation action)."""
        return torch.tanh(self(feat)[0])

    def log_prob(self, feat: torch.Tensor | None, action: torch.Tensor, eps: float = 1e-6, *,
                 out=None) -> torch.Tensor:
        """``log pi(action | feat)``: ``[...]`` for a given action ``[..., A]`` in [-1, 1] (one
        that was sampled, so its pre-tanh value is recovered by ``atanh`` after clipping to
        ``(-1 + eps, 1 - eps)``)."""
        mean, std = self(feat) if out is None else out
        return _tanh_normal_log_prob(torch.atanh(action.clamp(-1.0 + eps, 1.0 - eps)), mean, std)

    def entropy(self, feat: torch.Tensor | None, *, out=None) -> torch.Tensor:
        """A one-sample estimate of the entropy, ``-log pi(a)`` for a fresh ``a ~ pi``: ``[...]``
        (the tanh-Normal's entropy has no closed form)."""
        return -self.sample(feat, out=out)[1]


def _tanh_normal_log_prob(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """``log p(tanh(x))`` for pre-tanh ``x ~ Normal(mean, std)``, summed over actions: ``[...]``."""
    log_prob = -0.5 * ((x - mean) / std).pow(2) - std.log() - _HALF_LOG_2PI
    # tanh's log-det-Jacobian, in the stable form 2 (log 2 - x - softplus(-2x))
    return (log_prob - 2.0 * (math.log(2.0) - x - F.softplus(-2.0 * x))).sum(-1)


class TruncNormalActor(nn.Module):
    """DreamerV2's action model for continuous actions (authors' ``common/nets.py::DistLayer``
    with ``dist: trunc_normal``): per action dimension a Normal truncated to [-1, 1] with
    ``mean = tanh(mu)`` and ``std = 2 sigmoid(s / 2) + min_std`` (0.1 to 2.1).

    Samples are reparameterised by the inverse CDF (``mean + std Phi^-1(u)`` with ``u``
    uniform between the CDF values of the bounds) and kept inside ``(-1 + clip, 1 - clip)``
    with a straight-through clip, as the authors' ``SafeTruncatedNormal``. Unlike the
    tanh-Normal, the entropy is exact."""

    def __init__(self, in_dim: int, action_dim: int, *, hidden: int = 400, layers: int = 4,
                 act: str = "elu", min_std: float = 0.1, clip: float = 1e-6):
        super().__init__()
        self.net = mlp(in_dim, [hidden] * layers, 2 * action_dim, act=act)
        self.min_std, self.clip = min_std, clip

    def forward(self, feat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``mean, std`` of the Normal before truncation: ``[..., A]`` each, in float32 under
        mixed precision (the authors' distribution layers cast to float32 too; the inverse
        normal CDF has no bfloat16 kernel)."""
        mean, std = self.net(feat).float().chunk(2, -1)
        return torch.tanh(mean), 2.0 * torch.sigmoid(std / 2.0) + self.min_std

    @staticmethod
    def _cdfs(mean: torch.Tensor, std: torch.Tensor):
        """Standardised bounds ``alpha, beta`` and the Normal's CDF there, ``Phi(alpha), Phi(beta)``."""
        alpha, beta = (-1.0 - mean) / std, (1.0 - mean) / std
        return alpha, beta, torch.special.ndtr(alpha), torch.special.ndtr(beta)

    @staticmethod
    def _mass(low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
        """The mass ``Z = Phi(beta) - Phi(alpha)`` the truncation keeps (at least 1e-8)."""
        return (high - low).clamp(min=1e-8)

    @classmethod
    def _bounds(cls, mean: torch.Tensor, std: torch.Tensor):
        """Standardised bounds ``alpha, beta`` and the mass ``Z`` the truncation keeps."""
        alpha, beta, low, high = cls._cdfs(mean, std)
        return alpha, beta, cls._mass(low, high)

    def sample(self, feat: torch.Tensor | None, *, out=None,
               log_prob: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
        """A reparameterised action ``[..., A]`` in (-1, 1) and its log-probability ``[...]``
        (``out``, ``log_prob``: as :meth:`TanhNormalActor.sample`)."""
        mean, std = self(feat) if out is None else out
        _, _, low, high = self._cdfs(mean, std)
        u = (low + (high - low) * torch.rand_like(mean)).clamp(1e-6, 1.0 - 1e-6)
        x = mean + std * torch.special.ndtri(u)
        clipped = x.clamp(-1.0 + self.clip, 1.0 - self.clip)
        x = x + (clipped - x).detach()  # straight-through clip
        if not log_prob:
            return x, None
        return x, self._log_prob(x.detach(), mean, std, self._mass(low, high))

    def mode(self, feat: torch.Tensor) -> torch.Tensor:
        """``tanh(mu)``, the truncated Normal's mode: ``[..., A]`` (the evaluation action)."""
        return self(feat)[0]

    def log_prob(self, feat: torch.Tensor | None, action: torch.Tensor, *, out=None) -> torch.Tensor:
        """``log pi(action | feat)``: ``[...]`` for an action ``[..., A]`` in [-1, 1]."""
        mean, std = self(feat) if out is None else out
        return self._log_prob(action, mean, std)

    def _log_prob(self, x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor,
                  mass: torch.Tensor | None = None) -> torch.Tensor:
        z = (x - mean) / std
        if mass is None:
            mass = self._bounds(mean, std)[2]
        return (-0.5 * z.pow(2) - std.log() - _HALF_LOG_2PI - mass.log()).sum(-1)

    def entropy(self, feat: torch.Tensor | None, *, out=None) -> torch.Tensor:
        """The exact entropy ``[...]``, summed over action dimensions:
        ``log(sqrt(2 pi e) std Z) + (alpha phi(alpha) - beta phi(beta)) / (2 Z)``."""
        mean, std = self(feat) if out is None else out
        alpha, beta, mass = self._bounds(mean, std)
        pdf = lambda x: torch.exp(-0.5 * x.pow(2) - _HALF_LOG_2PI)  # noqa: E731
        ent = 0.5 + _HALF_LOG_2PI + std.log() + mass.log() + (alpha * pdf(alpha) - beta * pdf(beta)) / (2 * mass)
        return ent.sum(-1)


class OneHotActor(nn.Module):
    """A categorical over ``n`` discrete actions whose samples are one-hot vectors ``[..., n]``.

    ``sample`` is straight-through: the forward value is the one-hot sample, the gradient that
    of the probabilities (``onehot + probs - sg(probs)``), so returns can be backpropagated
    through the imagined dynamics as for continuous actions (DreamerV1 on Atari; DreamerV2's
    ``dynamics`` and ``both`` actor gradients)."""

    def __init__(self, in_dim: int, n_actions: int, *, hidden: int = 400, layers: int = 4,
                 act: str = "elu"):
        super().__init__()
        self.net = mlp(in_dim, [hidden] * layers, n_actions, act=act)

    def forward(self, feat: torch.Tensor) -> torch.Tensor:
        """Normalised log-probabilities ``[..., n]``."""
        return torch.log_softmax(self.net(feat), -1)

    def sample(self, feat: torch.Tensor | None, *, out=None,
               log_prob: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
        """A one-hot action ``[..., n]`` (straight-through) and its log-probability ``[...]``
        (``out``, ``log_prob``: as :meth:`TanhNormalActor.sample`)."""
        logp = self(feat) if out is None else out
        probs = logp.exp()
        index = categorical_index(probs.detach())
        onehot = F.one_hot(index, probs.shape[-1]).to(probs.dtype)
        return onehot + (probs - probs.detach()), ((onehot * logp).sum(-1) if log_prob else None)

    def mode(self, feat: torch.Tensor) -> torch.Tensor:
        """The most likely action, one-hot ``[..., n]``."""
        logp = self(feat)
        return F.one_hot(logp.argmax(-1), logp.shape[-1]).to(logp.dtype)

    def log_prob(self, feat: torch.Tensor | None, action: torch.Tensor, *, out=None) -> torch.Tensor:
        """``log pi(action | feat)`` of one-hot actions ``[..., n]``: ``[...]``."""
        return (action * (self(feat) if out is None else out)).sum(-1)

    def entropy(self, feat: torch.Tensor | None, *, out=None) -> torch.Tensor:
        """The exact entropy ``[...]``."""
        logp = self(feat) if out is None else out
        return -(logp.exp() * logp).sum(-1)


#: the actors whose ``sample``, ``log_prob`` and ``entropy`` take ``out=`` (exact types: a
#: subclass may override them with the older signatures)
OUTPUT_REUSING_ACTORS = (TanhNormalActor, TruncNormalActor, OneHotActor)


def record_actor_outputs(actor: nn.Module):
    """``(policy, outputs)`` for imagination: ``policy(feat)`` samples an action from
    ``actor`` and appends the actor's output to ``outputs()``'s list, which returns the
    outputs stacked over the steps (``[H, ...]``, a tuple of tensors for the Normal actors),
    or ``None`` if ``actor`` is not one of :data:`OUTPUT_REUSING_ACTORS` (then ``policy`` is
    the plain ``actor.sample(feat)[0]``)."""
    if type(actor) not in OUTPUT_REUSING_ACTORS:
        return (lambda feat: actor.sample(feat)[0]), (lambda: None)
    steps: list = []

    def policy(feat: torch.Tensor) -> torch.Tensor:
        out = actor(feat)
        steps.append(out)
        return actor.sample(None, out=out, log_prob=False)[0]

    def outputs():
        if not steps:
            return None
        if isinstance(steps[0], tuple):
            return tuple(torch.stack(parts) for parts in zip(*steps))
        return torch.stack(steps)

    return policy, outputs
