"""Tiny gymnasium envs the gym family's tests use, registered on import under the namespace
``wmlab_test`` (so ``--env gym:gym_fixtures:wmlab_test/GoalPoint-v0`` works from the CLI)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
from gymnasium import spaces


class GoalPoint(gym.Env):
    """A point on a plane moves towards a goal: a goal-conditioned task with a ``Dict``
    observation (``observation`` = position, ``achieved_goal`` = position, ``desired_goal``).

    Actions move the point by ``0.1 * action`` (``Box(-1, 1, (2,))``), or with
    ``discrete=True`` one of 5 moves (stay, +x, -x, +y, -y) of 0.1. Reward 1 per step is
    the frame count's check (the sum over a repeat is the number of frames); the episode
    terminates when the point is within 0.15 of the goal. Renders a 24x24 picture."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}
    MOVES = np.array([[0, 0], [1, 0], [-1, 0], [0, 1], [0, -1]], dtype=np.float32)

    def __init__(self, render_mode=None, discrete: bool = False):
        box = spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.observation_space = spaces.Dict(
            {"observation": box, "achieved_goal": box, "desired_goal": box})
        self.action_space = spaces.Discrete(5) if discrete else spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.render_mode = render_mode
        self.discrete = discrete
        self.pos = np.zeros(2, np.float32)
        self.goal = np.zeros(2, np.float32)

    def _obs(self):
        return {"observation": self.pos.copy(), "achieved_goal": self.pos.copy(),
                "desired_goal": self.goal.copy()}

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.pos = self.np_random.uniform(-1, 1, 2).astype(np.float32)
        self.goal = self.np_random.uniform(-1, 1, 2).astype(np.float32)
        return self._obs(), {}

    def step(self, action):
        move = self.MOVES[int(action)] if self.discrete else np.asarray(action, np.float32)
        self.pos = np.clip(self.pos + 0.1 * move, -1, 1).astype(np.float32)
        terminated = bool(np.linalg.norm(self.pos - self.goal) < 0.15)
        return self._obs(), 1.0, terminated, False, {}

    def render(self):
        frame = np.zeros((24, 24, 3), np.uint8)
        for point, channel in ((self.pos, 0), (self.goal, 1)):
            x, y = ((point + 1) / 2 * 23).astype(int)
            frame[y, x, channel] = 255
        return frame


class TupleObservation(gym.Env):
    """Observes a ``Tuple`` space, which the gym family does not handle."""

    observation_space = spaces.Tuple((spaces.Discrete(2), spaces.Discrete(3)))
    action_space = spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return (0, 0), {}

    def step(self, action):
        return (0, 0), 0.0, False, False, {}


class MultiDiscreteActions(gym.Env):
    """Acts in a ``MultiDiscrete`` space, which the gym family does not handle."""

    observation_space = spaces.Box(-1.0, 1.0, (2,), np.float32)
    action_space = spaces.MultiDiscrete([2, 3])

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(2, np.float32), {}

    def step(self, action):
        return np.zeros(2, np.float32), 0.0, False, False, {}


class NoRender(MultiDiscreteActions):
    """A state-only env: no render modes at all."""

    metadata = {"render_modes": []}
    action_space = spaces.Discrete(2)


for _name, _cls in (("GoalPoint", GoalPoint), ("TupleObservation", TupleObservation),
                    ("MultiDiscreteActions", MultiDiscreteActions), ("NoRender", NoRender)):
    if f"wmlab_test/{_name}-v0" not in gym.registry:
        gym.register(f"wmlab_test/{_name}-v0", entry_point=_cls, max_episode_steps=200)
