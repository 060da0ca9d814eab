"""Collection and replay: the one place that builds collectors and replay buffers.

A torchrl ``Collector`` steps the env with the method's policy (random actions during
prefill) and every policy step is written once into a TensorDict replay buffer
(``LazyTensorStorage`` on the training device; a ``SliceSampler`` over episodes for
sequences). :class:`ReplayStream` is the iterable Lightning trains on: before handing
out each batch it collects just enough env steps to keep
``updates == train_ratio * (policy steps - prefill)``, so updates never come in bursts,
also after a resume.
"""

from __future__ import annotations

import math
import time
import warnings
from typing import Callable, Iterator

import torch
from tensordict import TensorDict, TensorDictBase
from tensordict.nn import TensorDictModuleBase
from torch.utils.data import IterableDataset
from torchrl.data import LazyTensorStorage, RandomSampler, SliceSampler, TensorDictReplayBuffer

from wmlab import keys
from wmlab.api import DataSpec, EnvSpecs, Progress, Stage

with warnings.catch_warnings():  # importing collectors warns about renamed classes
    warnings.simplefilter("ignore", DeprecationWarning)
    from torchrl.collectors import Collector

#: our own trajectory id (a global episode counter), unique across resumes, unlike the
#: collector's, which restarts at 0 in every process
EPISODE = "episode"


def make_replay(spec: DataSpec, capacity: int, device: torch.device | str) -> TensorDictReplayBuffer:
    """A replay buffer that samples ``spec.batch_size`` sequences of ``spec.sequence_length``."""
    length = spec.sequence_length
    if length > 1:
        sampler = SliceSampler(slice_len=length, traj_key=EPISODE, strict_length=True)
    else:
        sampler = RandomSampler()
    return TensorDictReplayBuffer(
        storage=LazyTensorStorage(capacity, device=torch.device(device)),
        sampler=sampler,
        batch_size=spec.batch_size * length,
    )


def sample(replay: TensorDictReplayBuffer, spec: DataSpec) -> TensorDictBase:
    """A batch shaped ``[B, L]`` (``[B]`` for transitions)."""
    td = replay.sample()
    if spec.sequence_length > 1:
        td = td.reshape(spec.batch_size, spec.sequence_length)
    return td


class RandomPolicy(TensorDictModuleBase):
    """Uniform actions within the action bounds, or uniform one-hot choices for discrete
    actions (prefill); uses torch's global RNG."""

    in_keys = [keys.OBSERVATION]
    out_keys = [keys.ACTION]

    def __init__(self, specs: EnvSpecs):
        super().__init__()
        self.low, self.high = specs.action_low, specs.action_high
        self.discrete = specs.discrete

    def forward(self, td: TensorDictBase) -> TensorDictBase:
        if self.discrete:
            n = self.low.numel()
            choice = torch.randint(n, tuple(td.batch_size))
            td.set(keys.ACTION, torch.nn.functional.one_hot(choice, n).to(self.low.dtype).reshape(
                *td.batch_size, *self.low.shape))
            return td
        u = torch.rand(*td.batch_size, *self.low.shape)
        td.set(keys.ACTION, self.low + u * (self.high - self.low))
        return td


class SwitchPolicy(TensorDictModuleBase):
    """Random actions while ``use_random()`` is true, then the method's policy."""

    in_keys = [keys.OBSERVATION, keys.IS_INIT]
    out_keys = [keys.ACTION]

    def __init__(self, random: TensorDictModuleBase, policy: TensorDictModuleBase,
                 use_random: Callable[[], bool]):
        super().__init__()
        self.random, self.policy, self.use_random = random, policy, use_random

    def forward(self, td: TensorDictBase) -> TensorDictBase:
        return self.random(td) if self.use_random() else self.policy(td)


def make_collector(env, policy: TensorDictModuleBase) -> Collector:
    """One env, one policy step per batch (the stream decides when to step)."""
    return Collector(env, policy, frames_per_batch=1, total_frames=-1, trust_policy=True)


def terminal_row(td: TensorDictBase, row: TensorDictBase) -> TensorDictBase:
    """The row that stores the final observation of a terminated episode: the observation
    after the last action, no action (zeros), no reward, ``done`` and ``terminated`` set, in
    the same episode as ``row`` (the last policy step, whose ``terminated`` is set too)."""
    terminal = row.clone()
    terminal.set(keys.OBSERVATION, td.get((keys.NEXT, keys.OBSERVATION)))
    terminal.set(keys.ACTION, torch.zeros_like(row.get(keys.ACTION)))
    terminal.set(keys.IS_INIT, torch.zeros_like(row.get(keys.IS_INIT)))
    terminal.set(keys.REWARD, torch.zeros_like(row.get(keys.REWARD)))
    terminal.set(keys.DONE, torch.ones_like(row.get(keys.DONE)))
    terminal.set(keys.TERMINATED, torch.ones_like(row.get(keys.TERMINATED)))
    terminal.set(keys.TRUNCATED, torch.zeros_like(row.get(keys.TRUNCATED)))
    return terminal


class ReplayStream(IterableDataset):
    """Yields training batches while stepping the env at the method's train ratio.

    ``on_step(td)`` listeners see every collected policy step, ``on_episode(ret, length)``
    every finished episode. The stream ends when the stage's env-step budget is spent
    and no update is owed (or, for a stage that collects nothing, after its updates).
    """

    def __init__(self, *, env, method, spec: DataSpec, replay: TensorDictReplayBuffer,
                 progress: Progress, stage: Stage, stage_env_steps: int, action_repeat: int):
        super().__init__()
        self.env, self.method, self.spec, self.replay = env, method, spec, replay
        self.progress, self.stage = progress, stage
        self.budget = stage_env_steps
        self.repeat = action_repeat
        self.prefill_policy_steps = math.ceil(spec.prefill_steps / action_repeat)
        self.on_step: list[Callable[[TensorDictBase], None]] = []
        self.on_episode: list[Callable[[float, int], None]] = []
        self.at_episode_boundary = True
        self.collect_seconds = 0.0
        self._collector = None
        self._episode_return = 0.0
        self._episode_length = 0

    # --- accounting -------------------------------------------------------------------
    def updates_allowed(self) -> int:
        """Updates the ratio allows after the policy steps collected so far."""
        learn_steps = self.progress.policy_steps - self.prefill_policy_steps
        return math.floor(self.spec.train_ratio * learn_steps) if learn_steps > 0 else 0

    def budget_spent(self) -> bool:
        return self.progress.stage_env_steps >= self.budget

    # --- collection -------------------------------------------------------------------
    def _make_collector(self):
        policy = self.method.make_policy(explore=self.stage.explore)
        switch = SwitchPolicy(RandomPolicy(self.method.specs), policy,
                              lambda: self.progress.policy_steps < self.prefill_policy_steps)
        return make_collector(self.env, switch)

    def collect_one(self) -> None:
        if self._collector is None:
            self._collector = iter(self._make_collector())
        start = time.perf_counter()
        td = next(self._collector)
        self.collect_seconds += time.perf_counter() - start
        self._store(td)

    def _store(self, td: TensorDictBase) -> None:
        # td: [1] rows from the collector; keep each frame once (no next observation) ...
        row = TensorDict({k: td.get(k) for k in (keys.OBSERVATION, keys.ACTION, keys.IS_INIT,
                                                 keys.REWARD, keys.DONE, keys.TERMINATED,
                                                 keys.TRUNCATED)}, batch_size=td.batch_size)
        row.set(EPISODE, torch.full(td.batch_size, self.progress.episodes, dtype=torch.int64))
        self.replay.extend(row)
        # ... except the last frame of an episode that ended by termination, which no later
        # row holds: it gets a terminal row of its own (see wmlab.keys)
        if bool(td.get(keys.TERMINATED).any()):
            self.replay.extend(terminal_row(td, row))
        p = self.progress
        p.policy_steps += 1
        p.env_steps += self.repeat
        p.stage_env_steps += self.repeat
        self._episode_return += float(td.get(keys.REWARD).sum())
        self._episode_length += 1
        done = bool(td.get(keys.DONE).any())
        self.at_episode_boundary = done
        for fn in self.on_step:
            fn(td)
        if done:
            p.episodes += 1
            for fn in self.on_episode:
                fn(self._episode_return, self._episode_length)
            self._episode_return, self._episode_length = 0.0, 0

    # --- iteration --------------------------------------------------------------------
    def __iter__(self) -> Iterator[TensorDictBase]:
        p = self.progress
        if self.stage.env_steps == 0:  # a stage that only trains on what was collected
            for _ in range(p.stage_updates, self.stage.updates or 0):
                yield sample(self.replay, self.spec)
            return
        # batches handed out so far by collecting stages; Lightning prefetches one batch,
        # so this may run one ahead of progress.updates, which counts finished updates
        handed = p.updates - p.offline_updates
        while True:
            while self.updates_allowed() <= handed:
                if self.budget_spent():
                    return
                self.collect_one()
            handed += 1
            yield sample(self.replay, self.spec)

    def close(self) -> None:
        self._collector = None
