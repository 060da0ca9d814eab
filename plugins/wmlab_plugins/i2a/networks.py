"""I2A's networks on the one-hot Sokoban room ``[C, H, W]`` (C = 7 cell kinds): the
model-free path, the actor-critic heads, the env model, the copy model, the imagination
core, the backward rollout encoder and the I2A agent. Plain tensors in and out."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def one_hot_room(logits: torch.Tensor) -> torch.Tensor:
    """``[..., C, H, W]`` logits (or probabilities) -> the one-hot room of their most likely
    cell kind per cell, same shape."""
    return F.one_hot(logits.argmax(-3), logits.shape[-3]).movedim(-1, -3).to(logits.dtype)


class GridTorso(nn.Module):
    """Two padded 3x3 convolutions at the room's resolution, then a fully connected layer:
    ``[B, C, H, W] -> [B, hidden]`` (the model-free path)."""

    def __init__(self, shape: tuple[int, int, int], channels: int, hidden: int):
        super().__init__()
        c, h, w = shape
        self.net = nn.Sequential(
            nn.Conv2d(c, channels, 3, padding=1), nn.ReLU(),
            nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(),
            nn.Flatten(), nn.Linear(channels * h * w, hidden), nn.ReLU())

    def forward(self, grid: torch.Tensor) -> torch.Tensor:
        return self.net(grid)


class ModelFreeAgent(nn.Module):
    """The standard agent: the model-free path, then policy logits ``[B, A]`` and a value
    ``[B]``. Also the rollout policy's architecture (its value head unused)."""

    def __init__(self, shape: tuple[int, int, int], actions: int, channels: int, hidden: int):
        super().__init__()
        self.torso = GridTorso(shape, channels, hidden)
        self.policy = nn.Linear(hidden, actions)
        self.value = nn.Linear(hidden, 1)

    def forward(self, grid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.torso(grid)
        return self.policy(x), self.value(x).squeeze(-1)


class PoolAndInject(nn.Module):
    """A residual block of two 3x3 convolutions whose output gets, in extra channels, its
    own global max-pool broadcast to every cell (the paper's pool-and-inject: a cell learns
    about the whole room in one layer); ``[B, K, H, W] -> [B, K, H, W]``."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.inject = nn.Conv2d(2 * channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv2(F.relu(self.conv1(x)))
        pooled = y.amax((-2, -1), keepdim=True).expand_as(y)
        return F.relu(x + self.inject(torch.cat([y, pooled], 1)))


class EnvModel(nn.Module):
    """The environment model: one-hot room ``[B, C, H, W]`` and one-hot action ``[B, A]``
    -> next-room logits ``[B, C, H, W]`` (a categorical over the C cell kinds per cell) and
    reward logits ``[B, K]`` over the ``reward_values`` the env gives. The action enters as
    A constant planes beside the room."""

    def __init__(self, shape: tuple[int, int, int], actions: int, channels: int, blocks: int,
                 reward_values: torch.Tensor):
        super().__init__()
        c = shape[0]
        self.actions = actions
        self.stem = nn.Conv2d(c + actions, channels, 3, padding=1)
        self.blocks = nn.Sequential(*[PoolAndInject(channels) for _ in range(blocks)])
        self.frame = nn.Conv2d(channels, c, 1)
        k = int(reward_values.numel())
        self.reward = nn.Sequential(nn.Linear(2 * channels, channels), nn.ReLU(), nn.Linear(channels, k))
        self.register_buffer("reward_values", reward_values.float().reshape(-1), persistent=False)

    def forward(self, grid: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        planes = action[:, :, None, None].expand(-1, -1, *grid.shape[-2:])
        x = self.blocks(F.relu(self.stem(torch.cat([grid, planes], 1))))
        pooled = torch.cat([x.mean((-2, -1)), x.amax((-2, -1))], -1)
        return self.frame(x), self.reward(pooled)

    @torch.no_grad()
    def step(self, grid: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Imagine one step: the most likely next room (one-hot) and the expected reward ``[B]``."""
        frame, reward = self(grid, action)
        return one_hot_room(frame), reward.softmax(-1) @ self.reward_values

    def reward_class(self, reward: torch.Tensor) -> torch.Tensor:
        """Index ``[B]`` of the nearest of ``reward_values`` to each real reward ``[B]``."""
        return (reward.reshape(-1, 1) - self.reward_values).abs().argmin(-1)


class CopyModel(nn.Module):
    """The copy model of the paper's copy-model agent: the next room is the room given, the
    reward zero."""

    @torch.no_grad()
    def step(self, grid: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return grid, grid.new_zeros(grid.shape[0])


class RolloutEncoder(nn.Module):
    """Encodes an imagined rollout: a CNN on every imagined room with the imagined reward as
    one more plane, then an LSTM that reads the steps *backwards* (last imagined step first);
    its last output is the rollout's code. ``frames [B, L, C, H, W]``, ``rewards [B, L]``
    -> ``[B, lstm]``."""

    def __init__(self, shape: tuple[int, int, int], channels: int, lstm: int):
        super().__init__()
        c, h, w = shape
        self.cnn = nn.Sequential(
            nn.Conv2d(c + 1, channels, 3, padding=1), nn.ReLU(),
            nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(), nn.Flatten())
        self.lstm = nn.LSTM(channels * h * w, lstm, batch_first=True)

    def forward(self, frames: torch.Tensor, rewards: torch.Tensor) -> torch.Tensor:
        b, length = frames.shape[:2]
        planes = rewards[:, :, None, None, None].expand(-1, -1, 1, *frames.shape[-2:])
        x = self.cnn(torch.cat([frames, planes], 2).flatten(0, 1)).reshape(b, length, -1)
        out, _ = self.lstm(x.flip(1))  # backwards in imagined time
        return out[:, -1]


class ImaginationCore(nn.Module):
    """One rollout per action: from room ``[B, C, H, W]``, rollout ``a`` takes action ``a``
    first, then the rollout policy's sampled actions, for ``length`` steps of ``model``.
    Returns imagined rooms ``[B, A, L, C, H, W]`` and rewards ``[B, A, L]`` (no gradient)."""

    def __init__(self, model: nn.Module, rollout_policy: ModelFreeAgent, actions: int, length: int):
        super().__init__()
        self.model = model
        self.rollout_policy = rollout_policy
        self.actions, self.length = actions, length

    @torch.no_grad()
    def forward(self, grid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, a = grid.shape[0], self.actions
        state = grid.unsqueeze(1).expand(-1, a, *grid.shape[1:]).flatten(0, 1)  # [B * A, C, H, W]
        action = torch.eye(a, dtype=grid.dtype, device=grid.device).repeat(b, 1)
        frames, rewards = [], []
        for t in range(self.length):
            if t > 0:
                logits, _ = self.rollout_policy(state)
                pick = torch.distributions.Categorical(logits=logits).sample()
                action = F.one_hot(pick, a).to(grid.dtype)
            state, reward = self.model.step(state, action)
            frames.append(state)
            rewards.append(reward)
        frames = torch.stack(frames, 1).reshape(b, a, self.length, *grid.shape[1:])
        return frames, torch.stack(rewards, 1).reshape(b, a, self.length)


class I2AAgent(nn.Module):
    """The imagination-augmented agent: the imagination core's rollouts, encoded backwards
    and aggregated by concatenation, beside the model-free path; a fully connected layer
    on both, then policy logits ``[B, A]`` and a value ``[B]``. The env model is passed in
    (frozen and owned by the method; or the copy model) and is not a parameter here."""

    def __init__(self, shape: tuple[int, int, int], actions: int, model: nn.Module, *,
                 channels: int, hidden: int, encoder_channels: int, lstm: int,
                 rollout_channels: int, rollout_length: int):
        super().__init__()
        self.model_free = GridTorso(shape, channels, hidden)
        self.rollout_policy = ModelFreeAgent(shape, actions, rollout_channels, max(hidden // 2, 8))
        self.encoder = RolloutEncoder(shape, encoder_channels, lstm)
        self.head = nn.Sequential(nn.Linear(hidden + actions * lstm, hidden), nn.ReLU())
        self.policy = nn.Linear(hidden, actions)
        self.value = nn.Linear(hidden, 1)
        # a plain attribute, so the env model's parameters are not the agent's
        self.__dict__["core"] = ImaginationCore(model, self.rollout_policy, actions, rollout_length)

    def forward(self, grid: torch.Tensor, imagined: tuple[torch.Tensor, torch.Tensor] | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """Policy logits and value of rooms ``grid``; ``imagined`` (the core's rooms and
        rewards for ``grid``, e.g. those the agent acted on) skips the imagination."""
        frames, rewards = self.core(grid) if imagined is None else imagined
        b, a = frames.shape[:2]
        codes = self.encoder(frames.flatten(0, 1), rewards.flatten(0, 1)).reshape(b, -1)  # [B, A * lstm]
        x = self.head(torch.cat([self.model_free(grid), codes], -1))
        return self.policy(x), self.value(x).squeeze(-1)
