"""PlaNet hyperparameters.

Sources: the paper (Hafner, Lillicrap, Fischer, Villegas, Ha, Lee, Davidson 2019, "Learning
Latent Dynamics for Planning from Pixels", arXiv 1811.04551, Sec. 3-5 and Appendix A; written
[paper]) and the authors' code, google-research/planet: ``planet/scripts/configs.py`` ([cfg]),
``planet/models/rssm.py``, ``planet/networks/{conv_ha,basic}.py``, ``planet/control/planning.py``
and ``planet/control/mpc_agent.py`` ([code]), ``planet/scripts/tasks.py`` ([tasks]);
facebookresearch/mbrl-lib ``mbrl/algorithms/planet.py`` and ``mbrl/models/planet.py`` ([mbrl]).

Units. The authors' trainer counts its ``step`` in sequences: every update adds the batch size
(50) to it (``trainer.add_phase(..., batch_size=config.batch_shape[0])``), so ``collect_every =
5000`` [cfg] is one collected episode every 100 updates (the paper's collect interval C = 100)
and the learning-rate ramp of 10000 is 200 updates. wmlab counts env steps as frames.

Train ratio (updates per policy step, wmlab's knob): the authors alternate C = 100 updates with
one collected episode of 1000 frames = 1000 / R policy steps (R the action repeat), so

    train_ratio = C / episode policy steps = 100 R / 1000 = R / 10
    (cartpole R=8: 0.8; reacher, cheetah, cup R=4: 0.4; finger, walker R=2: 0.2),

which :attr:`PlaNetConfig.train_ratio` ``= None`` computes from the env's real episode length
and action repeat; wmlab spreads the updates evenly instead of in bursts of 100.

State observations (not in the paper, which learns from pixels): MLP encoder and decoder of
``state_layers`` x ``state_units`` (ReLU, as the paper's other functions), the decoder a
unit-variance Gaussian over the state vector.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional


@dataclass
class PlaNetConfig:
    # --- world model ----------------------------------------------------------------------
    deter: int = 200
    """Deterministic (GRU) state size [paper App. A "a GRU with 200 units"; cfg ``model_size``]."""
    stoch: int = 30
    """Stochastic state size, a diagonal Gaussian [paper "30-dimensional diagonal Gaussians";
    cfg ``state_size``]."""
    hidden: int = 200
    """Width of the RSSM's hidden layers [paper "two fully connected layers of size 200";
    code ``RSSM(state_size, size, size)``, the embed size = ``model_size``]."""
    min_std: float = 0.1
    """Lower bound of the latent std, ``softplus(x) + 0.1`` [cfg ``min_stddev``; code rssm.py]."""
    act: str = "relu"
    """Activation of the RSSM and the MLPs [paper "ReLU activations"; code rssm.py ``tf.nn.relu``]."""
    cnn_depth: int = 32
    """Channels of the first conv layer (then x2, x4, x8) of encoder and decoder [paper: the
    networks of Ha & Schmidhuber 2018; code conv_ha.py 32, 64, 128, 256]."""
    reward_units: int = 200
    """Width of the reward head [paper "all other functions ... size 200"; code basic.py
    ``feed_forward`` uses 100; mbrl 200]."""
    reward_layers: int = 2
    """Hidden layers of the reward head [paper; code basic.py ``num_layers=2``]."""
    state_units: int = 200
    """Width of the state-vector encoder and decoder (wmlab; the paper learns from pixels)."""
    state_layers: int = 2
    """Hidden layers of the state-vector encoder and decoder (wmlab)."""
    image_bits: int = 5
    """Pixels are reduced to this bit depth, with uniform dequantisation noise, as inputs and
    reconstruction targets [paper App. A "reducing the bit depth to 5 bits"; cfg ``image_bits``].
    8 uses plain [-0.5, 0.5] scaling."""

    # --- loss -----------------------------------------------------------------------------
    free_nats: float = 3.0
    """Every step's KL is clipped below at this many nats before averaging [paper App. A; cfg
    ``free_nats``; code utility.py ``tf.maximum(free_nats, divergence)`` per step; mbrl the same]."""
    kl_scale: float = 1.0
    """Weight beta_1 of the one-step KL [paper "we do not scale the KL divergence terms"; cfg
    ``divergence_scale``; mbrl ``kl_scale``]."""
    reward_scale: float = 10.0
    """Weight of the reward log-likelihood [cfg ``reward_scale = 10``; not stated in the paper;
    mbrl uses 1]."""
    overshooting: int = 1
    """Latent overshooting distance D: the KL is averaged over priors predicted d = 1..D steps
    ahead (paper Eq. 7). 1 is the standard one-step objective, the paper's final setting [paper
    App. A "we found [latent overshooting] not to be necessary"; cfg ``overshooting = 0``]; the
    paper's overshooting experiments use D = 50 (the sequence length)."""
    overshooting_scale: float = 1.0
    """Weight beta_{>1} of the KL terms at distances d > 1 [paper Eq. 7, "we fix all beta_{>1}
    to the same value"; cfg: the overshooting divergence scale equals ``divergence_scale``]."""

    # --- optimisation ---------------------------------------------------------------------
    batch_size: int = 50
    """Sequences per update [paper B = 50; cfg ``batch_shape``]."""
    sequence_length: int = 50
    """Policy steps per sequence [paper L = 50; cfg ``batch_shape``]."""
    lr: float = 1e-3
    """Adam learning rate [paper; cfg ``learning_rate``; mbrl]."""
    adam_eps: float = 1e-4
    """Adam epsilon [paper; cfg ``epsilon=1e-4``; mbrl ``optim_eps``]."""
    grad_clip: float = 1000.0
    """Global gradient-norm clip [paper; cfg ``gradient_clipping``; mbrl]."""
    lr_warmup: int = 200
    """Updates over which the learning rate ramps linearly from 0 [cfg ``schedule.linear(ramp=
    10000)``, counted in sequences: 10000 / 50 = 200 updates; not in the paper]; 0 disables."""

    # --- data collection ------------------------------------------------------------------
    seed_episodes: int = 5
    """Episodes of uniformly random actions before the first update [paper S = 5; cfg
    ``num_seed_episodes``; mbrl ``num_initial_trajectories``]: 5000 env steps on DMC."""
    collect_interval: int = 100
    """Updates per collected episode [paper C = 100; cfg ``collect_every = 5000`` sequences /
    50 per update; mbrl ``num_grad_updates``]; sets ``train_ratio`` when that is ``None``."""
    train_ratio: Optional[float] = None
    """Updates per policy step. ``None``: ``collect_interval / episode policy steps``, i.e.
    100 R / 1000 for DMC's 1000-frame episodes (derivation in the module docstring)."""
    expl_noise: float = 0.3
    """Std of the Gaussian noise added to the planned action when collecting, then clipped to
    the bounds [paper "epsilon ~ Normal(0, 0.3)"; cfg ``exploration_noises``; code mpc_agent.py;
    mbrl ``agent_noise``]."""

    # --- planning (CEM) -------------------------------------------------------------------
    horizon: int = 12
    """Planning horizon H [paper; cfg ``collect_horizons``; mbrl ``planning_horizon``]."""
    candidates: int = 1000
    """Action sequences sampled per CEM iteration J [paper; cfg ``cem_amount``; mbrl
    ``population_size``]."""
    elites: int = 100
    """Best sequences the belief is refitted to K [paper; cfg ``cem_topk``; mbrl elite ratio 0.1]."""
    iterations: int = 10
    """CEM iterations I [paper; cfg ``cem_iterations``; mbrl ``num_iterations``]."""
    planning_discount: float = 0.99
    """Discount of the predicted rewards summed over the horizon [code planning.py
    ``cross_entropy_method(discount=0.99)``, the default mpc_agent.py keeps; the paper speaks of
    the sum of rewards]."""
