"""TDM hyperparameters (and those of its HER + DDPG baseline, ``method.variant=her``).

Sources: the paper (Pong, Gu, Dalal, Levine 2018, arXiv 1802.09081) and the authors' code,
rlkit v0.1.2: ``rlkit/torch/tdm/tdm.py`` (written [tdm] below), ``rlkit/torch/tdm/networks.py``
([networks]), ``rlkit/torch/ddpg/ddpg.py`` ([ddpg]) and the example scripts
``examples/tdm/*.py`` ([examples]: cheetah max tau 10, reward scale 10, 25 updates per env
step; ant max tau 49, reward scale 10, 5 updates per step; 300x300 nets, batch 128, soft
target rate 0.001).

Units: the authors count env steps of their gym envs, which are wmlab's policy steps of a
``goal:*`` task (action repeat 1); ``updates_per_step`` is the core's train ratio (updates
per policy step).
"""

from __future__ import annotations

from dataclasses import dataclass

VARIANTS = ("tdm", "her")
HER_REWARDS = ("dense", "sparse")


@dataclass
class TDMConfig:
    variant: str = "tdm"
    """``tdm``: the vector-valued, horizon-conditioned Q of the paper. ``her``: the DDPG +
    HER baseline, with the same networks, sampler (future goals, 75%) and updates: a scalar
    Q(s, a, g) (tau always 0) on the goal reward (``her_reward``), discounted by
    ``her_discount`` and bootstrapped at every step."""
    max_tau: int = 10
    """Largest horizon tau trained on and acted with [examples: cheetah 10, ant 49]; tau is
    drawn uniformly in 0..max_tau for every sample [tdm ``get_batch``], and counts down from
    max_tau while acting, starting again at max_tau after 0 [tdm ``_handle_step``]."""
    future: float = 0.75
    """Fraction of samples whose goal is relabelled with an achieved goal of a later step of
    the same episode; the rest keep the episode's own goal [paper, HER replay buffer]."""
    reward_scale: float = 10.0
    """Factor on the distance reward [examples]. Q = -|f - g| then predicts the scaled
    distances (f absorbs the scale)."""
    discount: float = 1.0
    """Discount of the TDM target [paper: finite horizon, gamma 1]."""
    hidden: int = 300
    """Width of the two hidden layers of the Q-function and the policy [examples: 300x300]."""
    layers: int = 2
    """Hidden layers of each network [examples]."""
    batch_size: int = 128
    """Transitions per update [examples]."""
    q_lr: float = 1e-3
    """Adam learning rate of the Q-function [ddpg default ``qf_learning_rate``]."""
    policy_lr: float = 1e-4
    """Adam learning rate of the policy [ddpg default ``policy_learning_rate``]."""
    target_rate: float = 1e-3
    """Polyak rate of the target Q-function and target policy after every update
    [examples ``tau`` 0.001, soft target updates]."""
    huber_delta: float = 1.0
    """Threshold of the Huber loss on the Q targets [examples ``qf_criterion=HuberLoss()``]."""
    updates_per_step: float = 25.0
    """Updates per policy step (the core's train ratio) [examples: cheetah 25, ant 5]. The
    per-env presets lower it to fit a CPU budget (see ``method.py``)."""
    prefill_steps: int = 1000
    """Env steps of uniformly random actions before the first update. wmlab's choice: the
    examples start training from the first step of the exploration policy."""
    explore_noise: float = 0.2
    """Std of the Gaussian noise added to the policy's actions while collecting, in units of
    half the action range, then clipped to the bounds. The examples use an Ornstein-
    Uhlenbeck process; wmlab uses independent Gaussian noise (as TD3 and most HER code)."""
    her_reward: str = "dense"
    """``her`` variant only: ``dense``, minus the Euclidean distance of the next achieved
    goal to the goal (times ``reward_scale``), the reward TDM's target is built from;
    ``sparse``, -1 unless within ``her_tolerance`` (HER's own reward), then 0. Which of the
    two the paper's baseline used is not in the sources above; wmlab's default gives both
    methods the same distances to learn from."""
    her_tolerance: float = 0.05
    """``her`` variant with a sparse reward: the distance that counts as reaching the goal."""
    her_discount: float = 0.98
    """``her`` variant only: discount of the infinite-horizon target (HER's 0.98)."""
