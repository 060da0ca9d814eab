"""Samplers: how a replay batch is drawn from the stored episodes.

A method names one in :attr:`wmlab.api.DataSpec.sampler`; the core calls
``sampler.sample(replay, batch_size)`` for every update (torch's global RNG, so runs are
reproducible and resumes continue the same stream). Every sampler here but
:class:`Spans` is episode-aware: it reads rows of one episode only, through
:class:`wmlab.replay.Replay`'s index.

* :class:`Windows`: ``[B, L]`` windows of consecutive rows inside one episode, uniform over
  all such windows (the default, ``L = DataSpec.sequence_length``).
* :class:`GoalRelabel`: transitions whose goal is replaced by an achieved goal of a later row
  of the same episode, with a horizon (TDM, HER).
* :class:`Pairs`: two rows of one episode at a temporal distance, in random order, labelled
  with which came first (the precedence estimator of reversibility-aware RL).
* :class:`Spans`: ``[B, L]`` runs of consecutive rows of one env that may cross episode
  boundaries (episodes back to back, as World Models' authors batch their sequences); a
  row's ``is_init`` says where a new episode starts (API 1.5).

``Windows`` and ``Spans`` also tell which rows they would gather (``positions``, API 1.6), so
a sampler of a plugin can draw the same windows and gather part of each row itself.

A sampler declares the observation entries it needs (:attr:`Sampler.needs`); the core
checks them against the env's before the run starts.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from tensordict import TensorDict, TensorDictBase

from wmlab.replay import Replay

#: keys written by the samplers
HORIZON = "horizon"
LATER = "later"
DISTANCE = "distance"
FIRST, SECOND = "first", "second"


class Sampler:
    """Draws ``batch_size`` samples from a :class:`~wmlab.replay.Replay`."""

    #: observation entries (``EnvSpecs.extra_obs`` keys) the sampler reads
    needs: tuple[str, ...] = ()

    def sample(self, replay: Replay, batch_size: int) -> TensorDictBase:
        raise NotImplementedError


@dataclass(frozen=True)
class Windows(Sampler):
    """``length`` consecutive rows of one episode: ``[B, L]`` (``[B]`` for ``length=1``)."""

    length: int = 1
    finished_only: bool = False
    """Only episodes that have ended (DreamerV2's ``replay.ongoing: False``); by default every
    window counts once, so an episode being collected weighs by the windows it holds."""
    prioritize_ends: bool = False
    """Draw the windows that reach a finished episode's end more often (DreamerV2's
    ``replay.prioritize_ends``): inside the episode drawn, the start is uniform over its
    ``n - L + 1`` starts plus ``L`` more that all fall on the last one, so the window ending
    with the episode is drawn ``L + 1`` times as often as any other. Episodes still being
    collected keep uniform starts."""

    def sample(self, replay: Replay, batch_size: int) -> TensorDictBase:
        env, pos = self.positions(replay, batch_size)
        if self.length == 1:
            return replay.gather(env[:, 0], pos[:, 0])
        return replay.gather(env, pos)

    def positions(self, replay: Replay, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """What :meth:`sample` gathers: rings ``[B, 1]`` and logical positions ``[B, L]``."""
        env, pos = replay.sample_starts(batch_size, self.length, finished_only=self.finished_only)
        if self.prioritize_ends:
            pos = self.towards_ends(replay, env, pos)
        return env.unsqueeze(1), pos.unsqueeze(1) + torch.arange(self.length)

    def towards_ends(self, replay: Replay, env: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """Starts redrawn inside their finished episodes with the extra weight on the last."""
        first, last = replay.episode_bounds(env, pos)
        starts = last - first - self.length + 2  # windows of the episode (>= 1)
        pick = (torch.rand(pos.shape) * (starts + self.length)).long()
        moved = first + torch.minimum(pick, starts - 1)
        finished = replay.finished[replay.episode[replay.slots(env, pos)]]
        return torch.where(finished, moved, pos)


@dataclass(frozen=True)
class Spans(Sampler):
    """``length`` consecutive rows of one env's stored stream ``[B, L]``, uniform over every
    run of ``length`` rows an env holds, across episode boundaries: an episode's final row
    is followed by the next episode's first (``is_init`` set). A model reading them resets
    its state where ``is_init`` is set and learns no transition into such a row, so every
    stored transition, an episode's last included, is seen equally often and at any
    position of the window. API 1.5."""

    length: int = 2

    def sample(self, replay: Replay, batch_size: int) -> TensorDictBase:
        return replay.gather(*self.positions(replay, batch_size))

    def positions(self, replay: Replay, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """What :meth:`sample` gathers: rings ``[B, 1]`` and logical positions ``[B, L]``."""
        counts = torch.clamp(replay.lengths - self.length + 1, min=0)
        if int(counts.sum()) == 0:
            raise RuntimeError(f"the replay holds no run of {self.length} rows yet ({len(replay)} rows)")
        env = torch.multinomial(counts.float(), batch_size, replacement=True)
        pos = (torch.rand(batch_size) * counts[env]).long()
        return env.unsqueeze(1), pos.unsqueeze(1) + torch.arange(self.length)


@dataclass(frozen=True)
class GoalRelabel(Sampler):
    """Transitions ``[B, 2]`` (rows t and t + 1 of one episode) whose ``desired`` goal is, with
    probability ``future``, the ``achieved`` goal of a row uniformly drawn from t + 1 to the
    end of the stored episode, else the goal the episode was collected with (HER's "future"
    strategy; TDM relabels 75% this way). ``horizon`` ``[B, 2]`` holds tau, uniform in
    ``0..horizon_max``, on row t and tau - 1 on row t + 1 (TDM counts it down while acting)."""

    horizon_max: int = 0
    future: float = 0.75
    achieved: str = "achieved_goal"
    desired: str = "desired_goal"

    @property
    def needs(self) -> tuple[str, ...]:  # type: ignore[override]
        return (self.achieved, self.desired)

    def sample(self, replay: Replay, batch_size: int) -> TensorDictBase:
        env, pos = replay.sample_starts(batch_size, 2)
        batch = replay.gather(env.unsqueeze(1), pos.unsqueeze(1) + torch.arange(2))
        _, last = replay.episode_bounds(env, pos)
        # a later row of the same episode: uniform in pos+1 .. last
        span = (last - pos).clamp(min=1)
        later = pos + 1 + (torch.rand(batch_size) * span).long().clamp(max=span - 1)
        goal = replay.gather(env, later).get(self.achieved)
        relabel = torch.rand(batch_size) < self.future
        desired = batch.get(self.desired).clone()
        mask = relabel.to(desired.device).reshape(-1, *([1] * (desired.dim() - 1)))
        desired = torch.where(mask, goal.to(desired.device).unsqueeze(1), desired)
        batch.set(self.desired, desired)
        tau = torch.randint(0, self.horizon_max + 1, (batch_size,))
        batch.set(HORIZON, torch.stack([tau, tau - 1], 1).to(desired.device))
        return batch


@dataclass(frozen=True)
class Pairs(Sampler):
    """Two rows of one episode ``d`` steps apart, ``min_distance <= d <= max_distance``
    (uniform over the distances the episode allows), in random order: ``first`` and
    ``second`` rows ``[B]``, ``later`` (1.0 if ``second`` came after ``first``) and ``distance``
    (``d``, policy steps)."""

    min_distance: int = 1
    max_distance: int = 1

    def __post_init__(self):
        if not 1 <= self.min_distance <= self.max_distance:
            raise ValueError(f"Pairs needs 1 <= min_distance <= max_distance, got "
                             f"{self.min_distance}, {self.max_distance}")

    def sample(self, replay: Replay, batch_size: int) -> TensorDictBase:
        env, pos = replay.sample_starts(batch_size, self.min_distance + 1)
        _, last = replay.episode_bounds(env, pos)
        top = torch.minimum(last - pos, torch.tensor(self.max_distance))  # >= min_distance
        d = self.min_distance + (torch.rand(batch_size) * (top - self.min_distance + 1)).long()
        d = torch.minimum(d, top)
        swap = torch.rand(batch_size) < 0.5
        a, b = torch.where(swap, pos + d, pos), torch.where(swap, pos, pos + d)
        first, second = replay.gather(env, a), replay.gather(env, b)
        device = first.device
        return TensorDict({FIRST: first, SECOND: second, LATER: (~swap).float().to(device),
                           DISTANCE: d.to(device)}, batch_size=[batch_size], device=device)
