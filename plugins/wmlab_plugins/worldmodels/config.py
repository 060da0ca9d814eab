"""World Models hyperparameters.

Source: Ha & Schmidhuber 2018, "Recurrent World Models Facilitate Policy Evolution"
(arXiv 1803.10122; its appendix), and the authors' code (hardmaru/WorldModelsExperiments,
``carracing/`` and ``doomrnn/``), written [paper] and [code] below. The defaults are the
CarRacing experiment's; the ``doom`` preset sets the Doom experiment's. Where a setting is
wmlab's own, the field says so ([wmlab]).

Where wmlab departs from the paper, in short:

* Discrete actions (Doom): with ``discrete_output=threshold`` (Doom presets) C is the
  authors' one tanh output without bias, thresholded at +-1/3 among the three choices; M
  reads the chosen action one-hot, where the authors' M reads C's continuous output (their
  data policy draws it uniformly in [-1, 1]). ``argmax`` (the default elsewhere) has one
  output per choice.
* M's training data: z is sampled from V's mean and std of each frame of every batch
  (V frozen after its stage), the same distribution as the authors' stored mean and std,
  computed per batch rather than once.
* M trains on runs of ``rnn_sequence`` stored rows with episodes back to back
  (``rnn_windows=spans``), its state zeroed where an episode starts, as the authors'
  batches; the authors also feed M that restart flag as an input, wmlab does not (the zeroed
  state carries it).
* The data-collecting policy is a controller with random weights redrawn every episode
  (CarRacing, as the authors) or a uniformly random choice held for 1-10 steps (Doom, the
  authors' "more diverse random policy"), ``collect_policy``.
"""

from __future__ import annotations

from dataclasses import dataclass

#: ``method.train_in``: where the controller's candidates are scored
TRAIN_IN = ("env", "dream")
#: ``method.controller_input``: what the controller reads
CONTROLLER_INPUTS = ("zh", "z", "zch")
#: ``method.discrete_output``: how C's outputs pick a discrete action
DISCRETE_OUTPUTS = ("argmax", "threshold")
#: ``method.dream_done``: how a dream episode ends
DREAM_DONE = ("threshold", "sample", "calibrated")
#: ``method.rnn_windows``: how M's sequences are drawn
RNN_WINDOWS = ("spans", "episodes")
#: ``method.collect_policy``: how the first stage acts
COLLECT_POLICIES = ("random_controller", "held_random")


@dataclass
class WorldModelsConfig:
    z_dim: int = 32
    """Size of V's latent z [paper: 32 for CarRacing, 64 for Doom (preset ``doom``)]."""
    vae_depth: int = 32
    """Filters of V's first convolution; the four have depth, 2, 4 and 8 times it, kernel 4,
    stride 2, and the decoder mirrors them with kernels 5, 5, 6, 6 [paper appendix: 32, 64,
    128, 256]."""
    kl_tolerance: float = 0.5
    """V's KL term is floored at ``kl_tolerance * z_dim`` nats per frame, so V is not pushed
    to encode less than that [code: ``kl_tolerance=0.5``]."""
    vae_lr: float = 1e-4
    """Adam learning rate of V [code: 0.0001]."""
    vae_batch: int = 100
    """Frames per V update [code: 100]."""
    vae_updates: int = 100_000
    """Updates of V in its stage (``vae``) [wmlab: the authors trained 10 epochs over their
    10,000 random episodes (about 1M updates on CarRacing); 100k is wmlab's budget]."""
    rnn_hidden: int = 256
    """Units of M's LSTM [paper: 256 for CarRacing, 512 for Doom (preset ``doom``)]."""
    mixtures: int = 5
    """Gaussians of M's mixture density output (each diagonal, per z dimension) [paper: 5]."""
    rnn_lr: float = 1e-3
    """Adam learning rate of M [code: 0.001]."""
    rnn_grad_clip: float = 1.0
    """Clip of each gradient entry of M's update to [-clip, clip] [code: ``grad_clip=1.0``,
    TensorFlow's clip by value]; 0: none."""
    rnn_batch: int = 100
    """Sequences per M update [code: 100]."""
    rnn_sequence: int = 1000
    """Policy steps per sequence of M's batches [code: 1,000 on CarRacing, 500 on Doom
    (preset ``doom``)]."""
    rnn_windows: str = "spans"
    """How M's sequences are drawn: ``spans``, runs of rows with episodes back to back, M's
    state zeroed at each episode start and no transition learnt across it, so every
    transition (a death included) is seen equally often and at any position [code];
    ``episodes``, windows inside one episode (they must fit in the shortest episode), the
    window ending a finished episode drawn ``rnn_sequence + 1`` times as often as the others,
    so a death is always its window's last step: an LSTM started from a zero state then
    learns that deaths come ``rnn_sequence`` steps after it starts, and a dream (started from
    a zero state) dies then whatever it does [wmlab, earlier default]."""
    rnn_updates: int = 20_000
    """Updates of M in its stage (``mdn``) [wmlab: the authors ran 4,000 (CarRacing) and
    ~16,000 (Doom) steps of their own batches; wmlab's budget]."""
    cache_latents: bool = True
    """During M's stages (V is frozen then), keep V's mean and log-variance of every stored
    frame by its replay slot, encoded the first time a batch draws it; M's batches then carry
    these instead of frames (z is still sampled afresh each batch), as the authors' code
    encodes its episodes once (``series.py``) before training M. Off: every batch's frames are
    gathered and encoded again (``Z x 2`` floats per stored row on V's device less) [code]."""
    done_head: bool = False
    """Give M a head that predicts the end of the episode from its state (Doom: the agent
    dies), trained with cross-entropy, the ending step weighted ``done_weight``; in the dream
    an episode ends when its probability passes 0.5 [paper: Doom only (preset ``doom``)]."""
    done_weight: float = 10.0
    """Weight of an ending step in the done head's loss (ends are rare) [code:
    ``restart_factor=10``]."""
    dream_done: str = "threshold"
    """How a dream episode ends: ``threshold``, when the done head's probability passes 0.5
    [code]; ``sample``, at each step with that probability (M as a generative model of
    deaths). With little data the head rarely passes 0.5, and a dream without deaths scores
    every candidate alike; sampling keeps the danger it has learnt [wmlab]; ``calibrated``,
    sampled with the head's odds divided by ``done_weight``: the loss weighs ending steps
    ``done_weight`` times, so the head's odds of an end are that many times the data's, and
    ``sample`` ends dreams early: on gym:CartPole-v1 after random play (22 frames an
    episode in the game; a constant push, about 9), the first search's mean fitness went from
    7 to 11 dream steps with ``sample`` and from 14 to 28 with ``calibrated``, with the same
    data and M (searches of 16 candidates x 8 dreams and 32 x 16; preset
    ``worldmodels-cartpole-dream-small``) [wmlab]. On doom:take-cover (preset ``cpu``, its
    value there) the dream-trained controllers of eight seeds of nine survived 444-782 frames
    in the game with ``calibrated`` (the ninth 283), where ``sample`` ended one seed of six
    below held random play (``benchmarks/worldmodels_dream_check.py``)."""
    temperature: float = 1.0
    """Temperature tau of the dream: the mixture weights' logits are divided by it and
    every Gaussian's variance multiplied by it when M samples the next z [paper: 1.15 for
    the Doom controller trained in the dream (preset ``doom``); 1.0 is M's own
    distribution]. An ablation: low tau lets the controller exploit M's mistakes."""
    controller_input: str = "zh"
    """``zh``: the controller reads ``[z, h]`` (V and M; the paper, and the authors'
    CarRacing code); ``zch``: ``[z, c, h]``, M's LSTM cell state as well (the authors' Doom
    code, ``model_state_space=2``: 64 + 512 + 512 = 1,088 inputs; preset ``doom``); ``z``: z
    alone, the paper's "V model only" ablation (its M is still trained, but unused while
    acting)."""
    discrete_output: str = "argmax"
    """Discrete actions: ``argmax``, one tanh output (with a bias) per choice, acting on the
    largest [wmlab]; ``threshold``, the authors' Doom controller: one tanh output and no bias,
    choice 1 (take-cover: left) below -1/3, choice 2 (right) above 1/3, choice 0 (stay)
    between; envs with 3 choices only [code: ``doomrnn``, preset ``doom``]."""
    train_in: str = "env"
    """``env``: candidates are scored by their mean return in the real env; ``dream``: by
    rollouts in M (Doom's "training inside the dream"), taking no env step [paper:
    CarRacing in the env, Doom in the dream]."""
    population: int = 64
    """Candidates per CMA-ES generation [paper: 64]."""
    episodes: int = 16
    """Rollouts per candidate; its fitness is their mean return [paper: 16]."""
    generations: int = 300
    """CMA-ES generations in the controller stage [wmlab: the authors ran CarRacing for
    about 1,800 generations and Doom's dream for about 1,000 (paper figures)]."""
    select_every: int = 25
    """In the dream (``train_in=dream``): every ``select_every`` generations, and at the
    search's last one, the search's mean is scored on ``select_episodes`` dream rollouts
    (the same fixed random draws each time, so two scores compare the controllers and not
    the draws), and C, the controller that acts, evaluates and starts the next round's search,
    is the mean with the best such score in this round's search; until the first score it
    is the previous round's C (zeros in the first round). 0: C is the latest mean after
    every generation [code: ``train.py`` scores ``es.current_param()`` every ``eval_steps=25``
    generations with ``evaluate_batch`` and keeps the best as ``best.json``, the file the
    authors test]. In the real env (``train_in=env``) C is always the latest mean, which
    the core's evaluations (``eval.every``) score on real episodes [wmlab; the authors'
    rule there too would cost 1,024 real episodes every 25 generations]."""
    select_episodes: int = 1024
    """Dream rollouts that score the mean at each ``select_every`` [code: ``evaluate_batch``
    runs the population (64) x ``num_episode`` (16) = 1,024 rollouts, on seeds 0-63 every
    time]."""
    sigma: float = 0.1
    """Initial step size of CMA-ES, the controller's parameters starting at 0 [code:
    ``sigma_init=0.1``]."""
    dream_steps: int = 2100
    """Steps of a dream rollout before it is cut (Doom's episode cap) [code: 2100]."""
    collect_steps: int = 1_000_000
    """Env steps (frames) of the first stage (``collect``), stored as episodes [paper:
    10,000 random rollouts, about 10M frames on CarRacing; wmlab's budget; the replay must
    hold them]."""
    collect_policy: str = "random_controller"
    """``random_controller``: a controller with random weights (normal, std drawn in
    [0, 0.01) per episode, as the authors' CarRacing ``extract.py``) on the untrained V and
    M; ``held_random``: a uniformly random action held for 1-10 steps (the authors' Doom
    ``extract.py``; ``collect_hold`` sets the 10)."""
    collect_hold: int = 10
    """``held_random`` holds each uniformly random action for 1 to ``collect_hold`` steps
    (drawn uniformly); 1: a fresh action every step, the plain uniform random policy [code:
    10, the authors' Doom ``extract.py``]."""
    iterations: int = 1
    """Rounds of the paper's iterative training (its section 5): after the first round
    (random data, V, M, C), each further round collects ``iteration_steps`` env steps with
    the controller (the CMA-ES mean), trains M ``iteration_rnn_updates`` more on everything
    stored (V stays), and searches C again in that M, so states a controller reaches and the
    random data rarely did (where M may promise safety it has not seen) are learnt. 1: the
    paper's experiments (one round) [paper: section 5, not used in its two experiments]."""
    iteration_steps: int = 20_000
    """Env steps (frames) each further round collects with the controller [wmlab]."""
    iteration_rnn_updates: int = 2_000
    """M updates in each further round [wmlab]."""
    iteration_warm_start: bool = True
    """Each further round's CMA-ES starts at the last round's controller (its mean), with
    step size ``sigma`` and a fresh covariance, since M has changed; false: at zero, as the
    first round. The paper initialises C once and then loops over collecting, training M
    and training C, so C carries over [paper: section 5]."""
    video_steps: int = 100
    """Steps of the decoded dream rollout logged at every evaluation (``dream`` video) [wmlab]."""

