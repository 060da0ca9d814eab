"""The plugin contract: what a method provides and what the core hands it.

A method is a :class:`Method` (a ``LightningModule``) built from its own typed
``Config`` and the :class:`EnvSpecs` of the env it will act in. It says what data it
needs through :meth:`Method.data_spec` and how it acts through
:meth:`Method.make_policy`; the core owns everything else (envs, collection, replay,
the loop, evaluation, checkpoints and tracking).

Counting: a *policy step* is one decision of the policy; it spans
``EnvSpecs.action_repeat`` simulator frames. wmlab reports *env steps* as frames
(policy steps x action repeat), the unit papers use for dm_control. With ``run.envs = N``
envs stepping together, one collection step is N policy steps.

A run is a list of :class:`Stage` s (one by default). A stage collects (the method's
policy, uniformly random actions, or nothing), trains (on replay samples drawn as a
:class:`DataSpec` says, on fresh on-policy rollouts, or not at all) or searches (the
method proposes candidate policies with :meth:`Method.ask` and is told their returns with
:meth:`Method.tell`). API 1.1 added stage data, on-policy rollouts, search stages,
samplers (:mod:`wmlab.samplers`), composite observations and :meth:`Policy.act_td`;
API 1.2 calls :meth:`Method.eval_videos` for on-policy methods too (with the latest
rollout); API 1.3 adds :meth:`Method.compiled_modules` (``run.compile``); API 1.4 runs
:meth:`Policy.act` under autocast with a mixed ``run.precision`` (:attr:`Policy.autocast`);
API 1.5 adds the :class:`~wmlab.samplers.Spans` sampler (runs of rows across episode
boundaries); API 1.6 adds ``positions()`` to the ``Windows`` and ``Spans`` samplers (the
rows they would gather, for a sampler that gathers part of a row itself). Plugins written
for 1.0 to 1.5 work unchanged.
"""

from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar, Mapping

import lightning as L
import torch
from tensordict import TensorDictBase
from tensordict.nn import TensorDictModuleBase

from wmlab import API_VERSION, keys  # noqa: F401 (API_VERSION: this contract's version)


@dataclass(frozen=True)
class ObsSpec:
    """Shape and dtype of one observation entry (see :attr:`EnvSpecs.extra_obs`)."""

    shape: tuple[int, ...]
    dtype: torch.dtype = torch.float32


@dataclass(frozen=True)
class EnvSpecs:
    """What a method may know about its env (never written back into the config)."""

    name: str
    """The env's name as the user gave it, e.g. ``cheetah-run``."""
    obs_kind: str
    """``"state"`` (float vector) or ``"pixels"`` (``uint8`` image ``[C, H, W]``: C = 3 for RGB,
    1 for grayscale, e.g. Atari)."""
    obs_shape: tuple[int, ...]
    """Shape of one observation, e.g. ``(17,)``, ``(3, 64, 64)`` or ``(1, 64, 64)``."""
    action_shape: tuple[int, ...]
    """Shape of one action, e.g. ``(6,)``."""
    action_low: torch.Tensor
    """Lower action bound, shape ``action_shape``."""
    action_high: torch.Tensor
    """Upper action bound, shape ``action_shape``."""
    action_repeat: int
    """Simulator frames per policy step."""
    episode_policy_steps: int
    """Policy steps in a full episode (time limit / action repeat)."""
    discrete: bool = False
    """Whether actions are one-hot encoded choices rather than continuous vectors. If true,
    an action is a ``float32`` one-hot vector of ``action_dim`` choices (``action_shape``
    is ``(n,)``, bounds 0 and 1; Atari: ``n`` = 18), and an env acts on its largest entry."""
    extra_obs: Mapping[str, ObsSpec] = field(default_factory=dict)
    """Observation entries besides ``observation`` (API 1.1): a composite observation such
    as ``achieved_goal`` and ``desired_goal`` of a goal-conditioned task, or a ``state``
    vector beside pixels. Every reset and step TensorDict carries them at its root (and under
    ``"next"``), the replay stores them in every row, and a policy may read them
    (:meth:`Policy.act_td`). Empty for a plain observation."""

    @property
    def action_dim(self) -> int:
        return int(torch.Size(self.action_shape).numel())

    @property
    def obs_dim(self) -> int:
        return int(torch.Size(self.obs_shape).numel())


@dataclass(frozen=True)
class DataSpec:
    """How a method wants to be fed (units: *policy steps* unless a field says frames)."""

    batch_size: int
    """Replay: samples per update (sequences, transitions or what ``sampler`` draws).
    On-policy: unused (a rollout holds ``run.envs`` rows)."""
    sequence_length: int = 1
    """Replay: consecutive policy steps per sampled window (1: single rows, batch ``[B]``;
    else ``[B, L]``). On-policy: policy steps per env per rollout, ``T`` of ``[N, T]``."""
    train_ratio: float = 1.0
    """Replay: updates per policy step (counted over all envs) once prefill is over (TD-MPC:
    1, Dreamer: 0.2 ...). The core keeps ``stage updates = train_ratio * (stage policy steps
    - prefill)`` at all times, also after a resume, so updates never come in bursts.
    On-policy: unused (one update per rollout)."""
    prefill_steps: int = 5000
    """Env steps (frames) of uniformly random actions before the first update, counted from
    the start of the run. Must be 0 for on-policy data."""
    capacity: int | None = None
    """Replay capacity in policy steps (rows); ``None`` takes ``replay.capacity``."""
    on_policy: bool = False
    """If true, each update trains on a fresh rollout ``[N, T]`` (``N = run.envs``, ``T =
    sequence_length``) collected with the current parameters right before it, holding
    ``("next", "observation")`` of every step (the bootstrap observation of the last one);
    episodes go on across rollouts. Nothing is stored in the replay."""
    sampler: Any = None
    """Replay: a :class:`wmlab.samplers.Sampler` that draws batches from the stored episodes
    (goal relabelling, ordered pairs, windows of finished episodes); ``None`` draws windows
    of ``sequence_length`` rows uniformly over every window inside one episode."""


@dataclass(frozen=True)
class Search:
    """A gradient-free stage: generations of ask (candidates) -> rollouts -> tell (returns)."""

    generations: int
    """Generations to run (each: :meth:`Method.ask`, scoring, :meth:`Method.tell`)."""
    episodes: int = 1
    """Episodes per candidate in the real env; its fitness is their mean return."""
    in_env: bool = True
    """True: the core scores every candidate by its returns in the real env (``run.envs``
    episodes at a time), counting their env steps. False: the method scores candidates
    itself (:meth:`Method.score`, e.g. in its learned model); no env step is taken."""


#: how a stage collects
COLLECT = ("policy", "random", "none")


@dataclass(frozen=True)
class Stage:
    """One phase of training. Most methods have one; World Models and Plan2Explore several.

    The kind follows from the fields: a *search* stage (``search`` set); a *gradient* stage
    that collects as it trains (``env_steps`` > 0, at the data's train ratio, or one update
    per rollout for on-policy data); an *offline* stage (``env_steps=0``: ``updates`` updates
    on what earlier stages stored); a *collect-only* stage (``train=False``)."""

    name: str = "train"
    env_steps: int | None = None
    """Env steps (frames) collected in this stage; ``None`` means the run's ``run.steps``."""
    updates: int | None = None
    """For stages that collect nothing (``env_steps=0``): how many updates to run."""
    explore: bool = True
    """Whether collection uses the exploring policy (``make_policy(explore=True)``)."""
    collect: str | None = None
    """``policy`` (the method's, after the prefill), ``random`` (uniform actions), ``none``;
    ``None``: ``none`` if ``env_steps == 0`` else ``policy``. (API 1.1)"""
    train: bool = True
    """False: a collect-only stage (no update), e.g. World Models' random rollouts. (API 1.1)"""
    data: DataSpec | None = None
    """What this stage trains on; ``None`` takes :meth:`Method.data_spec`. (API 1.1)"""
    search: Search | None = None
    """Makes this a search stage (see :class:`Search`). (API 1.1)"""

    @property
    def collects(self) -> str:
        if self.collect is not None:
            return self.collect
        return "none" if self.env_steps == 0 else "policy"

    @property
    def kind(self) -> str:
        """``search``, ``collect`` (collect-only), ``offline`` or ``train``."""
        if self.search is not None:
            return "search"
        if not self.train:
            return "collect"
        return "offline" if self.collects == "none" else "train"


@dataclass
class Progress:
    """Counters the core keeps and checkpoints; a method may read them (never write)."""

    policy_steps: int = 0
    env_steps: int = 0
    updates: int = 0
    offline_updates: int = 0
    """Updates made in stages that collect nothing (they do not count against the train ratio)."""
    episodes: int = 0
    stage: str = "train"
    stage_index: int = 0
    stage_env_steps: int = 0
    stage_updates: int = 0
    generations: int = 0
    """Search generations finished (all search stages)."""
    stage_generations: int = 0
    stage_refill_steps: int = 0
    """Policy steps this stage collected to refill a replay that a resume came back without
    (``checkpoint.replay=false``); like a prefill's, they earn no updates."""

    def state_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        for f in dataclasses.fields(self):
            if f.name in state:
                setattr(self, f.name, state[f.name])


class Policy(TensorDictModuleBase):
    """A policy as the core's collector and evaluator call it.

    Reads ``observation`` and ``is_init`` from a TensorDict, writes ``action``.
    Subclasses implement :meth:`act` on plain tensors with a leading batch dimension;
    this class handles device transfer, batching and ``no_grad``. A policy may keep
    internal state (a warm-started plan, a recurrent state) between calls and must
    reset it for the batch entries whose ``is_init`` is true.
    """

    in_keys = [keys.OBSERVATION, keys.IS_INIT]
    out_keys = [keys.ACTION]
    #: the dtype :meth:`act` runs under ``torch.autocast`` with (the core sets it from a
    #: mixed ``run.precision``: bfloat16 for ``bf16-mixed``, float16 for ``16-mixed``), or
    #: ``None``: as the weights are. Floating actions come back as float32. (API 1.4)
    autocast: torch.dtype | None = None

    def __init__(self, device: torch.device | str = "cpu"):
        super().__init__()
        self.device = torch.device(device)
        #: observation entries handed to :meth:`act_td` (the core sets it from
        #: ``EnvSpecs.extra_obs``; a policy may narrow it)
        self.obs_keys: tuple[str, ...] = (keys.OBSERVATION,)

    def act(self, obs: torch.Tensor, is_init: torch.Tensor) -> torch.Tensor:
        """``obs`` ``[B, *obs_shape]``, ``is_init`` ``[B]`` bool -> action ``[B, *action_shape]``."""
        raise NotImplementedError

    def act_td(self, obs: TensorDictBase, is_init: torch.Tensor) -> torch.Tensor:
        """The whole observation: ``obs`` a TensorDict ``[B]`` holding ``observation`` and the
        env's extra entries (``EnvSpecs.extra_obs``), on the policy's device. Override it to
        read a composite observation; by default it calls :meth:`act` on ``observation``.
        (API 1.1)"""
        return self.act(obs.get(keys.OBSERVATION), is_init)

    def _autocast(self):
        if self.autocast is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast)

    def forward(self, td: TensorDictBase) -> TensorDictBase:
        batch = td.batch_size
        flat = td.reshape(-1) if len(batch) != 1 else td
        names = [k for k in dict.fromkeys((keys.OBSERVATION, *self.obs_keys)) if k in flat.keys()]
        obs = flat.select(*names).to(self.device)
        n = obs.batch_size[0] if obs.batch_dims else 1
        if not obs.batch_dims:
            obs = obs.unsqueeze(0)
        is_init = flat.get(keys.IS_INIT, None)
        if is_init is None:
            is_init = torch.zeros(n, dtype=torch.bool)
        is_init = is_init.reshape(n, -1)[:, 0].to(self.device)
        with torch.no_grad(), self._autocast():
            action = self.act_td(obs, is_init)
        if action.dtype in (torch.bfloat16, torch.float16):
            action = action.float()
        td.set(keys.ACTION, action.reshape(*batch, *action.shape[1:]).to(td.device or "cpu"))
        return td


class Method(L.LightningModule):
    """Base class of every method plugin (see docs/plugins.md for a walk-through).

    Class attributes a plugin sets:
      ``Config``: a dataclass, one documented field per hyperparameter, paper defaults.
      ``presets``: named partial configs over the whole tree (``{"method": {...},
      "run": {...}}``); ``debug`` is required (tiny nets, seconds on a CPU).
      ``env_presets``: per-env overrides keyed by glob (``{"cartpole-*": {"env":
      {"action_repeat": 8}}}``), applied right after the method defaults; a glob without
      a family (``*``) matches dm_control tasks only, ``atari:*`` another family's.
      ``observations``: the observation kinds it can learn from.
      ``example_env``: an env it runs on, for checks that run every method (the contract
      test, the CLI smoke run); ``None``: any env (they use ``cartpole-swingup``). A method
      that needs a kind of env (goal-conditioned, discrete actions) names one here. (API 1.1)
      ``api_version``: the contract version it was built for.
    """

    api_version: ClassVar[str] = API_VERSION
    Config: ClassVar[type]
    presets: ClassVar[Mapping[str, Mapping[str, Any]]] = {}
    env_presets: ClassVar[Mapping[str, Mapping[str, Any]]] = {}
    observations: ClassVar[tuple[str, ...]] = ("state",)
    example_env: ClassVar[str | None] = None

    def __init__(self, cfg: Any, specs: EnvSpecs):
        super().__init__()
        self.cfg = cfg
        self.specs = specs
        #: set by the core before training; read-only for the method
        self.progress = Progress()

    # --- required -------------------------------------------------------------------
    def data_spec(self) -> DataSpec:
        """What to sample and how often to update."""
        raise NotImplementedError

    def make_policy(self, explore: bool) -> Policy:
        """The acting policy; ``explore=False`` is the deterministic evaluation policy."""
        raise NotImplementedError

    # --- optional -------------------------------------------------------------------
    def stages(self) -> list[Stage]:
        """Training phases, run in order by the core."""
        return [Stage()]

    def on_stage_start(self, stage: Stage) -> None:
        """Called when a stage begins (also when a resumed run re-enters it)."""

    def eval_videos(self, batch: TensorDictBase) -> dict[str, Any]:
        """Extra videos logged at every evaluation, ``{name: uint8 [T, H, W, 3]}``.

        ``batch`` is a replay sample shaped as :meth:`data_spec` asks (e.g. for an
        open-loop prediction video: real frames beside the model's imagined ones); for
        on-policy data (API 1.2) it is the latest rollout ``[N, T]``, and there is no call
        before the first one."""
        return {}

    def compiled_modules(self) -> list[str]:
        """Submodules (dotted names, as :meth:`~torch.nn.Module.get_submodule` reads them)
        whose ``forward`` ``run.compile`` compiles with :func:`torch.compile`, in place: the
        hot small networks of the update and of acting (e.g. a planner's dynamics and value
        nets). Parameters, ``state_dict`` keys and checkpoints are unchanged. Default: none,
        and ``run.compile`` says so and runs eager. (API 1.3)"""
        return []

    def replay_transform(self):
        """A callable ``batch -> batch`` the core applies to every replay batch before
        :meth:`training_step` (e.g. a reward computed from relabelled goals), or ``None``.
        Samplers (:attr:`DataSpec.sampler`) choose *which* rows to draw; this transforms
        what was drawn."""
        return None

    # --- search stages (API 1.1) ---------------------------------------------------------
    def ask(self) -> list[Policy]:
        """The candidate policies of this generation of a search stage."""
        raise NotImplementedError(f"{type(self).__name__} has a search stage but no ask()")

    def tell(self, fitness: torch.Tensor) -> Mapping[str, Any] | None:
        """The fitness ``[K]`` (mean return, higher is better) of the candidates of the last
        :meth:`ask`, in order; returns extra metrics to log (``search/<name>``), or None.
        Search state (e.g. an evolution strategy) must survive checkpoints: keep it in
        tensors of the module or in :meth:`on_save_checkpoint`/:meth:`on_load_checkpoint`."""
        raise NotImplementedError(f"{type(self).__name__} has a search stage but no tell()")

    def score(self, candidates: list[Policy]) -> torch.Tensor:
        """Fitness ``[K]`` of candidates scored by the method itself (``Search.in_env=False``)."""
        raise NotImplementedError(f"{type(self).__name__} scores no candidates itself (score())")
