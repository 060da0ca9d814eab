"""TensorDict keys used between the core and the methods, in one place.

How one stored row lines up in time (one row per *policy step*; one policy step
spans ``env.action_repeat`` simulator frames, and frames are what wmlab counts as
env steps on every x-axis)::

    row t:   OBSERVATION o_t ──► policy ──► ACTION a_t ──► env ──► REWARD r_t, DONE d_t
             IS_INIT     (o_t starts an episode)                    TERMINATED, TRUNCATED
    row t+1: OBSERVATION o_{t+1} ...

``REWARD``, ``DONE``, ``TERMINATED`` and ``TRUNCATED`` live under ``"next"`` (torchrl's
convention): they are what happened *after* ``a_t``. The next observation is not
stored: within a trajectory ``o_{t+1}`` is row ``t+1``'s ``OBSERVATION``, so every
frame is stored once. A sampled sequence of length ``L`` therefore holds ``L``
observations and ``L - 1`` usable transitions ``(o_t, a_t, r_t, o_{t+1})``.

Every finished episode gets one more row after its last policy step: the *final row*,
whose ``OBSERVATION`` (and extra observation entries) is the final frame o_T, with a zero
``ACTION``, zero ``REWARD`` and the episode's ``DONE``/``TERMINATED``/``TRUNCATED`` flags
(the last policy step's row has them as well). After a *termination* (the task is over)
the transition into the terminal state is stored like any other, and a model can learn
that o_T ends the episode; after the time limit (``TRUNCATED``, not ``TERMINATED``) the
last transition can still be bootstrapped from o_T. Final rows are not policy steps
(counters skip them).

Observations are float vectors for state-based envs and ``uint8`` images ``[C, H, W]``
(RGB, or one grayscale channel) for pixel envs (methods scale images themselves, see
``wmlab.nets.preprocess_obs``);
discrete actions are one-hot float vectors (``EnvSpecs.discrete``).
"""

OBSERVATION = "observation"
ACTION = "action"
NEXT = "next"
REWARD = (NEXT, "reward")
DONE = (NEXT, "done")
TERMINATED = (NEXT, "terminated")
TRUNCATED = (NEXT, "truncated")
IS_INIT = "is_init"
TRAJ_ID = ("collector", "traj_ids")

#: keys written to the replay buffer for every policy step
STORED = (OBSERVATION, ACTION, IS_INIT, REWARD, DONE, TERMINATED, TRUNCATED, TRAJ_ID)
