"""PlaNet's objective: reconstruction, reward and KL terms with free nats, and latent overshooting.

Time-major tensors: ``T`` sequence steps, ``B`` sequences. The standard (one-step) objective of
PlaNet (Hafner et al. 2019, Eq. 3) per sequence::

    sum_t  ln p(o_t | s_t) + ln p(r_t | s_t) - beta_1 KL(q(s_t | s_{t-1}, a_{t-1}, o_t) || p(s_t | s_{t-1}, a_{t-1}))

Latent overshooting (Eq. 7) replaces the KL by an average over prediction distances d = 1..D,
the prior of s_t predicted open loop from the posterior d steps back::

    (1 / D) sum_{d=1}^{D} beta_d KL(q(s_t | o_{<=t}, a_{<t}) || p(s_t | s_{t-d}, a_{t-d:t}))

with the same beta_{>1} for every d > 1 and the posterior's gradient stopped for d > 1, so
multi-step priors move towards the posteriors and not the other way round (paper Sec. 4; cfg
``stop_os_posterior_gradient``). D = 1 is the standard objective. Every step's KL is clipped
below at the free nats before averaging, as the authors' ``compute_losses`` does.
"""

from __future__ import annotations

import torch

from wmlab.nets import RSSM, RSSMState


def masked_mean(x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean of ``x [...]`` over the entries where ``mask [...]`` is true (all if ``None``)."""
    if mask is None:
        return x.mean()
    mask = mask.to(x.dtype)
    return (x * mask).sum() / mask.sum().clamp(min=1.0)


def free_nats_kl(kl: torch.Tensor, free_nats: float, mask: torch.Tensor | None = None) -> torch.Tensor:
    """``mean_t max(KL_t, free_nats)`` over the valid entries of ``kl [...]``: each step's KL is
    clipped on its own, so steps below the free nats get no gradient while others do."""
    return masked_mean(kl.clamp(min=free_nats), mask)


def steps_before(rssm: RSSM, posts: RSSMState, prev_action: torch.Tensor, is_first: torch.Tensor):
    """The state each step is predicted from, ``s_{t-1}`` (the initial state where ``is_first``),
    and the action that leads on, masked to 0 at episode starts: ``[T, B]`` and ``[T, B, A]``."""
    T, B = is_first.shape
    shifted = RSSMState.cat([rssm.initial(B, prev_action.device).map(lambda x: x[None]),
                             posts.select(slice(0, T - 1))])  # [T, B]
    flat = lambda s: s.map(lambda x: x.reshape(T * B, -1))  # noqa: E731
    start, action = rssm.reset(flat(shifted), prev_action.reshape(T * B, -1), is_first.reshape(-1))
    return start.map(lambda x: x.reshape(T, B, -1)), action.reshape(T, B, -1)


def overshoot(rssm: RSSM, start: RSSMState, prev_action: torch.Tensor, is_first: torch.Tensor,
              distance: int, *, sample: bool = True) -> list[tuple[RSSMState, torch.Tensor]]:
    """Open-loop priors at distances d = 1..``distance`` from every start state.

    ``start [T, B]``: the state step t is predicted from (:func:`steps_before`), ``prev_action
    [T, B, A]``, ``is_first [T, B]``. Entry ``d - 1`` of the result is ``(priors, valid)``, both
    ``[T - d + 1, B]``: ``priors[u]`` is the prior of step ``u + d - 1`` rolled ``d`` steps from
    ``start[u]``; ``valid[u]`` is false where the rollout crosses an episode start. Distance 1 is
    the ordinary prior of :meth:`RSSM.observe`."""
    T, B = is_first.shape
    state, valid, out = start, torch.ones_like(is_first), []
    for d in range(1, min(distance, T) + 1):
        n = T - d + 1  # starts whose target u + d - 1 lies in the sequence
        state, valid = state.select(slice(0, n)), valid[:n]
        if d > 1:
            valid = valid & ~is_first[d - 1:]
        flat = state.map(lambda x: x.reshape(n * B, -1))
        state = rssm.img_step(flat, prev_action[d - 1:].reshape(n * B, -1), sample=sample)
        state = state.map(lambda x: x.reshape(n, B, -1))
        out.append((state, valid))
    return out


def overshooting_kls(rssm: RSSM, posts: RSSMState, rollouts: list[tuple[RSSMState, torch.Tensor]],
                     free_nats: float) -> torch.Tensor:
    """Per-distance KL terms ``[D]``: ``mean_{valid} max(KL(q(s_t) || p_d(s_t)), free_nats)``,
    with the posterior detached for d > 1. ``posts [T, B]``; ``rollouts`` from :func:`overshoot`."""
    kls = []
    for d, (priors, valid) in enumerate(rollouts, start=1):
        target = posts.params[d - 1:]  # [T-d+1, B, P]
        target = target if d == 1 else target.detach()
        kls.append(free_nats_kl(rssm.latent.kl(target, priors.params), free_nats, valid))
    return torch.stack(kls)


def kl_objective(kls: torch.Tensor, *, kl_scale: float = 1.0, overshooting_scale: float = 1.0):
    """``(beta_1 KL_1 + beta_{>1} sum_{d>1} KL_d) / D`` from the per-distance terms ``kls [D]``
    (paper Eq. 7); returns ``(loss, one_step, overshooting)`` where the last two are the weighted
    parts of the loss (``overshooting`` is 0 for D = 1)."""
    D = kls.shape[0]
    one_step = kl_scale * kls[0] / D
    over = overshooting_scale * kls[1:].sum() / D
    return one_step + over, one_step, over


def world_model_loss(*, obs_nll: torch.Tensor, reward_nll: torch.Tensor, reward_valid: torch.Tensor,
                     kl: torch.Tensor, overshooting: torch.Tensor, reward_scale: float = 10.0):
    """``{"model", "reconstruction", "reward", "kl", "overshooting"}`` (scalars).

    ``model = reconstruction + reward_scale * reward + kl + overshooting``, where
    ``reconstruction`` is the mean of ``obs_nll [T, B]``, ``reward`` the mean of ``reward_nll
    [T-1, B]`` over ``reward_valid [T-1, B]`` (transitions inside an episode), and ``kl`` and
    ``overshooting`` the weighted KL parts of :func:`kl_objective`.
    """
    terms = {"reconstruction": obs_nll.mean(), "reward": masked_mean(reward_nll, reward_valid),
             "kl": kl, "overshooting": overshooting}
    total = terms["reconstruction"] + reward_scale * terms["reward"] + kl + overshooting
    return {"model": total, **terms}
