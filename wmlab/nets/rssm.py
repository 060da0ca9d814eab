"""The recurrent state-space model (RSSM) shared by PlaNet, Dreamer, DreamerV2 and Plan2Explore.

Hafner et al. 2019 (PlaNet, arXiv 1811.04551, Sec. 3), 2020 (Dreamer, arXiv 1912.01603) and
2021 (DreamerV2, arXiv 2010.02193); authors' code ``danijar/dreamer`` ``models.py::RSSM``.
The model state is a deterministic GRU state ``h`` and a stochastic state ``z``::

    img_step (prior):  x = act(W [z_{t-1}, a_{t-1}]);  h_t = GRU(x, h_{t-1})
                       p(z_t | h_t) from act(W h_t)
    obs_step (post):   q(z_t | h_t, e_t) from act(W [h_t, e_t])     (e_t: observation embedding)
    features:          [z_t, h_t]

``z`` is a diagonal Gaussian (PlaNet, Dreamer: 30 dims, ``std = softplus(.) + 0.1``) or 32
groups of 32-way categoricals sampled with straight-through gradients (DreamerV2). Every
verb takes and returns an :class:`RSSMState` whose tensors share leading dims (``[B]``,
``[T, B]``); sequences are time-major.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from wmlab.nets.mlp import activation
from wmlab.nets.sampling import categorical_index


class RSSMState(NamedTuple):
    """One model state (or a batch or sequence of them; leading dims shared)."""

    deter: torch.Tensor
    """``[..., deter]``: the GRU state h."""
    stoch: torch.Tensor
    """``[..., stoch]``: the sample z (categorical: one-hot groups, flattened)."""
    params: torch.Tensor
    """``[..., param_size]``: parameters of z's distribution (Gaussian: mean and std
    concatenated; categorical: logits)."""

    def map(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> "RSSMState":
        return RSSMState(*(fn(x) for x in self))

    def detach(self) -> "RSSMState":
        return self.map(torch.Tensor.detach)

    def select(self, idx) -> "RSSMState":
        """Index every tensor alike, e.g. ``state.select(-1)`` or ``state.select((slice(None), 0))``."""
        return self.map(lambda x: x[idx])

    @staticmethod
    def stack(states: list["RSSMState"], dim: int = 0) -> "RSSMState":
        return RSSMState(*(torch.stack(xs, dim) for xs in zip(*states)))

    @staticmethod
    def cat(states: list["RSSMState"], dim: int = 0) -> "RSSMState":
        return RSSMState(*(torch.cat(xs, dim) for xs in zip(*states)))


class GaussianLatent:
    """Diagonal Gaussian z of ``size`` dims; parameters ``[mean, std]`` (``2 * size``)."""

    def __init__(self, size: int = 30, min_std: float = 0.1):
        self.size, self.param_size, self.min_std = size, 2 * size, min_std

    def params(self, raw: torch.Tensor) -> torch.Tensor:
        mean, std = raw.chunk(2, -1)
        return torch.cat([mean, F.softplus(std) + self.min_std], -1)

    def sample(self, params: torch.Tensor) -> torch.Tensor:
        mean, std = params.chunk(2, -1)
        return mean + std * torch.randn_like(std)  # reparameterised

    def mode(self, params: torch.Tensor) -> torch.Tensor:
        return params.chunk(2, -1)[0]

    def kl(self, lhs: torch.Tensor, rhs: torch.Tensor) -> torch.Tensor:
        """``KL(lhs || rhs)`` summed over dims: ``[...]``."""
        m1, s1 = lhs.chunk(2, -1)
        m2, s2 = rhs.chunk(2, -1)
        kl = (s2 / s1).log() + (s1.pow(2) + (m1 - m2).pow(2)) / (2 * s2.pow(2)) - 0.5
        return kl.sum(-1)

    def entropy(self, params: torch.Tensor) -> torch.Tensor:
        std = params.chunk(2, -1)[1]
        return (0.5 + 0.5 * torch.log(2 * torch.pi * std.pow(2))).sum(-1)


class CategoricalLatent:
    """``groups`` independent ``classes``-way categoricals (DreamerV2: 32 x 32), one-hot
    samples flattened to ``groups * classes``; parameters are the logits."""

    def __init__(self, groups: int = 32, classes: int = 32):
        self.groups, self.classes = groups, classes
        self.size = self.param_size = groups * classes

    def params(self, raw: torch.Tensor) -> torch.Tensor:
        return raw

    def _logits(self, params: torch.Tensor) -> torch.Tensor:
        return params.unflatten(-1, (self.groups, self.classes))  # [..., G, C]

    def sample(self, params: torch.Tensor) -> torch.Tensor:
        """One-hot samples; straight-through gradients: the forward value is the one-hot
        sample, the gradient that of the probabilities (DreamerV2's ``OneHotDist.sample``)."""
        probs = self._logits(params).softmax(-1)
        idx = categorical_index(probs.detach())
        onehot = F.one_hot(idx, self.classes).to(probs.dtype)
        return (onehot + probs - probs.detach()).flatten(-2)

    def mode(self, params: torch.Tensor) -> torch.Tensor:
        probs = self._logits(params).softmax(-1)
        onehot = F.one_hot(probs.argmax(-1), self.classes).to(probs.dtype)
        return (onehot + probs - probs.detach()).flatten(-2)

    def kl(self, lhs: torch.Tensor, rhs: torch.Tensor) -> torch.Tensor:
        """``KL(lhs || rhs)`` summed over groups: ``[...]``."""
        logp, logq = self._logits(lhs).log_softmax(-1), self._logits(rhs).log_softmax(-1)
        return (logp.exp() * (logp - logq)).sum((-2, -1))

    def entropy(self, params: torch.Tensor) -> torch.Tensor:
        logp = self._logits(params).log_softmax(-1)
        return -(logp.exp() * logp).sum((-2, -1))


def make_latent(kind: str, *, stoch: int = 30, groups: int = 32, classes: int = 32, min_std: float = 0.1):
    """``"gaussian"`` (``stoch`` dims) or ``"categorical"`` (``groups x classes``)."""
    if kind == "gaussian":
        return GaussianLatent(stoch, min_std)
    if kind == "categorical":
        return CategoricalLatent(groups, classes)
    raise ValueError(f"unknown latent {kind!r}; valid: gaussian, categorical")


class NormGRUCell(nn.Module):
    """DreamerV2's GRU cell (authors' ``common/nets.py::GRUCell`` with ``norm=True``,
    ``update_bias=-1``): one linear map of ``[x, h]`` to the three gates' pre-activations,
    layer-normalised together; the update gate gets a fixed bias of -1, so the cell keeps its state
    until it learns to write; the candidate is ``tanh(reset * c)``::

        r, c, u = LayerNorm(W [x, h]);  r = sigmoid(r);  u = sigmoid(u - 1)
        h' = u * tanh(r * c) + (1 - u) * h

    Same call as ``nn.GRUCell``: ``(x [B, in], h [B, size]) -> h' [B, size]``."""

    def __init__(self, input_size: int, hidden_size: int, update_bias: float = -1.0):
        super().__init__()
        self.linear = nn.Linear(input_size + hidden_size, 3 * hidden_size)
        self.norm = nn.LayerNorm(3 * hidden_size)
        self.update_bias = update_bias

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        reset, cand, update = self.norm(self.linear(torch.cat([x, h], -1))).chunk(3, -1)
        reset = torch.sigmoid(reset)
        update = torch.sigmoid(update + self.update_bias)
        return update * torch.tanh(reset * cand) + (1.0 - update) * h


#: ``RSSM(cell=...)``: PlaNet's and Dreamer's plain GRU, DreamerV2's layer-normalised one
CELLS = ("gru", "norm_gru")


class RSSM(nn.Module):
    """Recurrent state-space model; verbs ``initial``, ``img_step``, ``obs_step``, ``observe``,
    ``imagine``, ``open_loop``, ``get_feat``, ``kl_loss``.

    Defaults are Dreamer's (deterministic 200, stochastic 30, hidden 200, ELU, a plain GRU
    cell; ``cell="norm_gru"`` is DreamerV2's :class:`NormGRUCell`).
    """

    def __init__(self, *, embed_dim: int, action_dim: int, deter: int = 200, stoch: int = 30,
                 hidden: int = 200, latent: str = "gaussian", groups: int = 32, classes: int = 32,
                 min_std: float = 0.1, act: str = "elu", cell: str = "gru"):
        super().__init__()
        if cell not in CELLS:
            raise ValueError(f"unknown RSSM cell {cell!r}; valid: {', '.join(CELLS)}")
        self.latent = make_latent(latent, stoch=stoch, groups=groups, classes=classes, min_std=min_std)
        s, p = self.latent.size, self.latent.param_size
        self.deter_size, self.feat_dim, self.action_dim = deter, deter + s, action_dim
        self.img_in = nn.Sequential(nn.Linear(s + action_dim, hidden), activation(act))
        self.cell = nn.GRUCell(hidden, deter) if cell == "gru" else NormGRUCell(hidden, deter)
        self.img_out = nn.Sequential(nn.Linear(deter, hidden), activation(act), nn.Linear(hidden, p))
        self.obs_out = nn.Sequential(nn.Linear(deter + embed_dim, hidden), activation(act), nn.Linear(hidden, p))

    # --- states ----------------------------------------------------------------------------
    def initial(self, batch: int, device: torch.device | str | None = None) -> RSSMState:
        """The all-zero state ``[batch]`` (Dreamer's; parameters are zeros too)."""
        device = device or self.img_in[0].weight.device
        zeros = lambda n: torch.zeros(batch, n, device=device)  # noqa: E731
        return RSSMState(zeros(self.deter_size), zeros(self.latent.size), zeros(self.latent.param_size))

    def reset(self, state: RSSMState, action: torch.Tensor, is_first: torch.Tensor):
        """``state [B]`` and ``action [B, A]`` with the entries where ``is_first [B]`` replaced
        by the initial state and a zero action."""
        first = is_first.reshape(-1, 1).bool()
        init = self.initial(action.shape[0], action.device)
        state = RSSMState(*(torch.where(first, i, x) for i, x in zip(init, state)))
        return state, action.masked_fill(first, 0.0)

    def get_feat(self, state: RSSMState) -> torch.Tensor:
        """Features ``[z, h]``: ``[..., stoch + deter]``."""
        return torch.cat([state.stoch, state.deter], -1)

    # --- one step ----------------------------------------------------------------------------
    def _recur(self, stoch: torch.Tensor, action: torch.Tensor, deter: torch.Tensor) -> torch.Tensor:
        """``h_t = GRU(act(W [z_{t-1}, a_{t-1}]), h_{t-1})``: ``[..., deter]``."""
        return self.cell(self.img_in(torch.cat([stoch, action], -1)), deter)

    def _prior(self, deter: torch.Tensor, sample: bool = True) -> RSSMState:
        """The prior ``p(z_t | h_t)`` of ``deter [...]`` and its sample (or mode)."""
        return self._draw(deter, self.img_out(deter), sample)

    def _posterior(self, deter: torch.Tensor, embed: torch.Tensor, sample: bool = True) -> RSSMState:
        """The posterior ``q(z_t | h_t, e_t)`` and its sample (or mode)."""
        return self._draw(deter, self.obs_out(torch.cat([deter, embed], -1)), sample)

    def _draw(self, deter: torch.Tensor, raw: torch.Tensor, sample: bool) -> RSSMState:
        """The state of ``deter`` whose z is drawn (or its mode taken) from the head output ``raw``."""
        params = self.latent.params(raw)
        return RSSMState(deter, self.latent.sample(params) if sample else self.latent.mode(params), params)

    def img_step(self, prev: RSSMState, prev_action: torch.Tensor, *, sample: bool = True) -> RSSMState:
        """Prior ``p(z_t | h_t)`` after ``prev_action``: ``[B]`` -> ``[B]``."""
        return self._prior(self._recur(prev.stoch, prev_action, prev.deter), sample)

    def obs_step(self, prev: RSSMState, prev_action: torch.Tensor, embed: torch.Tensor,
                 is_first: torch.Tensor | None = None, *, sample: bool = True):
        """Posterior and prior of step t from ``prev [B]``, ``prev_action [B, A]``, ``embed
        [B, E]``; entries where ``is_first [B]`` start from the initial state."""
        if is_first is not None:
            prev, prev_action = self.reset(prev, prev_action, is_first)
        prior = self.img_step(prev, prev_action, sample=sample)
        return self._posterior(prior.deter, embed, sample), prior

    # --- sequences ---------------------------------------------------------------------------
    def observe(self, embed: torch.Tensor, prev_action: torch.Tensor, is_first: torch.Tensor,
                state: RSSMState | None = None):
        """Filter a sequence: ``embed [T, B, E]``, ``prev_action [T, B, A]`` (the action that
        led to each observation), ``is_first [T, B]`` -> ``posts, priors`` ``[T, B]``."""
        state = self.initial(embed.shape[1], embed.device) if state is None else state
        if not self._stepwise_observe():
            return self._observe(embed, prev_action, is_first, state)
        posts, priors = [], []
        for t in range(embed.shape[0]):
            state, prior = self.obs_step(state, prev_action[t], embed[t], is_first[t])
            posts.append(state)
            priors.append(prior)
        return RSSMState.stack(posts), RSSMState.stack(priors)

    def _stepwise_observe(self) -> bool:
        """Whether :meth:`observe` must call the verbs step by step: a subclass changed one
        it is built from."""
        cls = type(self)
        verbs = ("obs_step", "img_step", "reset", "initial")
        return any(getattr(cls, verb) is not getattr(RSSM, verb) for verb in verbs)

    def _observe(self, embed: torch.Tensor, prev_action: torch.Tensor, is_first: torch.Tensor,
                 state: RSSMState):
        """:meth:`observe` as :meth:`obs_step` would give it, with the prior's head run once
        after the loop: the prior ``p(z_t | h_t)`` depends on ``h_t`` alone and nothing in the
        filter uses it, so its MLP and sample run over all ``[T, B]`` at once: the same
        values from fewer, larger kernels. With the reset done once for the actions, a
        DreamerV2 update runs a fifth fewer tensor operations (12,764 against 15,980 at
        batch 2 from pixels), and an update on a GPU waits mostly on launching them."""
        steps, batch = embed.shape[:2]
        firsts = is_first.reshape(steps, batch, 1).bool()
        actions = prev_action.masked_fill(firsts, 0.0)  # reset: no action led to a first step
        init = self.initial(batch, embed.device)
        posts = []
        for t in range(steps):
            # reset where a new episode starts (the previous state's parameters enter no step)
            stoch = torch.where(firsts[t], init.stoch, state.stoch)
            deter = torch.where(firsts[t], init.deter, state.deter)
            state = self._posterior(self._recur(stoch, actions[t], deter), embed[t])
            posts.append(state)
        posts = RSSMState.stack(posts)
        return posts, self._prior(posts.deter)

    def imagine(self, policy_fn: Callable[[RSSMState], torch.Tensor], start: RSSMState, horizon: int):
        """Roll the prior ``horizon`` steps with ``policy_fn(state [N]) -> action [N, A]``.

        Returns ``states [H+1, N]`` (``states[0]`` is ``start``) and ``actions [H, N, A]``
        (``actions[t]`` taken in ``states[t]``)."""
        states, actions = [start], []
        for _ in range(horizon):
            actions.append(policy_fn(states[-1]))
            states.append(self.img_step(states[-1], actions[-1]))
        return RSSMState.stack(states), torch.stack(actions)

    def open_loop(self, start: RSSMState, actions: torch.Tensor, *, sample: bool = False) -> RSSMState:
        """Priors ``[T, B]`` after each of ``actions [T, B, A]`` from ``start [B]`` (no
        observations; open-loop prediction, with the prior's mode by default)."""
        states, state = [], start
        for a in actions.unbind(0):
            state = self.img_step(state, a, sample=sample)
            states.append(state)
        return RSSMState.stack(states)

    # --- KL ----------------------------------------------------------------------------------
    def kl_loss(self, post: RSSMState, prior: RSSMState, *, free_nats: float = 0.0, balance: float = 0.5,
                free_avg: bool = True):
        """KL regulariser: ``loss`` (scalar) and ``kl = KL(post || prior)`` ``[...]`` (no grad).

        ``balance`` (DreamerV2's alpha) weights the term that trains the prior,
        ``alpha KL(sg(post) || prior) + (1 - alpha) KL(post || sg(prior))``; each term is
        clipped below at ``free_nats`` after averaging (``max(mean KL, free)``, as Dreamer's
        ``tf.maximum(div, free_nats)`` and DreamerV2's ``free_avg``). ``balance = 0.5`` is the
        plain KL in value and gradient (as DreamerV2 special-cases it; the balanced form
        would have the same value but half the gradient). ``free_avg=False`` clips every
        step's KL before averaging (Plan2Explore's code), so steps under ``free_nats`` send
        no gradient even when the mean is above it."""
        def clipped(x: torch.Tensor) -> torch.Tensor:
            return x.mean().clamp(min=free_nats) if free_avg else x.clamp(min=free_nats).mean()

        kl = self.latent.kl(post.params, prior.params)  # [...]
        if balance == 0.5:
            return clipped(kl), kl.detach()
        lhs = clipped(self.latent.kl(post.params, prior.params.detach()))
        rhs = clipped(self.latent.kl(post.params.detach(), prior.params))
        return (1.0 - balance) * lhs + balance * rhs, kl.detach()


class Imagination(NamedTuple):
    """An imagined trajectory from ``N = T * B`` start states."""

    states: RSSMState
    """``[H+1, N]``; ``states[0]`` are the (detached) start states."""
    feats: torch.Tensor
    """``[H+1, N, F]``: ``get_feat(states)``."""
    actions: torch.Tensor
    """``[H, N, A]``: ``actions[t]`` was taken in ``states[t]``."""
    alive: torch.Tensor | None = None
    """``[N, 1]``: 0 where the start state is terminal (the episode had ended there), else 1;
    ``None``: every start is alive."""
    actor_out: torch.Tensor | tuple[torch.Tensor, ...] | None = None
    """The actor's output (``forward``) at ``states[0..H-1]``, stacked ``[H, N, ...]``, when
    the imagination kept it (``wmlab.nets.heads.record_actor_outputs``): the actor's
    ``log_prob`` and ``entropy`` of these states take it as ``out=``; ``None``: not kept."""


def imagine_from(rssm: RSSM, policy_fn: Callable[[RSSMState], torch.Tensor], posts: RSSMState,
                 horizon: int) -> Imagination:
    """Imagine ``horizon`` steps from every posterior state ``posts [T, B]`` (flattened to
    ``[T * B]`` and detached: imagination trains behaviour, not the representation)."""
    start = posts.detach().map(lambda x: x.reshape(-1, x.shape[-1]))  # [T*B, ...]
    states, actions = rssm.imagine(policy_fn, start, horizon)
    return Imagination(states, rssm.get_feat(states), actions)
