"""Evaluation: N episodes of the deterministic policy in a separate env, one on video."""

from __future__ import annotations

from dataclasses import dataclass, field

import time

import numpy as np
import torch
from torchrl.envs.utils import step_mdp

from wmlab import keys

#: eval envs are seeded apart from the training env
EVAL_SEED_OFFSET = 10_000


@dataclass
class EvalResult:
    returns: list[float]
    lengths: list[int]
    frames: np.ndarray | None
    """``[T, H, W, 3]`` uint8 frames of the first episode, if a video was asked for."""
    metrics: dict[str, float] = field(default_factory=dict)
    """The mean over the episodes of each metric the ``metrics`` function of
    :func:`evaluate` returned (e.g. a goal task's final distance)."""

    @property
    def mean(self) -> float:
        return float(np.mean(self.returns))

    @property
    def std(self) -> float:
        return float(np.std(self.returns))


def run_episode(env, policy, *, max_steps: int, render=None, on_step=None,
                on_end=None) -> tuple[float, int, list[np.ndarray]]:
    """One episode with ``policy``; ``render(env)`` (if given) is called after every step,
    ``on_step()`` too, ``on_end(td)`` with the last step's data."""
    td = env.reset()
    frames = [render(env)] if render else []
    total, steps = 0.0, 0
    for steps in range(1, max_steps + 1):
        td = env.step(policy(td))
        total += float(td.get(keys.REWARD).sum())
        if render:
            frames.append(render(env))
        if on_step is not None:
            on_step()
        if bool(td.get(keys.DONE).any()) or steps == max_steps:
            break
        td = step_mdp(td)
    if on_end is not None:
        on_end(td)
    return total, steps, frames


def evaluate(env, policy, *, episodes: int, max_steps: int, seed: int, render=None,
             progress=None, metrics=None, more_envs=()) -> EvalResult:
    """Mean return of ``episodes`` episodes; the env is reseeded so every evaluation of a
    run sees the same initial states. ``render`` records the first episode.
    ``progress(episode, steps, ret, seconds)`` is told of every policy step (``ret`` None)
    and of every finished episode. ``metrics(td)`` (an env family's
    :meth:`~wmlab.envs.EnvFamily.eval_metrics` of the env) maps the last step of an episode
    to ``{name: value}``; their means over the episodes are in :attr:`EvalResult.metrics`.

    ``more_envs``: more envs of the same task; with them the episodes run side by side (see
    :func:`evaluate_side_by_side`), and ``metrics`` is called as ``metrics(td, env)``."""
    if more_envs:
        return evaluate_side_by_side([env, *more_envs], policy, episodes=episodes, max_steps=max_steps,
                                     seed=seed, render=render, progress=progress, metrics=metrics)
    env.set_seed(seed + EVAL_SEED_OFFSET)
    returns, lengths, video = [], [], None
    seen: dict[str, list[float]] = {}

    def on_end(td):
        for name, value in (metrics(td) if metrics is not None else {}).items():
            seen.setdefault(name, []).append(float(value))

    for i in range(episodes):
        start = time.perf_counter()
        on_step = (lambda: progress(i, 0, None, 0.0)) if progress is not None else None  # noqa: B023
        ret, length, frames = run_episode(env, policy, max_steps=max_steps,
                                          render=render if i == 0 else None, on_step=on_step,
                                          on_end=on_end)
        if progress is not None:
            progress(i, length, ret, time.perf_counter() - start)
        returns.append(ret)
        lengths.append(length)
        if frames:
            video = np.stack(frames)
    return EvalResult(returns, lengths, video, {k: float(np.mean(v)) for k, v in seen.items()})


def evaluate_side_by_side(envs: list, policy, *, episodes: int, max_steps: int, seed: int,
                          render=None, progress=None, metrics=None) -> EvalResult:
    """:func:`evaluate` with ``K = len(envs)`` envs: each runs an episode, the policy acts
    for all ``K`` in one call (a batch ``[K]`` of fixed slots, so a policy's per-env state
    stays with its env; a new episode starts with ``is_init`` set), and an env whose episode
    ends takes the next one until ``episodes`` have started. Env ``i`` is seeded ``i`` after
    the first; results are listed in the order episodes end. ``render`` records the first
    episode (the first env's)."""
    for i, env in enumerate(envs):
        env.set_seed(seed + EVAL_SEED_OFFSET + i)
    slots = min(len(envs), episodes)
    envs = envs[:slots]
    returns, lengths, frames = [], [], []
    seen: dict[str, list[float]] = {}
    tds = [env.reset() for env in envs]
    episode = list(range(slots))  # the episode each slot runs (``None``: no more to run)
    ret, steps, start = [0.0] * slots, [0] * slots, [time.perf_counter()] * slots
    started = slots
    if render is not None:
        frames.append(render(envs[0]))
    while any(e is not None for e in episode):
        batch = torch.stack(tds)
        policy(batch)
        for i in range(slots):
            if episode[i] is None:  # (an idle slot's action is not taken)
                continue
            td = envs[i].step(batch[i])
            ret[i] += float(td.get(keys.REWARD).sum())
            steps[i] += 1
            if render is not None and episode[i] == 0:
                frames.append(render(envs[i]))
            if progress is not None:
                progress(episode[i], 0, None, 0.0)
            if not (bool(td.get(keys.DONE).any()) or steps[i] == max_steps):
                tds[i] = step_mdp(td)
                continue
            for name, value in (metrics(td, envs[i]) if metrics is not None else {}).items():
                seen.setdefault(name, []).append(float(value))
            if progress is not None:
                progress(len(returns), steps[i], ret[i], time.perf_counter() - start[i])
            returns.append(ret[i])
            lengths.append(steps[i])
            if started < episodes:
                episode[i], started = started, started + 1
                tds[i], ret[i], steps[i], start[i] = envs[i].reset(), 0.0, 0, time.perf_counter()
            else:
                episode[i] = None  # idle: its last observation stays in the batch
                tds[i] = step_mdp(td)
    video = np.stack(frames) if frames else None
    return EvalResult(returns, lengths, video, {k: float(np.mean(v)) for k, v in seen.items()})


def seeded(fn, seed: int):
    """Run ``fn`` under a forked torch RNG so evaluation leaves training's RNG untouched."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return fn()
