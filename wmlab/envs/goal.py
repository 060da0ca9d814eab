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
| ``pusher`` | Pusher-v5 (100 frames) | the object's x, y on the table (m); drawn like the object's start, at least 0.17 m from it | 0.05 m |
| ``cheetah-velocity`` | HalfCheetah-v5 (1000 frames) | forward velocity (m/s); uniform in 0..3 | 0.1 m/s |
| ``point-maze`` | gymnasium-robotics PointMaze_UMaze-v3 (300 frames) | the ball's x, y (m); a free cell of the U-maze, as the env draws it | 0.45 m |

The sim draws the goal in the videos of ``reacher``, ``pusher`` (the red disc) and
``point-maze`` (the red ball); ``cheetah-velocity`` frames get a gauge along their top edge:
the target velocity as a red tick, the current one as a green bar (0..3 m/s).

``pusher``: Pusher-v5 keeps its goal at one place; this family moves the goal's two slide
joints at every reset to a point drawn like the object's start position (uniform, x offset
in -0.2..0.2 m and y offset in -0.3..0 m of the table's origin), at least 0.17 m from the
object (Pusher-v5's own minimum distance of object to goal). ``point-maze`` needs the
``gymnasium-robotics`` package (a dependency of wmlab); its episodes continue after the
goal is reached (the env's ``continuing_task``), so the final distance says whether the
ball stays there; its success tolerance is the env's own (0.45 m).

Everything else (action repeat, episode cuts, pixels, rendering, seeding) is the ``gym``
family's (:class:`~wmlab.envs.gym.Gym`, whose :meth:`~wmlab.envs.gym.Gym.make_gym` this
family overrides to wrap the env). A uniformly random policy on ``goal:reacher`` ends 0.16 m
from the target, 5% of episodes within 0.05 m (20 episodes of the eval env of run seed 1;
0.17 and 0.21 m with eval seeds of run seeds 2 and 3; the paper: 0.18 m, 5%).
``benchmarks/tdm_vs_her.py`` measures the random policy of every task it runs beside TDM.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional

import numpy as np
import torch

from wmlab.envs import EnvFamily, base_env
from wmlab.errors import EnvError
from wmlab.envs.gym import Gym, GymConfig, GymnasiumTorchEnv, _import_gymnasium, _make_gym

__all__ = ["Goal", "GoalConfig", "GoalTask", "TASKS"]

ACHIEVED, DESIRED = "achieved_goal", "desired_goal"


@dataclass(frozen=True)
class GoalTask:
    """A goal task: the gymnasium id, how the env's observation splits into (observation,
    achieved goal, desired goal), the success tolerance, and how a goal is drawn: a range
    for a 1-D goal the wrapper keeps itself (``goal_low``, ``goal_high``; the sim does not
    show it, so videos get a gauge), ``place`` to move the sim's own goal at every reset
    (``place(unwrapped_env, rng)``), or neither (the env draws its own, found in its
    observation). ``module``: a package to import first, which registers ``gym_id``."""

    gym_id: str
    split: Callable[[Any, Optional[np.ndarray]], tuple[np.ndarray, np.ndarray, np.ndarray]]
    tolerance: float
    goal_low: Optional[float] = None
    goal_high: Optional[float] = None
    place: Optional[Callable[[Any, np.random.Generator], None]] = None
    module: Optional[str] = None

    @property
    def draws_goal(self) -> bool:
        return self.goal_low is not None


def _reacher(obs, goal):
    # Reacher-v5: cos q (2), sin q (2), target x, y (2), qvel (2), fingertip - target x, y (2)
    target = obs[4:6]
    return np.concatenate([obs[0:4], obs[6:8]]), obs[8:10] + target, target


def _pusher(obs, goal):
    # Pusher-v5: qpos[:7], qvel[:7], fingertip xyz (3), object xyz (3), goal xyz (3); the
    # object and the goal slide on the table, so their x, y are the goal space
    return obs[:20], obs[17:19], obs[20:22]


#: Pusher-v5's slide joints (qpos indices) of the object and the goal, each (y, x)
_PUSHER_OBJECT, _PUSHER_GOAL = slice(7, 9), slice(9, 11)


def _place_pusher_goal(env, rng: np.random.Generator) -> None:
    import mujoco

    obj = env.data.qpos[_PUSHER_OBJECT].copy()
    while True:  # Pusher-v5 draws the object this way around a goal at the origin
        goal = np.array([rng.uniform(-0.3, 0.0), rng.uniform(-0.2, 0.2)])
        if np.linalg.norm(goal - obj) > 0.17:
            break
    env.data.qpos[_PUSHER_GOAL] = goal
    env.data.qvel[_PUSHER_GOAL] = 0.0
    mujoco.mj_forward(env.model, env.data)


def _cheetah_velocity(obs, goal):
    # HalfCheetah-v5: qpos[1:] (8), qvel (9) with qvel[0] the forward velocity
    return obs, obs[8:9], goal


def _point_maze(obs, goal):
    # gymnasium-robotics' maze envs observe a Dict already: ball x, y, vx, vy and the goals
    return obs["observation"], obs[ACHIEVED], obs[DESIRED]


TASKS = {
    "reacher": GoalTask("Reacher-v5", _reacher, tolerance=0.05),
    "pusher": GoalTask("Pusher-v5", _pusher, tolerance=0.05, place=_place_pusher_goal),
    "cheetah-velocity": GoalTask("HalfCheetah-v5", _cheetah_velocity, tolerance=0.1,
                                 goal_low=0.0, goal_high=3.0),
    "point-maze": GoalTask("PointMaze_UMaze-v3", _point_maze, tolerance=0.45,
                           module="gymnasium_robotics"),
}


@dataclass
class GoalConfig(GymConfig):
    """The goal family's keys of the ``env`` section: the gym family's and a tolerance."""

    tolerance: float = 0.0
    """Distance to the goal within which an episode's end counts as a success
    (``eval/success_rate``); 0 takes the task's own (reacher and pusher 0.05 m,
    cheetah-velocity 0.1 m/s, point-maze 0.45 m)."""


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
            self.last: dict[str, np.ndarray] | None = None  # the latest observation
            parts = task.split(env.observation_space.sample(), np.zeros(1, np.float32))
            self.observation_space = spaces.Dict({
                name: spaces.Box(-np.inf, np.inf, part.shape, np.float32)
                for name, part in zip(("observation", ACHIEVED, DESIRED), parts)})

        def _obs(self, raw):
            if not isinstance(raw, dict):
                raw = np.asarray(raw, np.float32)
            parts = self.task.split(raw, self.goal)
            self.last = {name: np.asarray(part, np.float32)
                         for name, part in zip(("observation", ACHIEVED, DESIRED), parts)}
            return dict(self.last)

        def reset(self, *, seed=None, options=None):
            raw, info = self.env.reset(seed=seed, options=options)
            base, rng = self.env.unwrapped, self.env.unwrapped.np_random
            if self.task.draws_goal:
                self.goal = rng.uniform(self.task.goal_low, self.task.goal_high, 1).astype(np.float32)
            if self.task.place is not None:
                self.task.place(base, rng)
                raw = base._get_obs()  # the observation with the goal where it is now
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
    fixed_tasks = True

    always_uses_gl = True  # every task is a MuJoCo simulation, drawn through OpenGL
    uses_gl = EnvFamily.uses_gl  # (not Gym's test of the entry point)

    def tasks(self) -> list[str]:
        return sorted(TASKS)

    def make_gym(self, name: str, kwargs: dict[str, Any]):
        task = TASKS[name]
        if task.module is not None:
            _import_task_module(name, task.module)
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

    def render(self, env, size: int) -> np.ndarray:
        """The gym family's frame; for a task whose goal the sim does not draw (a velocity),
        a gauge along the top edge: the goal as a red tick, the achieved value as a green
        bar, both on the task's goal range."""
        frame = super().render(env, size)
        wrapper = base_env(env, GymnasiumTorchEnv, "goal").gym_env
        task, last = wrapper.task, wrapper.last
        if task.draws_goal and last is not None:
            frame = _gauge(frame, float(last[ACHIEVED][0]), float(last[DESIRED][0]),
                           task.goal_low, task.goal_high)
        return frame


def _gauge(frame: np.ndarray, value: float, goal: float, low: float, high: float) -> np.ndarray:
    """``frame`` with a bar of ``value`` (green) and a tick at ``goal`` (red) on ``low..high``
    drawn across its top rows (a 32nd of its height, at least 2 pixels)."""
    frame = frame.copy()
    h, w = frame.shape[:2]
    rows = max(2, h // 32)

    def column(x: float) -> int:
        return int(round(np.clip((x - low) / (high - low), 0.0, 1.0) * (w - 1)))

    frame[:rows] = 0
    frame[:rows, :column(value) + 1] = (40, 200, 40)
    tick = column(goal)
    frame[:rows + 1, max(0, tick - 1):tick + 1] = (230, 30, 30)
    return frame


def _import_task_module(name: str, module: str) -> None:
    """Import the package that registers a task's env, or one line naming what to install.
    What the package prints on import is dropped (gymnasium-robotics prints a notice about
    its Adroit envs' rewards, which no goal task uses)."""
    import contextlib
    import importlib
    import io

    try:
        with contextlib.redirect_stderr(io.StringIO()):
            importlib.import_module(module)
    except ImportError as e:
        package = module.replace("_", "-")
        raise EnvError(f"goal:{name} needs the {package} package, which cannot be imported "
                       f"({type(e).__name__}: {e}); install it: pip install {package}") from e
