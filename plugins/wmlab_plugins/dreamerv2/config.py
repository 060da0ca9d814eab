"""DreamerV2 hyperparameters: Dreamer's fields (dataclass inheritance) with DreamerV2's DMC
values, plus the fields DreamerV2 adds.

Sources: the paper (Hafner, Lillicrap, Norouzi, Ba 2021, "Mastering Atari with Discrete World
Models", arXiv 2010.02193, Sec. 2-3 and Appendix; written [paper]) and the authors' code,
danijar/dreamerv2 ``dreamerv2/configs.yaml`` ([cfg]: ``defaults``, overridden by
``dmc_vision``/``dmc_proprio`` for these defaults and by ``atari`` for the ``atari`` preset),
``dreamerv2/agent.py`` ([agent]) and ``dreamerv2/common/nets.py`` ([nets]).

Units: the authors count policy steps (``train_every: 5`` policy steps, ``train_steps: 1``),
so the train ratio is 1 / 5 = 0.2 updates per policy step (Atari: 1 / 16); their ``prefill``
is in policy steps too and is converted to env steps (frames) here.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..dreamer.config import DreamerConfig


@dataclass
class DreamerV2Config(DreamerConfig):
    # --- world model (overrides of Dreamer's fields) --------------------------------------
    deter: int = 200
    """GRU state size [cfg ``dmc_*: rssm.deter 200``; Atari 600]."""
    hidden: int = 200
    """Hidden width inside the RSSM [cfg ``dmc_*: rssm.hidden 200``; Atari 600]."""
    stoch: int = 32
    """Number of categorical latent variables (groups) [paper; cfg ``rssm.stoch 32``]."""
    cnn_depth: int = 48
    """Channels of the first conv layer of encoder and decoder [cfg ``encoder.cnn_depth``]."""
    state_layers: int = 4
    """Hidden layers of the state-vector encoder and decoder [cfg ``encoder.mlp_layers``: 4 x 400]."""
    reward_layers: int = 4
    """Hidden layers of the reward head [cfg ``reward_head.layers``]."""
    continue_layers: int = 4
    """Hidden layers of the continue (discount) head [cfg ``discount_head.layers``]."""
    continue_scale: float = 1.0
    """Weight of the continue log-likelihood [cfg ``loss_scales.discount``: 1; Atari 5]. Unused
    on DMC, which has no continue head [cfg ``dmc_*: pred_discount False``]."""
    free_nats: float = 1.0
    """Free nats of the (balanced) KL, on the batch mean [cfg ``dmc_*: kl.free 1.0``; Atari 0.0,
    the ``defaults`` value; ``kl.free_avg True``]."""
    rssm_cell: str = "norm_gru"
    """The RSSM's cell: a GRU with layer normalisation and an update-gate bias of -1 [nets
    ``RSSM: GRUCell(deter, norm=True)``, ``GRUCell(update_bias=-1)``]; ``gru`` is Dreamer's."""
    cnn_act: str = "elu"
    """Activation of the conv encoder and decoder [cfg ``encoder.act elu``, ``decoder.act
    elu``]; ``relu`` is Dreamer's."""
    kl_scale: float = 1.0
    """Weight beta of the KL loss [cfg ``loss_scales.kl``: 1.0; paper and Atari 0.1]."""

    # --- world model (new fields) ---------------------------------------------------------
    discrete: int = 32
    """Classes of each categorical latent; 0 keeps Dreamer's Gaussian latent of ``stoch``
    dims [paper; cfg ``rssm.discrete 32``]."""
    kl_balance: float = 0.8
    """KL balancing alpha: weight of ``KL(sg(post) || prior)``, which trains the prior; 0.5 is
    the plain KL [paper Sec. 2, Algorithm 2; cfg ``kl.balance``]."""
    clip_rewards: str = "identity"
    """Reward transform before the reward head learns it: ``identity`` or ``tanh`` [cfg
    ``dmc_*: clip_rewards identity``; Atari ``tanh``]."""

    # --- behaviour ------------------------------------------------------------------------
    actor_dist: str = "trunc_normal"
    """Continuous actions: a Normal truncated to [-1, 1], ``mean = tanh(mu)``, ``std = 2
    sigmoid(s / 2) + 0.1`` [cfg ``actor.dist: auto`` = ``trunc_normal`` for continuous
    actions, ``actor.min_std 0.1``; nets ``DistLayer``]; ``tanh_normal`` is Dreamer's."""
    value_layers: int = 4
    """Hidden layers of the critic [cfg ``critic.layers``]."""
    expl_amount: float = 0.0
    """Gaussian action noise when collecting; DreamerV2 relies on the actor's entropy
    [cfg ``expl_noise 0.0``]."""
    actor_grad: str = "dynamics"
    """Actor gradient: ``dynamics`` (backpropagate the lambda-returns through the learned
    dynamics), ``reinforce`` (likelihood ratio with the slow critic as baseline) or ``both``
    (mixed by ``actor_grad_mix``) [paper Eq. 7; cfg ``actor_grad``: ``auto`` = dynamics for
    continuous actions (DMC), reinforce for discrete ones (Atari)]."""
    actor_grad_mix: float = 0.1
    """rho, the weight of the dynamics term when ``actor_grad='both'`` (``dynamics`` means 1,
    ``reinforce`` 0) [paper: rho = 0 for Atari, 1 for continuous control; cfg ``actor_grad_mix``]."""
    actor_ent: float = 1e-4
    """eta, the actor entropy bonus [cfg ``dmc_*: actor_ent 1e-4``; Atari 1e-3 (paper Table D.1
    and cfg ``atari``; the cfg ``defaults`` value 2e-3 is not used by either)]."""
    slow_target_update: int = 100
    """Update the slow (target) critic every this many updates; it gives the lambda-return
    targets and the REINFORCE baseline; 0 disables it [paper; cfg ``slow_target_update``]."""
    slow_target_fraction: float = 1.0
    """Fraction of the critic mixed into the slow critic at each such update (1: copy; the first
    update always copies) [cfg ``slow_target_fraction``]."""

    # --- optimisation ---------------------------------------------------------------------
    batch_size: int = 16
    """Sequences per update [paper Table D.1; cfg ``dataset.batch 16``]."""
    sequence_length: int = 50
    """Policy steps per sequence [paper; cfg ``dataset.length 50``]."""
    model_lr: float = 3e-4
    """Adam learning rate of the world model [cfg ``dmc_*: model_opt.lr``; Atari 2e-4]."""
    actor_lr: float = 8e-5
    """Adam learning rate of the actor [cfg ``dmc_*: actor_opt.lr``; Atari 4e-5]."""
    value_lr: float = 8e-5
    """Adam learning rate of the critic [cfg ``dmc_*: critic_opt.lr``; Atari 1e-4]."""
    adam_eps: float = 1e-5
    """Adam epsilon [cfg ``*_opt.eps``]. The authors' weight decay of 1e-6 is not applied."""
    train_ratio: float = 0.2
    """Updates per policy step: one update every 5 policy steps [cfg ``train_every 5``,
    ``train_steps 1``; Atari ``train_every 16``: 0.0625]."""
    prioritize_ends: bool = False
    """Draw replay windows that reach an episode's end more often (see
    ``wmlab.samplers.Windows.prioritize_ends``) [cfg ``defaults: replay.prioritize_ends True``,
    kept by ``atari``; ``dmc_*: False``]."""
    ongoing: bool = True
    """Also draw windows from episodes still running; ``False`` draws from finished
    episodes only, as the authors' replay [cfg ``defaults: replay.ongoing False``]. wmlab's
    default keeps the freshest data in reach (a 1000-step DMC episode at action repeat 2 is
    500 policy steps that would otherwise wait for its end); the learning check ran with it."""
    prefill: int = 2000
    """Env steps of random actions before training: 1000 policy steps x action repeat 2
    [cfg ``dmc_*: prefill 1000``; Atari 50000 x 4]. The authors' ``pretrain: 100`` burst of
    updates is not done (wmlab's core never bursts)."""
