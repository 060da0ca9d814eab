"""I2A hyperparameters (and those of the paper's two baselines, ``method.agent``).

Source: Weber, Racanière, Reichert et al. 2017, "Imagination-Augmented Agents for Deep
Reinforcement Learning", arXiv 1707.06203: Sec. 2 (architecture), Sec. 4 (Sokoban) and the
appendix (training and architecture details), written [paper] below. The authors' code is
not public; where a setting is wmlab's own, the field says so ([wmlab]).

Where wmlab departs from the paper, in short:

* A2C on ``run.envs`` synchronous envs instead of the paper's asynchronous A3C workers;
  the same actor-critic loss (policy gradient, value regression, entropy bonus) and
  RMSprop.
* The one-hot room (``env.obs=state``, ``[7, H, W]``) instead of 80x80 RGB frames: the
  convolutions are 3x3, padded, at the room's resolution, and the env model predicts a
  categorical over the 7 cell kinds per cell (the paper's model predicts frames); the
  network sizes are scaled down to match (see each field).
* Imagined frames are the env model's most likely cell per cell (one-hot), imagined
  rewards its expected reward: the model is frozen, nothing flows back into it.
"""

from __future__ import annotations

from dataclasses import dataclass

#: ``method.agent``: the imagination-augmented agent and the paper's two baselines
AGENTS = ("i2a", "model_free", "copy_model")
#: ``method.size``: the model-free agent's sizes (``large``: the paper's parameter-matched one)
SIZES = ("standard", "large")
#: ``method.optimizer``
OPTIMIZERS = ("rmsprop", "adam")


@dataclass
class I2AConfig:
    agent: str = "i2a"
    """``i2a``: imagination (a frozen, pretrained env model, one rollout per action) beside
    the model-free path [paper Sec. 2]. ``model_free``: the standard agent, the model-free
    path and the heads only (no imagination, no env model, no pretraining stages) [paper
    Sec. 4.1]. ``copy_model``: the I2A architecture with the env model replaced by one that
    returns its input observation and zero reward, so imagination brings no information
    but the parameters and computation are I2A's [paper Sec. 4.1, "copy-model agent"]."""
    size: str = "standard"
    """``standard`` or ``large`` (``agent=model_free`` only): the large model-free agent
    widens its fully connected layer until it has as many parameters as the I2A agent of the
    same config (env model not counted), as the paper's parameter-matched "large" baseline
    [paper Sec. 4.1; the paper's large sizes themselves are not reproduced]."""
    rollout_length: int = 5
    """Imagined steps per rollout [paper Sec. 4: rollouts of length 5 on Sokoban]."""
    unroll: int = 5
    """Policy steps per env per rollout of real data, ``T`` of the ``[run.envs, T]``
    batches, one A2C update each [wmlab: A2C's usual 5; the paper's A3C workers unrolled
    for longer]."""
    discount: float = 0.99
    """Discount of the n-step returns [paper appendix: 0.99]."""
    lr: float = 7e-4
    """Learning rate of the agent (and the rollout policy, trained with it) [wmlab: A2C's
    usual RMSprop rate; the paper tuned it per agent]."""
    optimizer: str = "rmsprop"
    """``rmsprop`` (the paper's, for its A3C agents) or ``adam`` (for the agents only; the
    env model always uses Adam, ``model_lr``)."""
    rmsprop_alpha: float = 0.99
    """RMSprop's smoothing constant [wmlab: A2C's usual value]."""
    rmsprop_eps: float = 1e-5
    """RMSprop's epsilon [wmlab: A2C's usual value]."""
    entropy_weight: float = 0.01
    """Weight of the policy's entropy bonus [paper appendix: entropy regularisation; 0.01
    here]."""
    value_weight: float = 0.5
    """Weight of the value loss (half the squared error of the n-step return) [wmlab]."""
    distill_weight: float = 1.0
    """Weight of the distillation loss, the cross-entropy of the rollout policy's action
    distribution to the agent's (the agent's is not trained by it) [paper Sec. 3: the
    rollout policy is distilled from the agent's policy with an auxiliary cross-entropy
    loss; its weight was a hyperparameter there too]."""
    max_grad_norm: float = 0.5
    """Global gradient-norm clip of every agent update (0: none) [wmlab]."""
    channels: int = 32
    """Channels of the model-free path's two 3x3 convolutions [wmlab: the paper's CNN reads
    80x80 frames with strided convolutions; the one-hot room needs no striding]."""
    hidden: int = 256
    """Units of the model-free path's fully connected layer and of the layer the policy
    and value heads read [paper appendix: 256 units]."""
    encoder_channels: int = 16
    """Channels of the rollout encoder's CNN on every imagined frame (plus one plane
    holding the imagined reward) [paper appendix: a CNN like the model-free one, the
    reward broadcast to a plane; narrower here]."""
    lstm: int = 128
    """Units of the rollout encoder's LSTM, which reads the imagined steps backwards; its
    last output per rollout is the rollout's code, and the aggregator concatenates the 5
    codes [paper Sec. 2 and appendix; the paper's LSTM was wider on frames]."""
    rollout_channels: int = 16
    """Channels of the rollout policy's two convolutions (and a ``hidden // 2`` layer):
    a smaller net than the agent, as the paper's distilled rollout policy [wmlab sizes]."""
    model_channels: int = 64
    """Channels of the env model's convolutions [wmlab; the paper's model is a
    convolutional net with pool-and-inject layers on frames, as this one on the room]."""
    model_blocks: int = 3
    """Residual blocks of the env model (each two 3x3 convolutions, then a pool-and-inject:
    the block's global max-pooled features broadcast back to every cell) [paper appendix:
    pool-and-inject layers; the number is wmlab's]."""
    model_lr: float = 1e-3
    """Adam learning rate of the env model [wmlab]."""
    model_batch: int = 64
    """Transitions per env-model update [wmlab]."""
    model_updates: int = 20_000
    """Updates of the env model in its offline stage (``envmodel``), after which it is
    frozen [paper Sec. 3: pretrained, then frozen; the count is wmlab's]."""
    reward_weight: float = 1.0
    """Weight of the reward classifier's cross-entropy beside the next-room one [wmlab]."""
    holdout: int = 10
    """Every ``holdout``-th episode of the env model's data (by episode id) is held out:
    never trained on, and ``envmodel/*`` accuracies are measured on its transitions."""
    standard_steps: int = 1_000_000
    """Env steps of the first stage (``standard``): A2C of a model-free agent of the
    ``standard`` size, whose policy then collects the env model's data [paper Sec. 3: the
    env model is trained on data from a partially trained standard agent; wmlab's
    budget]. Counted in the run's env steps (every x-axis includes it)."""
    model_data_steps: int = 200_000
    """Env steps the partially trained standard agent collects (stage ``collect``, stored
    in the replay) for the env model; also counted in the run's env steps [wmlab budget]."""
    eval_sample: bool = True
    """Evaluate by sampling the policy's actions (as the paper's agents act) rather than
    taking the most likely one, which can loop forever on a Sokoban level [wmlab]."""
