"""Reversibility-aware RL's mathematics as pure functions: pairs for the precedence
estimator, its loss, RAE's penalty, RAC's phi target and filter, PPO's loss. Each returns
tensors (no host syncs)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def precedence_terms(logits: torch.Tensor, later: torch.Tensor,
                     weight: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """psi's binary cross-entropy and accuracy on pairs ``[B]``: ``logits`` of "the second
    came later", ``later`` the label (1.0 if it did), ``weight`` an optional 0/1 mask of the
    pairs that count. [offline_reversibility.py, learn_rev_classifier and
    VecIntrinsic.train_on_batch: ``BCEWithLogitsLoss`` on the label ``float(t' > t)``.]"""
    later = later.to(logits.dtype)
    weight = torch.ones_like(logits) if weight is None else weight.to(logits.dtype)
    total = weight.sum().clamp(min=1.0)
    loss = (F.binary_cross_entropy_with_logits(logits, later, reduction="none") * weight).sum() / total
    right = ((logits > 0).to(logits.dtype) == later).to(logits.dtype)
    return loss, (right * weight).sum() / total


def rollout_pairs(episode: torch.Tensor, count: int, min_distance: int, max_distance: int,
                  generator: torch.Generator | None = None):
    """``count`` pairs of steps of one episode of a rollout, uniform over every pair ``(k, k +
    d)`` with ``min_distance <= d <= max_distance`` whose steps share an episode, in random
    order. ``episode`` ``[N, T]`` numbers each env's episodes along its rollout (a cumulative
    sum of ``is_init``). Returns ``(env, first, second, later, valid)``, each ``[count]``:
    step indices of the two members, ``later`` 1.0 where ``second`` came after ``first``,
    ``valid`` 0.0 for every pair if the rollout holds none (then they are placeholders); or
    ``None`` if the rollout is shorter than ``min_distance + 1`` steps.

    (utils.py, buff_to_dataset and VecIntrinsic._create_dataset draw the first step uniformly,
    then the second uniformly among the steps of its trajectory in the window; uniform over
    pairs, as here, weighs the steps far from an episode's ends a little more.)"""
    n, t = episode.shape
    top = min(max_distance, t - 1)
    if top < min_distance:
        return None
    dist = torch.arange(min_distance, top + 1, device=episode.device)  # [K]
    step = torch.arange(t, device=episode.device)
    other = step[:, None] + dist[None]  # [T, K]
    inside = other < t
    same = episode[:, :, None] == episode[:, other.clamp(max=t - 1)]  # [N, T, K]
    allowed = (same & inside).reshape(-1).float()
    found = (allowed.sum() > 0).float()
    weights = allowed + (1.0 - found)  # uniform placeholders when there is no pair at all
    pick = torch.multinomial(weights, count, replacement=True, generator=generator)
    k = dist.numel()
    env, rest = pick // (t * k), pick % (t * k)
    start, d = rest // k, dist[rest % k]
    swap = torch.rand(count, generator=generator, device=episode.device) < 0.5
    first = torch.where(swap, start + d, start)
    second = torch.where(swap, start, start + d)
    return env, first, second, (~swap).float(), allowed[pick] * found


def rae_penalty(psi_prob: torch.Tensor, threshold: float, weight: float) -> torch.Tensor:
    """RAE's penalty of a transition, ``w * max(0, psi(s_t, s_t+1) - beta)``, elementwise
    [rae_*.py: ``func``, weighted by ``--wir`` in VecIntrinsic.step_wait]."""
    return weight * (psi_prob - threshold).clamp(min=0.0)


def shaped_reward(reward: torch.Tensor, penalty: torch.Tensor, reward_free: bool) -> torch.Tensor:
    """The reward RAE trains on: the env's minus the penalty, or minus the penalty alone
    [VecIntrinsic.step_wait]."""
    return -penalty if reward_free else reward - penalty


def phi_terms(phi_logits: torch.Tensor, action: torch.Tensor,
              target: torch.Tensor) -> torch.Tensor:
    """phi's loss on transitions ``[B]``: binary cross-entropy of phi(s, a) (``phi_logits``
    ``[B, A]`` at the one-hot ``action`` ``[B, A]``) against the soft target psi(s, s') (a
    probability ``[B]``, no gradient) [offline_reversibility.py, learn_rev_action:
    ``BCEWithLogitsLoss`` of phi at the taken action against sigmoid(psi(s, s'))]."""
    taken = (phi_logits * action).sum(-1)
    return F.binary_cross_entropy_with_logits(taken, target.detach())


def filter_actions(phi_prob: torch.Tensor, action: torch.Tensor,
                   threshold: float) -> tuple[torch.Tensor, torch.Tensor]:
    """RAC's filter: the base agent's actions (indices ``[B]``) whose phi (``phi_prob`` ``[B,
    A]``) exceeds ``threshold`` are replaced by the action of lowest phi, the most reversible.
    Returns ``(actions [B], replaced [B] bool)``. [vec_safe.py, VecSafe.step_async: phi's
    logit against log(beta / (1 - beta)), the same test, and argmin of phi.]"""
    replaced = phi_prob.gather(-1, action[:, None]).squeeze(-1) > threshold
    return torch.where(replaced, phi_prob.argmin(-1), action), replaced


def ppo_terms(logits: torch.Tensor, value: torch.Tensor, action: torch.Tensor,
              old_logp: torch.Tensor, advantage: torch.Tensor, returns: torch.Tensor,
              clip: float) -> dict[str, torch.Tensor]:
    """PPO's terms on a minibatch ``[B]`` (Schulman et al. 2017, arXiv 1707.06347): the
    clipped surrogate ``policy`` loss, the ``value`` regression (mean squared error to the
    returns), the ``entropy``, and two diagnostics, ``clip_fraction`` and ``approx_kl``.
    ``action`` one-hot ``[B, A]``; ``advantage`` as given (normalise it before)."""
    logp_all = logits.log_softmax(-1)
    logp = (logp_all * action).sum(-1)
    ratio = (logp - old_logp).exp()
    surrogate = torch.minimum(ratio * advantage, ratio.clamp(1.0 - clip, 1.0 + clip) * advantage)
    with torch.no_grad():
        clipped = ((ratio - 1.0).abs() > clip).float().mean()
        approx_kl = ((ratio - 1.0) - (logp - old_logp)).mean()
    return {"policy": -surrogate.mean(), "value": F.mse_loss(value, returns),
            "entropy": -(logp_all.exp() * logp_all).sum(-1).mean(),
            "clip_fraction": clipped, "approx_kl": approx_kl}
