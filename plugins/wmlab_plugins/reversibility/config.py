"""Reversibility-aware RL hyperparameters (RAE, RAC and their base agents).

Source: Grinsztajn, Ferret, Pietquin, Preux, Geist 2021, "There is no turning back: a
self-supervised approach for reversibility-aware reinforcement learning", arXiv 2106.04480
([paper] below), and the authors' code, NathanGrinsztajn/NoTurningBack, cited by file:
``rac_cartpole.py``, ``rac_turf.py`` (RAC's scripts), ``offline_reversibility.py`` (RAC's
offline psi and phi), ``rae_cartpole.py``, ``rae_turf.py`` (RAE's scripts),
``stable_baselines3_copy/common/vec_env/vec_intrisinc_reward.py`` (RAE's online psi and
penalty, ``VecIntrinsic``), ``.../vec_env/vec_safe.py`` (RAC's filter, ``VecSafe``),
``model.py`` (psi and phi), ``stable_baselines3_copy/ppo/ppo.py`` (PPO's defaults). Where a
value is wmlab's own choice the field says so ([wmlab]) and gives the authors' value.

Where wmlab departs from the authors' code, in short:

* RAE trains the precedence estimator online on pairs drawn inside each on-policy rollout
  (``[run.envs, unroll]``, pairs never cross an episode start) instead of a FIFO buffer of
  the latest transitions (20,000 on CartPole, 2,000 on Turf: ``--buffer_size`` of
  ``rae_cartpole.py`` / ``rae_turf.py``): the core does not store on-policy rollouts, and the
  latest rollout is the agent's newest behaviour. Distances are capped by the rollout length.
  Each of the ``psi_updates_each`` updates draws fresh pairs (``VecIntrinsic`` draws one
  batch and takes its 10 gradient steps on it).
* PPO runs on ``run.envs`` synchronous envs with stable-baselines3's PPO defaults (the
  authors' scripts keep them too, one env, 2,048 steps a rollout); the rollout length per
  env is wmlab's (see ``unroll``). The entropy weight is the one setting the scripts change
  (see ``entropy_weight``).
* RAC: PPO learns from the action the env executed (after the filter); the authors' filter
  sits in the env wrapper (``VecSafe.step_async``), so their PPO stores the action it
  proposed, not the one executed.
* psi's and phi's architectures are wmlab's (``psi_hidden``, ``psi_form``, ``psi_bound``,
  ``phi_hidden``): MLPs on state vectors (Turf: the one-hot planes of the grid) where the
  authors use a siamese encoder of each observation (``model.py``; a convolutional one on
  Turf's image). The ``cartpole-rae`` preset uses an antisymmetric potential form, with
  which reward-free RAE learned on CartPole.
* The paper's Sokoban experiments (IMPALA, pixels) are not reproduced.
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
    """``rac``: reversibility-aware control [paper Sec. 4.2; rac_cartpole.py, rac_turf.py,
    offline_reversibility.py]: psi trained offline on the uniformly random policy's episodes,
    phi(s, a) fitted to psi, then the base agent acts with every action whose phi exceeds
    ``threshold`` replaced by the most reversible action. ``rae``: reversibility-aware
    exploration [paper Sec. 4.1; rae_cartpole.py, rae_turf.py, VecIntrinsic]: psi trained
    online on the agent's own experience, the reward lowered by ``penalty`` x max(0,
    psi(s_t, s_t+1) - ``threshold``). ``none``: the base agent alone (the baseline both are
    measured against)."""
    agent: str = "ppo"
    """Base agent: ``ppo`` (PPO on on-policy rollouts; the base agent of every authors'
    script, ``rac_cartpole.py`` included) or ``random`` (uniformly random actions, the filter
    measured alone: wmlab's ``cartpole-rac`` check). ``rae`` needs ``ppo``."""
    threshold: float = 0.7
    """beta, in (0, 1): RAE penalises a transition whose psi exceeds it; RAC replaces an
    action whose phi exceeds it [``--threshold 0.7`` in all four scripts; ``rac_*.py``
    compare phi's logit with log(beta / (1 - beta)), the same test]."""
    penalty: float = 1.0
    """w, the weight of RAE's penalty [rae_cartpole.py: ``--wir 1``; rae_turf.py: ``--wir
    0.1``, set by the ``gridworld:turf`` env preset]."""
    reward_free: bool = False
    """RAE without the env's reward: the agent's reward is minus the penalty alone [paper
    Sec. 5.1, reward-free CartPole; rae_*.py ``--reward_free``, VecIntrinsic.step_wait]."""
    min_distance: int = 1
    """d_min: the fewest policy steps between the two observations of a psi training pair
    [RAC: offline_reversibility.py, learn_rev_classifier draws pairs 1 to ``w_max`` apart.
    RAE: wmlab keeps 1 where rae_*.py default to ``--d_min 0``, which also draws a step
    paired with itself, always labelled 0]."""
    max_distance: int = 200
    """d_max: the window, the most policy steps between the two observations of a pair
    [RAC: offline_reversibility.py, ``w_max=200`` on CartPole and Turf. RAE: rae_*.py
    default to ``--d_max 100``; in wmlab RAE's window is also capped at ``unroll - 1``
    (``cartpole-rae``: 128)]."""
    psi_hidden: int = 64
    """Units of each of psi's two hidden layers (ReLU; an MLP on both observations side by
    side) [wmlab. model.py: one encoder applied to each observation, the two codes
    concatenated into a linear head; on CartPole the encoder is Linear(4, 64) + ReLU for RAC
    (``CartpoleRev``) and Linear(4, 64), ReLU, Linear(64, 64) for RAE
    (``ExtractorCartpole``); on Turf three 3x3 convolutions (32, 64, 64) and a 64-unit
    layer]."""
    psi_form: str = "pair"
    """``pair``: psi is an MLP on both observations side by side. ``potential``: psi(s, s') =
    sigmoid(f(s') - f(s)) with f an MLP on one observation, antisymmetric by construction; a
    step between two close states then gets psi near 0.5 even where one step's dynamics
    would give its order away (CartPole's positions follow its velocities), so RAE penalises
    the drift towards an irreversible state, not every step. The authors' psi is additive
    too (a linear head on the two observations' separate codes), so it cannot compare the
    two states either [wmlab; the ``cartpole-rae`` and ``cartpole-rac`` presets use it: with
    ``pair``, RAC's filtered random policy lasted 32, 377 and 144 steps on seeds 1-3 of
    its check, 82 and 500 with twice the budget; with ``potential`` 245, 290, 500, 500 and
    456 on seeds 1-5]."""
    psi_bound: float = 0.0
    """With ``psi_form=potential``: f is squashed into (-psi_bound, psi_bound) (0: not
    squashed). Trained online on an agent that balances for longer and longer, an unbounded
    f keeps stretching along slow drifts until every step's psi passes the threshold [wmlab;
    ``cartpole-rae`` uses 10]."""
    psi_lr: float = 0.01
    """Adam learning rate of psi [rac_*.py ``--lr_classifier 0.01``; VecIntrinsic's ``lr``
    0.01, which rae_*.py keep]."""
    psi_batch: int = 128
    """Pairs per psi update [RAE: rae_*.py ``--batch_size 128``. RAC: offline_reversibility.py
    trains on batches of 256 pairs; wmlab's 128 for both]."""
    psi_every: int = 500
    """RAE: env steps between two psi trainings [rae_*.py ``--train_freq 500``, counted in
    steps of their one env]."""
    psi_updates_each: int = 10
    """RAE: psi updates at each training [rae_*.py ``--gradient_step 10``; each of wmlab's
    draws new pairs, the authors' 10 reuse one batch]."""
    random_steps: int = 100_000
    """RAC: env steps of the uniformly random policy collected for psi and phi (stored in the
    replay) [wmlab; utils.py, generate_buffer collects ``--n_traj_classifier`` env steps
    (a count of steps despite its name): rac_cartpole.py 5,000 (about 220 CartPole
    episodes), rac_turf.py 500,000, 50,000 in the authors' README (the ``turf`` preset)]."""
    psi_updates: int = 10_000
    """RAC: offline psi updates on pairs of the random episodes [wmlab; offline_reversibility.py:
    100 epochs (``--epoch_classifier``) of 10,000 freshly drawn pairs in batches of 256,
    about 4,000 updates]."""
    phi_hidden: int = 64
    """Units of each of phi's two hidden layers (ReLU; an MLP on the observation, one output
    per action) [wmlab; model.py ``CartpoleARev``: one hidden layer of 64, ``GrasslandARev``:
    psi's Turf encoder and a linear head]."""
    phi_lr: float = 0.001
    """Adam learning rate of phi [wmlab; rac_cartpole.py 0.01 (``--lr_classifier``),
    rac_turf.py 0.01 (``--lr_classifier_act``)]."""
    phi_batch: int = 128
    """Transitions per phi update [offline_reversibility.py, learn_rev_action: 128 of 1,024
    sampled transitions, those that do not end an episode; wmlab's windows of two rows never
    cross an episode's end either]."""
    phi_updates: int = 10_000
    """RAC: offline phi updates on the random episodes' transitions [wmlab;
    offline_reversibility.py: 100,000 (``--steps_action_model``)]."""
    hidden: int = 64
    """Units of each of the two tanh hidden layers of PPO's actor and (separate) critic
    [stable_baselines3_copy/common/policies.py: ``MlpPolicy`` pi [64, 64], vf [64, 64], Tanh,
    orthogonal initialisation, as rac_cartpole.py and rae_cartpole.py use; rac_turf.py and
    rae_turf.py use ``CnnPolicy`` on Turf's image]."""
    lr: float = 3e-4
    """Adam learning rate of PPO [ppo.py: 3e-4, which every script keeps (their ``--lr`` is
    never passed to PPO)]."""
    unroll: int = 256
    """Policy steps per env per PPO rollout, ``T`` of ``[run.envs, T]`` [wmlab: 256 x 8 envs =
    ppo.py's ``n_steps`` 2048 on the scripts' one env]."""
    epochs: int = 10
    """Passes of PPO over each rollout [ppo.py: 10]."""
    minibatch: int = 64
    """Policy steps per PPO minibatch [ppo.py: 64]."""
    clip: float = 0.2
    """PPO's clipping range of the probability ratio [ppo.py: 0.2; the scripts pass
    ``clip_range_vf=None``, no value clipping, as here]."""
    discount: float = 0.99
    """gamma [ppo.py: 0.99; rac_*.py ``--gamma 0.99``]."""
    gae_lambda: float = 0.95
    """lambda of the generalised advantage estimate [ppo.py: 0.95]."""
    entropy_weight: float = 0.0
    """Weight of the entropy bonus [ppo.py: 0, which rac_cartpole.py keeps; rae_cartpole.py,
    rae_turf.py and rac_turf.py pass ``--ent_coef 0.05`` (the ``turf`` preset does too; the
    ``cartpole-rae`` preset keeps 0, the setting its learning check was measured with)]."""
    value_weight: float = 0.5
    """Weight of the value loss [ppo.py: 0.5]."""
    max_grad_norm: float = 0.5
    """Gradient clipping of PPO's update (0: none) [ppo.py: 0.5]."""
    eval_sample: bool = False
    """Evaluate with sampled actions instead of the most likely one (the filter applies
    either way) [wmlab]."""
