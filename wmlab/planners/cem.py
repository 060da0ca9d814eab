"""CEM: the cross-entropy method over action sequences, batched over envs.

As PlaNet plans (Hafner et al. 2019, arXiv 1811.04551, Sec. 3 and Alg. 2; authors' code
``planet/control/planning.py::cross_entropy_method``): a diagonal Gaussian over ``H`` future
actions per env starts at mean 0, std 1; every iteration samples ``num_candidates``
sequences, clips them to the action bounds, scores them with a caller-supplied return
estimate, and refits mean and std (unweighted) to the ``num_elites`` best, with
``std = sqrt(var + 1e-6)``. The action taken is the first step of the final mean.
PlaNet's reference settings: horizon 12, 1000 candidates, top 100, 10 iterations.

The planner knows nothing about models: ``value_fn`` closes over the caller's latent state.
Layout is time-major, as :mod:`wmlab.planners.mppi`: means and stds ``[H, B, A]``,
candidates ``[H, B, N, A]``; no Python loop over candidates or envs, no host sync.
"""

from __future__ import annotations

import torch

from wmlab.planners.mppi import PlanResult, ValueFn


class CEM:
    """Cross-entropy method planner (stateless; PlaNet restarts from N(0, 1) every step).

    Args (keyword-only):
        num_candidates: sequences sampled per env and iteration (PlaNet: 1000).
        num_elites: best sequences the Gaussian is refitted to (PlaNet: 100).
        iterations: refinement iterations (PlaNet: 10).
        init_std: std of the first iteration (PlaNet: 1).
        min_var: added to the refitted variance before the square root (PlaNet: 1e-6).
        low, high: action bounds (floats or ``[A]`` tensors); samples are clipped to them.
    """

    def __init__(self, *, num_candidates: int = 1000, num_elites: int = 100, iterations: int = 10,
                 init_std: float = 1.0, min_var: float = 1e-6,
                 low: float | torch.Tensor = -1.0, high: float | torch.Tensor = 1.0):
        if not 0 < num_elites <= num_candidates:
            raise ValueError(f"need 0 < num_elites <= num_candidates, got {num_elites}, {num_candidates}")
        self.num_candidates, self.num_elites, self.iterations = num_candidates, num_elites, iterations
        self.init_std, self.min_var = init_std, min_var
        self.low, self.high = low, high

    @torch.no_grad()
    def plan(self, value_fn: ValueFn, mean: torch.Tensor, std: torch.Tensor | None = None) -> PlanResult:
        """Refine ``mean [H, B, A]`` (zeros for PlaNet) and return the first action ``[B, A]``.

        ``value_fn(actions [H, B, N, A]) -> [B, N]`` estimates each candidate's return.
        ``std [H, B, A]`` defaults to ``init_std`` everywhere.
        """
        std = torch.full_like(mean, self.init_std) if std is None else std
        for _ in range(self.iterations):
            noise = torch.randn(*mean.shape[:2], self.num_candidates, mean.shape[-1], device=mean.device)
            actions = self._clamp(mean.unsqueeze(2) + std.unsqueeze(2) * noise)  # [H, B, N, A]
            value = value_fn(actions).nan_to_num(float("-inf"))  # [B, N]
            elites = self._elites(actions, value)  # [H, B, K, A]
            mean = elites.mean(2)  # [H, B, A]
            std = (elites.var(2, unbiased=False) + self.min_var).sqrt()
        return PlanResult(self._clamp(mean[0]), mean, std)

    def _elites(self, actions: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        H, B, _, A = actions.shape
        idx = value.topk(self.num_elites, dim=1).indices  # [B, K]
        return actions.gather(2, idx.view(1, B, -1, 1).expand(H, B, -1, A))

    def _clamp(self, x: torch.Tensor) -> torch.Tensor:
        low, high = self.low, self.high
        if isinstance(low, torch.Tensor):
            low, high = low.to(x.device), high.to(x.device)
        return x.clamp(low, high)
