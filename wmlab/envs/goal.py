"""Goal-conditioned tasks on gymnasium's MuJoCo envs (``--env goal:reacher``).

Each task is a gymnasium env whose goal is taken out of the state and given apart, as a
composite observation (:attr:`wmlab.api.EnvSpecs.extra_obs`):

* ``observation``: the state without the goal;
* ``achieved_goal``: the part of the state the goal is about;
* ``desired_goal``: the goal, drawn anew at every episode.

The reward is minus the Euclidean distance of ``achieved_goal`` to ``desired_goal`` after
each step (so the eval return sums the distances); every evaluation also logs the final
distance, ``eval/final_distance``, and the fraction of episodes that end within
``env.tolerance`` of the goal, ``eval/success_rate`` (:meth:`Goal.eval_metrics`).

| task | gymnasium env | goal | tolerance |
|---|---|---|---|
| ``reacher`` | Reacher-v5 (50 frames) | fingertip x, y (m); the target, uniform in a disc of 0.2 m | 0.05 m |
| ``cheetah-velocity`` | HalfCheetah-v5 (1000 frames) | forward velocity (m/s); uniform in 0..3 | 0.1 m/s |

Everything else (action repeat, episode cuts, pixels, rendering, seeding) is the ``gym``
family's (:class:`~wmlab.envs.gym.Gym`, whose :meth:`~wmlab.envs.gym.Gym.make_gym` this
family overrides to wrap the env). A uniformly random policy on ``goal:reacher`` ends 0.16 m
from the target, 5% of episodes within 0.05 m (20 episodes of the eval env of run seed 1;
0.17 and 0.21 m with eval seeds of run seeds 2 and 3; the paper: 0.18 m, 5%).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional

import numpy as np
import torch

from wmlab.envs import EnvFamily, base_env
from wmlab.envs.gym import Gym, GymConfig, GymnasiumTorchEnv, _import_gymnasium, _make_gym

__all__ = ["Goal", "GoalConfig", "GoalTask", "TASKS"]

ACHIEVED, DESIRED = "achieved_goal", "desired_goal"


@dataclass(frozen=True)
class GoalTask:
    """A goal task: the gymnasium id, how a flat observation splits into (observation,
    achieved goal, desired goal), how a goal is drawn (``None``: the env draws its own,
    found in its observation) and the success tolerance."""

    gym_id: str
    split: Callable[[np.ndarray, Optional[np.ndarray]], tuple[np.ndarray, np.ndarray, np.ndarray]]
    tolerance: float
    goal_low: Optional[float] = None
    goal_high: Optional[float] = None

    @property
    def draws_goal(self) -> bool:
        return self.goal_low is not None


def _reacher(obs, goal):
    # Reacher-v5: cos q (2), sin q (2), target x, y (2), qvel (2), fingertip - target x, y (2)
    target = obs[4:6]
    return np.concatenate([obs[0:4], obs[6:8]]), obs[8:10] + target, target


def _cheetah_velocity(obs, goal):
    # HalfCheetah-v5: qpos[1:] (8), qvel (9) with qvel[0] the forward velocity
    return obs, obs[8:9], goal


TASKS = {
    "reacher": GoalTask("Reacher-v5", _reacher, tolerance=0.05),
    "cheetah-velocity": GoalTask("HalfCheetah-v5", _cheetah_velocity, tolerance=0.1,
                                 goal_low=0.0, goal_high=3.0),
}


@dataclass
class GoalConfig(GymConfig):
    """The goal family's keys of the ``env`` section: the gym family's and a tolerance."""

    tolerance: float = 0.0
    """Distance to the goal within which an episode's end counts as a success
    (``eval/success_rate``); 0 takes the task's own (reacher 0.05 m, cheetah-velocity
    0.1 m/s)."""


def _goal_wrapper(env, task: GoalTask):
    gymnasium = _import_gymnasium()
    from gymnasium import spaces

    class GoalObservation(gymnasium.Wrapper):
        """A flat-observation env as a ``Dict`` one (observation, achieved and desired goal),
        rewarded with minus the distance to the goal."""

        def __init__(self, env):
            super().__init__(env)
            self.task, self.tolerance = task, task.tolerance
            self.goal = None
            probe = np.zeros(env.observation_space.shape, np.float32)
            parts = task.split(probe, np.zeros(1, np.float32))
            self.observation_space = spaces.Dict({
                name: spaces.Box(-np.inf, np.inf, part.shape, np.float32)
                for name, part in zip(("observation", ACHIEVED, DESIRED), parts)})

        def _obs(self, raw):
            parts = self.task.split(np.asarray(raw, np.float32), self.goal)
            return {name: np.asarray(part, np.float32)
                    for name, part in zip(("observation", ACHIEVED, DESIRED), parts)}

        def reset(self, *, seed=None, options=None):
            raw, info = self.env.reset(seed=seed, options=options)
            if self.task.draws_goal:
                rng = self.env.unwrapped.np_random
                self.goal = rng.uniform(self.task.goal_low, self.task.goal_high, 1).astype(np.float32)
            return self._obs(raw), info

        def step(self, action):
            raw, _, terminated, truncated, info = self.env.step(action)
            obs = self._obs(raw)
            reward = -float(np.linalg.norm(obs[ACHIEVED] - obs[DESIRED]))
            return obs, reward, terminated, truncated, info

    return GoalObservation(env)


class Goal(Gym):
    """Goal-conditioned MuJoCo tasks, ``goal:TASK`` (see the module docstring)."""

    description = "goal-conditioned MuJoCo tasks (desired/achieved goals), e.g. goal:reacher"
    Config = GoalConfig
    validate = EnvFamily.validate

    def tasks(self) -> list[str]:
        return sorted(TASKS)

    def make_gym(self, name: str, kwargs: dict[str, Any]):
        task = TASKS[name]
        return _goal_wrapper(_make_gym(task.gym_id, kwargs), task)

    def make(self, name: str, cfg: Any, *, seed: int):
        env = super().make(name, cfg, seed=seed)
        wrapper = base_env(env, GymnasiumTorchEnv, "goal").gym_env
        wrapper.tolerance = float(self.settings(cfg).tolerance) or TASKS[name].tolerance
        return env

    def eval_metrics(self, env: Any, last: Any) -> dict[str, float]:
        """``final_distance`` (Euclidean, of the last step's achieved goal to the desired one)
        and ``success_rate`` (1 if within the tolerance, else 0; averaged over episodes)."""
        tolerance = base_env(env, GymnasiumTorchEnv, "goal").gym_env.tolerance
        nxt = last.get("next")
        distance = float(torch.linalg.vector_norm(
            nxt.get(ACHIEVED).float() - nxt.get(DESIRED).float(), dim=-1).mean())
        return {"final_distance": distance, "success_rate": float(distance <= tolerance)}
