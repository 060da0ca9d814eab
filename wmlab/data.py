"""Collection and the data streams Lightning trains on.

The one place that builds collectors: :func:`make_collector` steps ``run.envs = N`` envs
together (a torchrl ``SerialEnv`` when ``N > 1``) with a policy, one torchrl ``Collector``
per stage. :class:`Collection` writes every policy step of every env once into the
:class:`~wmlab.replay.Replay` (a final row holds the last observation of every finished
episode), keeps the counters and reports returns.

Two iterables feed ``Trainer.fit``:

* :class:`ReplayStream` (replay data): before handing out each batch it collects just
  enough env steps to keep ``stage updates == train_ratio * (stage policy steps -
  prefill)``, so updates never come in bursts, also after a resume; a stage that collects
  nothing hands out its ``updates`` batches. It hands out placeholders too, which
  :meth:`ReplayStream.fill` replaces by the batch drawn right before its update, so the
  random numbers drawn after a checkpoint are the same whether the run went on or resumed.
* :class:`RolloutStream` (on-policy data): hands out one placeholder per rollout, which
  :meth:`RolloutStream.fill` replaces by a rollout ``[N, T]`` collected right before the
  update that uses it (Lightning fetches one batch ahead; a rollout collected then would
  come from the parameters before the previous update).
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from typing import Callable, Iterator

import torch
from tensordict import TensorDict, TensorDictBase
from tensordict.nn import TensorDictModuleBase
from torch.utils.data import IterableDataset

from wmlab import keys
from wmlab.api import DataSpec, EnvSpecs, Progress, Stage
from wmlab.replay import EPISODE, Replay
from wmlab.samplers import Windows

log = logging.getLogger("wmlab")

with warnings.catch_warnings():  # importing collectors warns about renamed classes
    warnings.simplefilter("ignore", DeprecationWarning)
    from torchrl.collectors import Collector

__all__ = ["EPISODE", "CollectStream", "Collection", "RandomPolicy", "ReplayStream", "RolloutStream",
           "StageData", "SwitchPolicy",
           "final_row", "make_collector", "make_replay", "sample", "stored_keys"]


def make_replay(spec: DataSpec, capacity: int, device: torch.device | str, *, envs: int = 1) -> Replay:
    """The replay of a run: ``capacity`` rows (policy steps) split over ``envs`` rings."""
    return Replay(capacity, device, envs=envs)


def default_sampler(spec: DataSpec):
    return spec.sampler if spec.sampler is not None else Windows(spec.sequence_length)


def sample(replay: Replay, spec: DataSpec, transform: Callable | None = None) -> TensorDictBase:
    """A batch as ``spec`` asks (windows ``[B, L]``, ``[B]`` for single rows, or what its
    sampler draws), passed through the method's replay transform if it has one."""
    batch = default_sampler(spec).sample(replay, spec.batch_size)
    return transform(batch) if transform is not None else batch


def stored_keys(specs: EnvSpecs) -> tuple:
    """Keys of a replay row: the observation entries, action, flags and reward."""
    return (keys.OBSERVATION, *specs.extra_obs, keys.ACTION, keys.IS_INIT, keys.REWARD, keys.DONE,
            keys.TERMINATED, keys.TRUNCATED)


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


def num_envs(env) -> int:
    return int(env.batch_size.numel()) if len(env.batch_size) else 1


def make_collector(env, policy: TensorDictModuleBase, *, steps: int = 1) -> Collector:
    """``steps`` policy steps of every env per batch (the streams decide when to step)."""
    return Collector(env, policy, frames_per_batch=steps * num_envs(env), total_frames=-1,
                     trust_policy=True)


def final_row(td: TensorDictBase, row: TensorDictBase) -> TensorDictBase:
    """The row that stores the last observation of a finished episode (terminated or cut by
    the time limit): the observation after the last action, zero action and reward, the
    episode's ``done``/``terminated``/``truncated`` flags, in the same episode as ``row``."""
    last = row.clone()
    for key in row.keys():  # the observation entries of the final state
        if key not in (keys.ACTION, keys.IS_INIT, keys.NEXT, EPISODE):
            last.set(key, td.get((keys.NEXT, key)))
    last.set(keys.ACTION, torch.zeros_like(row.get(keys.ACTION)))
    last.set(keys.IS_INIT, torch.zeros_like(row.get(keys.IS_INIT)))
    last.set(keys.REWARD, torch.zeros_like(row.get(keys.REWARD)))
    return last



class Collection:
    """Steps the envs with one policy through one collector, stores, counts and reports.

    ``on_step(td)`` listeners see every collector batch (``[N, T]``), ``on_episode(ret,
    length)`` every finished episode (length in policy steps)."""

    def __init__(self, *, env, policy: TensorDictModuleBase, progress: Progress, action_repeat: int,
                 replay: Replay | None = None, row_keys: tuple = (), steps: int = 1):
        self.env, self.policy, self.progress = env, policy, progress
        self.replay, self.row_keys, self.steps = replay, row_keys, steps
        self.repeat = action_repeat
        self.envs = num_envs(env)
        self.on_step: list[Callable[[TensorDictBase], None]] = []
        self.before_step: list[Callable[[], None]] = []
        self.on_episode: list[Callable[[float, int], None]] = []
        self.at_episode_boundary = True
        self.collect_seconds = 0.0
        self._iter = None
        self._returns = torch.zeros(self.envs)
        self._lengths = torch.zeros(self.envs, dtype=torch.long)

    def step(self) -> TensorDictBase:
        """One collector batch: ``steps`` policy steps of every env, ``[N, T]``."""
        for fn in self.before_step:
            fn()
        if self._iter is None:
            # the collector may call the policy while it sets up: not with the run's RNG, so a
            # collection started by a resume draws what the interrupted one drew next
            with torch.random.fork_rng(devices=[]):
                collector = make_collector(self.env, self.policy, steps=self.steps)
            self._iter = iter(collector)
        start = time.perf_counter()
        td = next(self._iter)
        self.collect_seconds += time.perf_counter() - start
        if not len(self.env.batch_size):
            td = td.unsqueeze(0)  # [T] -> [1, T]
        td = td.reshape(self.envs, self.steps)
        p = self.progress
        for t in range(self.steps):
            p.policy_steps += self.envs
            p.env_steps += self.envs * self.repeat
            p.stage_env_steps += self.envs * self.repeat
            self._account(td[:, t])
        for fn in self.on_step:
            fn(td)
        return td

    def _account(self, td: TensorDictBase) -> None:
        """Store one policy step of every env (``td [N]``) and report finished episodes."""
        done = td.get(keys.DONE).reshape(self.envs, -1)[:, 0].cpu()
        if self.replay is not None:
            rows = td.select(*self.row_keys)
            env = torch.arange(self.envs)
            self.replay.write(rows, env)
            if done.any():
                self.replay.write(final_row(td[done], rows[done]), env[done])
        self._returns += td.get(keys.REWARD).reshape(self.envs, -1).sum(-1).cpu()
        self._lengths += 1
        self.at_episode_boundary = bool(done.all())
        for e in done.nonzero().flatten().tolist():
            self.progress.episodes += 1
            for fn in self.on_episode:
                fn(float(self._returns[e]), int(self._lengths[e]))
            self._returns[e], self._lengths[e] = 0.0, 0

    def close(self) -> None:
        self._iter = None


class StageData:
    """What the loop's clock asks of a stage's data: whether every env is at an episode end
    (checkpoints wait for it), whether the env-step budget is spent, acting time."""

    def __init__(self, collection: Collection | None, progress: Progress, budget: int):
        self.collection, self.progress, self.budget = collection, progress, budget

    @property
    def at_episode_boundary(self) -> bool:
        return self.collection is None or self.collection.at_episode_boundary

    @property
    def collect_seconds(self) -> float:
        return self.collection.collect_seconds if self.collection is not None else 0.0

    def budget_spent(self) -> bool:
        return self.collection is not None and self.progress.stage_env_steps >= self.budget

    def close(self) -> None:
        if self.collection is not None:
            self.collection.close()


class CollectStream(StageData):
    """A collect-only stage: :meth:`run` collects until the budget is spent."""

    def run(self) -> None:
        while not self.budget_spent():
            self.collection.step()


class ReplayStream(StageData, IterableDataset):
    """Replay batches at the data's train ratio (see the module docstring).

    ``collection`` is ``None`` for a stage that collects nothing; then ``stage.updates``
    batches are handed out."""

    def __init__(self, *, collection: Collection | None, replay: Replay, spec: DataSpec,
                 progress: Progress, stage: Stage, stage_env_steps: int, action_repeat: int,
                 transform: Callable | None = None):
        super().__init__(collection, progress, stage_env_steps)
        self.replay, self.spec, self.stage = replay, spec, stage
        self.repeat = action_repeat
        self.transform = transform
        self.prefill_policy_steps = math.ceil(spec.prefill_steps / action_repeat)

    def updates_allowed(self) -> int:
        """Updates this stage's ratio allows after the policy steps collected so far."""
        p = self.progress
        stage_start = p.policy_steps - p.stage_env_steps // self.repeat
        learn_steps = p.policy_steps - max(self.prefill_policy_steps, stage_start) - p.stage_refill_steps
        return math.floor(self.spec.train_ratio * learn_steps) if learn_steps > 0 else 0

    def sample(self) -> TensorDictBase:
        return sample(self.replay, self.spec, self.transform)

    def __iter__(self) -> Iterator[TensorDictBase]:
        # placeholders, each filled with its batch by fill() right before its update: Lightning
        # prefetches one, and a batch drawn then would be drawn again by a run resumed from a
        # checkpoint taken in between (the draws after a checkpoint must be the same)
        p = self.progress
        if self.collection is None:  # a stage that only trains on what was collected
            for _ in range(p.stage_updates, self.stage.updates or 0):
                yield TensorDict({}, batch_size=[])
            return
        # Lightning prefetches one batch, so this may run one ahead of stage_updates,
        # which counts finished updates
        handed = p.stage_updates
        self.refill()
        while True:
            while self.updates_allowed() <= handed:
                if self.progress.stage_env_steps >= self.budget:
                    return
                self.collection.step()
            handed += 1
            yield TensorDict({}, batch_size=[])

    def refill(self) -> None:
        """A run resumed without its replay (``checkpoint.replay=false``) collects with its
        policy as many policy steps as its prefill took (at least a sequence's worth) before
        its next update, so there is something to draw. These env steps count on the
        x-axis; like the prefill's, they earn no updates (``Progress.stage_refill_steps``),
        so the updates keep to the ratio without a burst."""
        p = self.progress
        if len(self.replay) > 0 or p.policy_steps == 0:
            return
        want = max(self.prefill_policy_steps, self.spec.sequence_length + 1)
        log.warning("resumed without a replay: collecting %d policy steps with the current policy "
                    "before the next update", want)
        start = p.policy_steps
        while p.policy_steps - start < want and p.stage_env_steps < self.budget:
            before = p.policy_steps
            self.collection.step()
            p.stage_refill_steps += p.policy_steps - before

    def fill(self, batch: TensorDictBase, device: torch.device) -> None:
        """Draw the batch of the update about to run into the placeholder ``batch``."""
        drawn = self.sample()
        batch.batch_size = drawn.batch_size
        batch.update(drawn.to(device))


class RolloutStream(StageData, IterableDataset):
    """On-policy data: one placeholder per rollout left in the stage's budget, filled by
    :meth:`fill` right before the update (see the module docstring)."""

    def __init__(self, *, collection: Collection, progress: Progress, stage_env_steps: int,
                 action_repeat: int):
        super().__init__(collection, progress, stage_env_steps)
        self.rollout_frames = collection.envs * collection.steps * action_repeat
        self.last_rollout: TensorDictBase | None = None

    def __iter__(self) -> Iterator[TensorDictBase]:
        left = self.budget - self.progress.stage_env_steps
        for _ in range(max(0, math.ceil(left / self.rollout_frames))):
            yield TensorDict({}, batch_size=[])

    def fill(self, batch: TensorDictBase, device: torch.device) -> None:
        """Collect a rollout ``[N, T]`` now and put it into the placeholder ``batch``."""
        rollout = self.collection.step()
        self.last_rollout = rollout  # (evaluation videos of on-policy methods read it)
        batch.batch_size = rollout.batch_size
        batch.update(rollout.to(device))
