"""Dreamer hyperparameters.

Sources: the paper (Hafner, Lillicrap, Ba, Norouzi 2020, "Dream to Control", arXiv
1912.01603, Sec. 6 and Appendix; written [paper]) and the authors' code, danijar/dreamer:
``dreamer.py::define_config`` ([cfg]), ``dreamer.py::Dreamer._build_model`` and
``models.py`` ([code]), and ``tools.py`` ([tools]).

Units: the authors' ``step`` counts env steps (frames: policy steps x action repeat), as
wmlab does. Their schedule trains ``train_steps=100`` updates every ``train_every=1000``
env steps; wmlab's core runs a steady ``train_ratio`` of updates per policy step instead
(no bursts), which is 100 / (1000 / action repeat 2) = 0.2.

State observations (not in the paper, which learns from pixels only): the encoder and
decoder are ELU MLPs of ``state_layers`` x ``units``, the decoder a unit-variance Gaussian
over the state vector, as DreamerV2's MLP encoder/decoder for vector inputs.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class DreamerConfig:
    # --- world model ----------------------------------------------------------------------
    deter: int = 200
    """Deterministic (GRU) state size [cfg ``deter_size``]."""
    stoch: int = 30
    """Stochastic state size, a diagonal Gaussian [cfg ``stoch_size``]."""
    hidden: int = 200
    """Hidden layer width inside the RSSM [code ``RSSM(stoch, deter, deter)``: = deter]."""
    min_std: float = 0.1
    """Lower bound of the RSSM's std, ``softplus(x) + 0.1`` [code ``RSSM.img_step``]."""
    rssm_cell: str = "gru"
    """The RSSM's recurrent cell: ``gru`` (a plain GRU [code ``tfkl.GRUCell``]) or
    ``norm_gru`` (DreamerV2's layer-normalised GRU with an update-gate bias of -1)."""
    cnn_depth: int = 32
    """Channels of the first conv layer (then x2, x4, x8) of encoder and decoder [cfg]."""
    cnn_act: str = "relu"
    """Activation of the conv encoder and decoder [code ``ConvEncoder(act=tf.nn.relu)``;
    DreamerV2: ``elu``]."""
    units: int = 400
    """Width of the reward, value, actor (and continue, state encoder/decoder) MLPs [cfg ``num_units``]."""
    reward_layers: int = 2
    """Hidden layers of the reward head [code ``DenseDecoder((), 2, ...)``]."""
    state_layers: int = 2
    """Hidden layers of the state-vector encoder and decoder (wmlab; the paper has pixels only)."""
    continue_head: bool = False
    """Learn a Bernoulli "episode continues" head and discount imagination with it [cfg
    ``pcont``: False for DMC, whose episodes end by time limit only]. On by default for the
    env families whose episodes terminate (``atari:``, ``gym:``, ``sokoban:``: the method's
    ``env_presets``)."""
    continue_layers: int = 3
    """Hidden layers of the continue head [code ``DenseDecoder((), 3, ..., 'binary')``]."""
    continue_scale: float = 10.0
    """Weight of the continue log-likelihood in the model loss [cfg ``pcont_scale``]."""
    free_nats: float = 3.0
    """KL clipped below at this many nats, averaged over batch and time [paper; cfg]."""
    kl_scale: float = 1.0
    """Weight beta of the KL regulariser [paper: not scaled; cfg]."""

    # --- behaviour ------------------------------------------------------------------------
    horizon: int = 15
    """Imagination horizon H [paper; cfg]."""
    discount: float = 0.99
    """Discount gamma [paper; cfg]."""
    return_lambda: float = 0.95
    """lambda of the V_lambda targets [paper; cfg ``disclam``]."""
    actor_layers: int = 4
    """Hidden layers of the actor [code ``ActionDecoder(actdim, 4, ...)``]."""
    value_layers: int = 3
    """Hidden layers of the value model [code ``DenseDecoder((), 3, ...)``]."""
    action_init_std: float = 5.0
    """Actor std at zero pre-activation, ``softplus(x + softplus^-1(5))`` [cfg]."""
    action_min_std: float = 1e-4
    """Lower bound of the actor's std [code ``ActionDecoder(min_std=1e-4)``]."""
    action_mean_scale: float = 5.0
    """Actor mean squashed as ``5 tanh(mu / 5)`` before the tanh transform [code]."""
    actor_dist: str = "tanh_normal"
    """Continuous actions: ``tanh_normal`` (a Normal squashed by tanh, with the three
    ``action_*`` settings above [code ``ActionDecoder(dist='tanh_normal')``]) or
    ``trunc_normal`` (DreamerV2's Normal truncated to [-1, 1], ``mean = tanh(mu)``,
    ``std = 2 sigmoid(s / 2) + 0.1``; the ``action_*`` settings do not apply)."""
    actor_ent: float = 0.0
    """Weight eta of an entropy bonus in the actor loss, ``-mean(w_t (G_t + eta H_t))`` with a
    one-sample estimate of the tanh-Normal's entropy [paper and code: none, 0; DreamerV2's
    ``actor_ent``]. The learning-check preset uses it to keep the actor out of tanh saturation."""
    shared_critic: bool = False
    """Run the critic once over the imagined states for both the actor's returns and its own
    loss, each backward pass restricted to its own parameters (the same gradients up to
    rounding; about 1.1x the updates/s of Dreamer's update from states on one CPU core,
    README "Benchmarks"). Off: the critic is frozen for the actor's loss and run again on the
    detached states for its own, as the authors' code does. Off by default because rounding
    differences alone change a run's course: the learning check's seed 1
    (``tests/test_learning_dreamer.py``) ended at 50 with it on; off, the update is the one
    the check's docstring measured (273) and the check passes. Not used
    where the returns bootstrap from another critic (DreamerV2's slow critic)."""
    expl_amount: float = 0.3
    """Std of the Gaussian noise added to the actor's sampled action when collecting,
    then clipped to [-1, 1] [paper; cfg ``expl_amount``, ``additive_gaussian``]."""

    # --- optimisation ---------------------------------------------------------------------
    batch_size: int = 50
    """Sequences per update [paper; cfg]."""
    sequence_length: int = 50
    """Policy steps per sequence [paper; cfg ``batch_length``]."""
    model_lr: float = 6e-4
    """Adam learning rate of the world model [paper; cfg]."""
    actor_lr: float = 8e-5
    """Adam learning rate of the actor [paper; cfg]."""
    value_lr: float = 8e-5
    """Adam learning rate of the value model [paper; cfg]."""
    adam_eps: float = 1e-7
    """Adam epsilon [tools: ``tf.optimizers.Adam(lr)``, the Keras default 1e-7]."""
    grad_clip: float = 100.0
    """Global gradient norm clip, per optimizer [paper; cfg]."""
    train_ratio: float = 0.2
    """Updates per policy step after prefill: 100 updates every 1000 env steps at action
    repeat 2 [cfg ``train_steps``, ``train_every``]; steady instead of in bursts."""
    prefill: int = 5000
    """Env steps of uniform random actions before training [cfg ``prefill``]. The authors
    then run ``pretrain=100`` updates at once; wmlab's core never bursts."""
