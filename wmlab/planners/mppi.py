"""MPPI: model predictive path integral control over action sequences, batched over envs.

As TD-MPC uses it (Hansen et al. 2022, arXiv 2203.04955, Sec. 3.2; authors' code
``src/algorithm/tdmpc.py::plan``): a diagonal Gaussian over ``H`` future actions per env is
refined for a few iterations. Each iteration samples ``num_samples`` sequences, adds the
optional policy-prior sequences, scores every candidate with a caller-supplied return
estimate, keeps the ``num_elites`` best and refits mean and std to them with weights
``softmax(temperature * value)``. The planner knows nothing about models: the caller passes
a ``value_fn`` that closes over its own latent state.

Layout is time-major throughout: means and stds are ``[H, B, A]``, candidates
``[H, B, N, A]`` (``B`` envs, ``N`` candidates per env). No Python loop over candidates or
envs, and no host synchronisation.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import torch

#: ``value_fn(actions [H, B, N, A]) -> [B, N]``: estimated return of each candidate.
ValueFn = Callable[[torch.Tensor], torch.Tensor]


class PlanResult(NamedTuple):
    action: torch.Tensor
    """``[B, A]``: the first action to take (with exploration noise if asked for)."""
    mean: torch.Tensor
    """``[H, B, A]``: the final mean, to warm-start the next call (see :func:`warm_start`)."""
    std: torch.Tensor
    """``[H, B, A]``: the final std (clamped to ``[min_std, max_std]``)."""


def warm_start(
    prev_mean: torch.Tensor | None,
    horizon: int,
    batch: int,
    action_dim: int,
    *,
    reset: torch.Tensor | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Initial mean ``[H, B, A]``: the previous plan shifted one step, zeros elsewhere.

    ``mean[t] = prev_mean[t + 1]``; the last step (and any step beyond the previous plan's
    horizon, when the horizon grows) is 0. Envs where ``reset [B]`` is true start from
    zeros. A missing previous plan, or one for another number of envs, gives all zeros.
    """
    if device is None and prev_mean is not None:
        device = prev_mean.device
    mean = torch.zeros(horizon, batch, action_dim, device=device)
    if prev_mean is None or prev_mean.shape[1:] != (batch, action_dim):
        return mean
    n = min(horizon, prev_mean.shape[0] - 1)
    mean[:n] = prev_mean[1 : n + 1]
    if reset is not None:
        mean = mean.masked_fill(reset.to(mean.device).view(1, batch, 1), 0.0)
    return mean


class MPPI:
    """MPPI planner (stateless; the caller keeps the returned mean for warm starts).

    Args (keyword-only):
        num_samples: Gaussian candidates per env and iteration (TD-MPC: 512). Prior
            trajectories come in addition to these (as in TD-MPC; TD-MPC2 counts them
            within, so pass ``num_samples - num_prior`` to reproduce it).
        num_elites: candidates kept per iteration to refit the Gaussian (TD-MPC: 64).
        iterations: refinement iterations (TD-MPC: 6 from states, 8 from pixels).
        temperature: weights of elites are ``softmax(temperature * value)`` (TD-MPC: 0.5;
            it multiplies the value, so larger is greedier).
        momentum: ``mean <- momentum * old + (1 - momentum) * fitted`` (TD-MPC: 0.1;
            TD-MPC2: 0).
        min_std, max_std: clamp of the refitted std (TD-MPC: a schedule from 0.5 to 0.05
            passed per call, and 2).
        init_std: std of the first iteration (default ``max_std``, as TD-MPC).
        low, high: action bounds (floats or ``[A]`` tensors); samples are clamped to them.
        select: ``"sample"`` draws the executed sequence among the elites with their
            softmax weights (TD-MPC and TD-MPC2); ``"mean"`` takes the final mean.
    """

    def __init__(
        self,
        *,
        num_samples: int = 512,
        num_elites: int = 64,
        iterations: int = 6,
        temperature: float = 0.5,
        momentum: float = 0.0,
        min_std: float = 0.05,
        max_std: float = 2.0,
        init_std: float | None = None,
        low: float | torch.Tensor = -1.0,
        high: float | torch.Tensor = 1.0,
        select: str = "sample",
    ):
        if select not in ("sample", "mean"):
            raise ValueError(f"select={select!r}; valid: sample, mean")
        if not 0 < num_elites <= num_samples:
            raise ValueError(f"need 0 < num_elites <= num_samples, got {num_elites}, {num_samples}")
        self.num_samples = num_samples
        self.num_elites = num_elites
        self.iterations = iterations
        self.temperature = temperature
        self.momentum = momentum
        self.min_std = min_std
        self.max_std = max_std
        self.init_std = max_std if init_std is None else init_std
        self.low = low
        self.high = high
        self.select = select

    @torch.no_grad()
    def plan(
        self,
        value_fn: ValueFn,
        mean: torch.Tensor,
        *,
        prior: torch.Tensor | None = None,
        min_std: float | None = None,
        explore: bool = False,
    ) -> PlanResult:
        """Refine ``mean [H, B, A]`` and return the action to take.

        ``prior [H, B, P, A]``: fixed candidate sequences (e.g. policy rollouts) scored with
        the samples in every iteration. ``min_std`` overrides the constructor's (for
        schedules). ``explore=True`` adds ``N(0, std[0])`` noise to the action (TD-MPC's
        exploration), then clamps it to the bounds.
        """
        min_std = self.min_std if min_std is None else min_std
        std = torch.full_like(mean, self.init_std)  # [H, B, A]
        for _ in range(self.iterations):
            actions = self._candidates(mean, std, prior)  # [H, B, N(+P), A]
            value = value_fn(actions).nan_to_num(0.0)  # [B, N(+P)]
            elites, score = self._elites(actions, value)  # [H, B, K, A], [B, K]
            fit_mean, std = self._refit(elites, score, min_std)
            mean = self.momentum * mean + (1.0 - self.momentum) * fit_mean
        action = self._select(elites, score, mean)  # [B, A]
        if explore:
            action = action + std[0] * torch.randn_like(action)
        return PlanResult(self._clamp(action), mean, std)

    def _clamp(self, x: torch.Tensor) -> torch.Tensor:
        low, high = self.low, self.high
        if isinstance(low, torch.Tensor):
            low, high = low.to(x.device), high.to(x.device)
        return x.clamp(low, high)

    def _candidates(self, mean, std, prior):
        H, B, A = mean.shape
        noise = torch.randn(H, B, self.num_samples, A, device=mean.device)
        samples = self._clamp(mean.unsqueeze(2) + std.unsqueeze(2) * noise)  # [H, B, N, A]
        if prior is None or prior.shape[2] == 0:
            return samples
        return torch.cat([samples, prior.to(samples.dtype)], dim=2)

    def _elites(self, actions, value):
        H, B, _, A = actions.shape
        elite_value, idx = value.topk(self.num_elites, dim=1)  # [B, K]
        elites = actions.gather(2, idx.view(1, B, -1, 1).expand(H, B, -1, A))  # [H, B, K, A]
        score = torch.softmax(self.temperature * elite_value, dim=1)  # [B, K]
        return elites, score

    def _refit(self, elites, score, min_std):
        w = score.unsqueeze(0).unsqueeze(-1)  # [1, B, K, 1]
        mean = (w * elites).sum(2)  # [H, B, A]
        var = (w * (elites - mean.unsqueeze(2)) ** 2).sum(2)
        return mean, var.sqrt().clamp(min_std, self.max_std)

    def _select(self, elites, score, mean):
        if self.select == "mean":
            return mean[0]
        idx = torch.multinomial(score, 1)  # [B, 1]
        first = elites[0]  # [B, K, A]
        return first.gather(1, idx.unsqueeze(-1).expand(-1, 1, first.shape[-1])).squeeze(1)
