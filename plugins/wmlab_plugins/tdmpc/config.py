"""TD-MPC hyperparameters.

Sources: the paper (Hansen et al. 2022, arXiv 2203.04955, Appendix) and the authors' code,
nicklashansen/tdmpc: ``cfgs/default.yaml`` (written [yaml] below), ``cfgs/pixels.yaml``,
``cfgs/tasks/*.yaml``, ``src/algorithm/tdmpc.py`` and ``src/algorithm/helper.py``
(constants hard-coded there are written [code]).

Units: the authors' ``step`` counts *agent* (policy) steps, and so do ``seed_steps`` and the
two schedules below; wmlab counts env steps (frames = policy steps x action repeat). The
method converts with ``EnvSpecs.action_repeat``, so these values stay the paper's for every
task's action repeat (4 by default, 2 for walker/humanoid/dog, 8 for cartpole).

Replay: TD-MPC samples with prioritized replay (PER, ``per_alpha`` 0.6, ``per_beta`` 0.4
[yaml]). wmlab's replay is uniform (a SliceSampler), so PER is not used; TD-MPC2 dropped it
too. ``kappa`` in [yaml] is unused by the authors' code and has no field here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional


@dataclass
class TDMPCConfig:
    # --- architecture (TOLD) ----------------------------------------------------------
    latent_dim: int = 50
    """Latent state size [yaml ``latent_dim``]; 100 for humanoid and dog [tasks yaml]."""
    mlp_dim: int = 512
    """Hidden width of dynamics, reward, policy and Q networks (two hidden layers, ELU) [yaml]."""
    enc_dim: int = 256
    """Hidden width of the state encoder (one hidden layer, ELU) [yaml]."""
    num_channels: int = 32
    """Channels of each of the 4 conv layers of the pixel encoder [pixels.yaml]."""
    pi_noise_clip: float = 0.3
    """Clip of the Gaussian noise the policy adds when sampled with a std [code ``pi``]."""

    # --- learning ---------------------------------------------------------------------
    batch_size: int = 512
    """Sequences per update [yaml]; 2048 for dog. Sampled uniformly (no PER, see module doc)."""
    horizon: int = 5
    """Training rollout length H and final planning horizon [yaml]; sequences hold H + 1 steps."""
    discount: float = 0.99
    """Discount gamma [yaml]."""
    lr: float = 1e-3
    """Adam learning rate of both optimizers [yaml]; 3e-4 for dog."""
    grad_clip_norm: float = 10.0
    """Gradient norm clip, separately for the model and the policy [yaml]."""
    consistency_coef: float = 2.0
    """Weight c1 of the latent consistency loss [yaml]."""
    reward_coef: float = 0.5
    """Weight c2 of the reward loss [yaml]."""
    value_coef: float = 0.1
    """Weight c3 of the TD value loss [yaml]."""
    rho: float = 0.5
    """Temporal weight rho^t of step t of the rollout in every loss [yaml]."""
    loss_clip: float = 1e4
    """Per-sample clamp of each loss term before weighting [code ``clamp(max=1e4)``]."""
    tau: float = 0.01
    """Polyak rate of the target encoder and target Qs [yaml]."""
    update_freq: int = 2
    """Update the targets every this many updates [yaml]."""
    seed_steps: int = 5000
    """Policy steps of uniform random actions before the first update [yaml; counted
    against agent steps in ``train.py``]; the core gets ``seed_steps x action_repeat`` env
    steps. The authors then run ``seed_steps`` updates at once; wmlab's core keeps one
    update per policy step without bursts."""
    shift_pad: Optional[int] = None
    """Pixels: pad of the random-shift augmentation; ``None`` means image side // 21, the
    authors' rule [helper ``RandomShiftsAug``]: 4 px at their 84 px, 3 at wmlab's 64."""

    # --- planning (MPPI) ----------------------------------------------------------------
    iterations: int = 6
    """MPPI iterations [yaml]; 8 from pixels [pixels.yaml] and for dog, 12 for humanoid."""
    num_samples: int = 512
    """Gaussian action sequences per iteration [yaml]."""
    num_elites: int = 64
    """Elite sequences the Gaussian is refitted to [yaml]."""
    mixture_coef: float = 0.05
    """Policy-prior sequences, as a fraction of ``num_samples`` (int(0.05 x 512) = 25) [yaml]."""
    temperature: float = 0.5
    """Elite weights are softmax(temperature x value) [yaml; code multiplies]."""
    momentum: float = 0.1
    """Weight of the previous mean when updating it: m x old + (1 - m) x fitted [yaml]."""
    min_std: float = 0.05
    """Final value of the std schedule, and the std of the policy's own noise in planning,
    TD targets and the policy loss [yaml]."""
    max_std: float = 2.0
    """Initial std of each plan and upper clamp of the refitted std [code]."""
    std_init: float = 0.5
    """Start of the std schedule linear(0.5, min_std, 25000) [yaml ``std_schedule``]: the
    lower clamp of the planner's std, and so of the exploration noise."""
    std_schedule_steps: int = 25000
    """Policy steps over which the std clamp decays to ``min_std`` [yaml; agent steps]."""
    horizon_init: int = 1
    """Start of the planning-horizon schedule linear(1, horizon, 25000) [yaml]."""
    horizon_schedule_steps: int = 25000
    """Policy steps over which the planning horizon grows to ``horizon`` [yaml; agent steps]."""
    action_selection: str = "sample"
    """``sample``: the executed action is the first step of one elite drawn with its softmax
    weight, also when evaluating [code ``plan``]; ``mean``: the first step of the final
    mean (deterministic given the samples). Exploration adds N(0, std) on top [code]."""
