"""Reversibility-aware RL hyperparameters (RAE, RAC and their base agents).

Source: Grinsztajn, Ferret, Pietquin, Preux, Geist 2021, "There is no turning back: a
self-supervised approach for reversibility-aware reinforcement learning", arXiv 2106.04480
([paper] below), and the settings reported for the authors' code
(NathanGrinsztajn/NoTurningBack, [reference]). Where a value is wmlab's own choice the field
says so ([wmlab]).

Where wmlab departs from the paper, in short:

* RAE trains the precedence estimator online on pairs drawn inside each on-policy rollout
  (``[run.envs, unroll]``, pairs never cross an episode start) instead of a buffer of past
  trajectories: the core does not store on-policy rollouts, and the latest rollout is the
  agent's newest behaviour. Distances are capped by the rollout length.
* PPO runs on ``run.envs`` synchronous envs with the usual PPO settings (stable-baselines3's
  defaults, not settings taken from the paper); the rollout length per env is
  wmlab's (see ``unroll``).
* psi's architecture is wmlab's (``psi_form``, ``psi_bound``): the ``cartpole-rae`` preset
  uses an antisymmetric potential form, with which reward-free RAE learned on CartPole.
* The networks are MLPs on state vectors (Turf: the one-hot planes of the grid); the paper's
  Sokoban experiments (IMPALA, pixels) are not reproduced.
"""

from __future__ import annotations

from dataclasses import dataclass

#: ``method.mode``
MODES = ("rac", "rae", "none")
#: ``method.agent``
AGENTS = ("ppo", "random")
#: ``method.psi_form``
PSI_FORMS = ("pair", "potential")


@dataclass
class ReversibilityConfig:
    mode: str = "rac"
    """``rac``: reversibility-aware control [paper Sec. 4.2]: psi trained offline on the
    uniformly random policy's episodes, phi(s, a) fitted to psi, then the base agent acts with
    every action whose phi exceeds ``threshold`` replaced by the most reversible action.
    ``rae``: reversibility-aware exploration [paper Sec. 4.1]: psi trained online on the
    agent's own experience, the reward lowered by ``penalty`` x max(0, psi(s_t, s_t+1) -
    ``threshold``). ``none``: the base agent alone (the baseline both are measured against)."""
    agent: str = "ppo"
    """Base agent: ``ppo`` (PPO on on-policy rollouts) or ``random`` (uniformly random actions;
    the paper's RAC check on CartPole filters a random policy). ``rae`` needs ``ppo``."""
    threshold: float = 0.7
    """beta, in (0, 1): RAE penalises a transition whose psi exceeds it; RAC replaces an
    action whose phi exceeds it [paper: 0.7 by default]."""
    penalty: float = 1.0
    """w, the weight of RAE's penalty [paper: 1 on CartPole, 0.1 on Turf (the ``turf``
    preset)]."""
    reward_free: bool = False
    """RAE without the env's reward: the agent's reward is the penalty alone [paper Sec. 5.1,
    reward-free CartPole]."""
    min_distance: int = 1
    """d_min: the fewest policy steps between the two observations of a psi training pair
    [paper: pairs of one trajectory at any distance from 1 up to the window]."""
    max_distance: int = 200
    """d_max: the window, the most policy steps between the two observations of a pair
    [reference: 200 for RAC on CartPole]."""
    psi_hidden: int = 64
    """Units of each of psi's two hidden layers (an MLP on both observations side by side)
    [wmlab; the paper's CartPole estimators are small MLPs of this order]."""
    psi_form: str = "pair"
    """``pair``: psi is an MLP on both observations side by side. ``potential``: psi(s, s') =
    sigmoid(f(s') - f(s)) with f an MLP on one observation, antisymmetric by construction; a
    step between two close states then gets psi near 0.5 even where one step's dynamics
    would give its order away (CartPole's positions follow its velocities), so RAE penalises
    the drift towards an irreversible state, not every step [wmlab; the ``cartpole-rae``
    preset uses it]."""
    psi_bound: float = 0.0
    """With ``psi_form=potential``: f is squashed into (-psi_bound, psi_bound) (0: not
    squashed). Trained online on an agent that balances for longer and longer, an unbounded
    f keeps stretching along slow drifts until every step's psi passes the threshold [wmlab;
    ``cartpole-rae`` uses 10]."""
    psi_lr: float = 0.01
    """Adam learning rate of psi [reference: 0.01]."""
    psi_batch: int = 128
    """Pairs per psi update [reference: 128]."""
    psi_every: int = 500
    """RAE: env steps between two psi trainings [reference: 500]."""
    psi_updates_each: int = 10
    """RAE: psi updates at each training [reference: 10]."""
    random_steps: int = 100_000
    """RAC: env steps of the uniformly random policy collected for psi and phi (stored in the
    replay) [wmlab: about 4,500 CartPole episodes; the reference trains on random episodes of
    the same order]."""
    psi_updates: int = 10_000
    """RAC: offline psi updates on pairs of the random episodes [wmlab]."""
    phi_hidden: int = 64
    """Units of each of phi's two hidden layers (an MLP on the observation, one output per
    action) [wmlab]."""
    phi_lr: float = 0.001
    """Adam learning rate of phi [wmlab]."""
    phi_batch: int = 128
    """Transitions per phi update [wmlab, as psi's batch]."""
    phi_updates: int = 10_000
    """RAC: offline phi updates on the random episodes' transitions [wmlab]."""
    hidden: int = 64
    """Units of each of the two tanh hidden layers of PPO's actor and (separate) critic
    [stable-baselines3's default MLP policy: 64, 64]."""
    lr: float = 3e-4
    """Adam learning rate of PPO [stable-baselines3: 3e-4]."""
    unroll: int = 256
    """Policy steps per env per PPO rollout, ``T`` of ``[run.envs, T]`` [wmlab: 256 x 8 envs =
    stable-baselines3's 2048 steps per rollout]."""
    epochs: int = 10
    """Passes of PPO over each rollout [stable-baselines3: 10]."""
    minibatch: int = 64
    """Policy steps per PPO minibatch [stable-baselines3: 64]."""
    clip: float = 0.2
    """PPO's clipping range of the probability ratio [stable-baselines3: 0.2]."""
    discount: float = 0.99
    """gamma [stable-baselines3: 0.99]."""
    gae_lambda: float = 0.95
    """lambda of the generalised advantage estimate [stable-baselines3: 0.95]."""
    entropy_weight: float = 0.0
    """Weight of the entropy bonus [stable-baselines3: 0]."""
    value_weight: float = 0.5
    """Weight of the value loss [stable-baselines3: 0.5]."""
    max_grad_norm: float = 0.5
    """Gradient clipping of PPO's update (0: none) [stable-baselines3: 0.5]."""
    eval_sample: bool = False
    """Evaluate with sampled actions instead of the most likely one (the filter applies
    either way) [wmlab]."""
