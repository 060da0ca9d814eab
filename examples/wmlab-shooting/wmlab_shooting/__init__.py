"""Random-shooting MPC over a learned one-step model.

The model predicts the change of the state vector and the reward of one policy step,
``f(s, a) -> (s' - s, r)``, trained by mean squared error on replayed transitions
(inputs and targets standardised with running statistics). The policy samples
``candidates`` action sequences uniformly, rolls them out through the model for
``horizon`` steps and executes the first action of the sequence with the highest
predicted return.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from wmlab.api import DataSpec, Method, Policy

__all__ = ["RandomShooting", "ShootingConfig"]


@dataclass
class ShootingConfig:
    hidden: int = 200
    """Width of the model's two hidden layers."""
    lr: float = 1e-3
    """Adam learning rate."""
    batch_size: int = 256
    """Transitions per update."""
    horizon: int = 10
    """Planning horizon in policy steps."""
    candidates: int = 500
    """Action sequences sampled per decision."""
    prefill_steps: int = 2000
    """Env steps of random actions before the first update."""
    train_ratio: float = 1.0
    """Updates per policy step."""


class OneStepModel(nn.Module):
    """``(s, a) -> (delta s, r)`` with standardised inputs and outputs."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(obs_dim + act_dim, hidden), nn.SiLU(),
                                 nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, obs_dim + 1))
        for name, size in (("in", obs_dim + act_dim), ("out", obs_dim + 1)):
            self.register_buffer(f"{name}_mean", torch.zeros(size))
            self.register_buffer(f"{name}_std", torch.ones(size))

    def update_stats(self, x: torch.Tensor, y: torch.Tensor, momentum: float = 0.01) -> None:
        for name, v in (("in", x), ("out", y)):
            mean, std = getattr(self, f"{name}_mean"), getattr(self, f"{name}_std")
            mean.lerp_(v.mean(0), momentum)
            std.lerp_(v.std(0).clamp_min(1e-3), momentum)

    def forward(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """Standardised prediction ``[..., obs_dim + 1]``."""
        x = (torch.cat([obs, action], -1) - self.in_mean) / self.in_std
        return self.net(x)

    def step(self, obs: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y = self(obs, action) * self.out_std + self.out_mean
        return obs + y[..., :-1], y[..., -1]


class ShootingPolicy(Policy):
    def __init__(self, method: "RandomShooting", explore: bool):
        super().__init__(method.device)
        self.method, self.explore = method, explore

    def act(self, obs: torch.Tensor, is_init: torch.Tensor) -> torch.Tensor:
        cfg, specs = self.method.cfg, self.method.specs
        low, high = specs.action_low.to(obs.device), specs.action_high.to(obs.device)
        b, n = obs.shape[0], cfg.candidates
        actions = low + torch.rand(cfg.horizon, b, n, *low.shape, device=obs.device) * (high - low)
        state = obs.float().unsqueeze(1).expand(b, n, obs.shape[-1])
        total = torch.zeros(b, n, device=obs.device)
        for t in range(cfg.horizon):  # [B, N, D]
            state, reward = self.method.model.step(state, actions[t])
            total += reward
        best = total.argmax(-1)  # [B]
        return actions[0, torch.arange(b), best]


class RandomShooting(Method):
    """Random-shooting MPC; a minimal but complete wmlab method."""

    Config = ShootingConfig
    presets = {"debug": {"method": {"hidden": 32, "batch_size": 32, "horizon": 3, "candidates": 32,
                                    "prefill_steps": 100}}}
    observations = ("state",)

    def __init__(self, cfg, specs):
        super().__init__(cfg, specs)
        self.model = OneStepModel(specs.obs_dim, specs.action_dim, cfg.hidden)

    def data_spec(self) -> DataSpec:
        # sequences of 2 rows give (o_t, a_t, r_t, o_{t+1})
        return DataSpec(batch_size=self.cfg.batch_size, sequence_length=2,
                        train_ratio=self.cfg.train_ratio, prefill_steps=self.cfg.prefill_steps)

    def make_policy(self, explore: bool) -> Policy:
        return ShootingPolicy(self, explore)

    def configure_optimizers(self):
        return torch.optim.Adam(self.model.parameters(), lr=self.cfg.lr)

    def training_step(self, batch, batch_idx):
        obs = batch["observation"].float()  # [B, 2, D]
        action, reward = batch["action"][:, 0], batch["next", "reward"][:, 0]
        target = torch.cat([obs[:, 1] - obs[:, 0], reward], -1)  # [B, D + 1]
        self.model.update_stats(torch.cat([obs[:, 0], action], -1), target)
        pred = self.model(obs[:, 0], action)
        loss = (pred - (target - self.model.out_mean) / self.model.out_std).pow(2).mean()
        self.log("train/loss/model", loss)
        return loss
