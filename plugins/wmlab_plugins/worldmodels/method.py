"""World Models: V (VAE), M (MDN-RNN) and C (a linear controller found by CMA-ES)."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from tensordict import TensorDictBase

from wmlab import keys
from wmlab.api import DataSpec, EnvSpecs, Method, Policy, Search, Stage
from wmlab.errors import ConfigError, check_at_least, check_choices
from wmlab.samplers import Sampler, Spans, Windows

from .latents import LATENT_STATS, LatentStore, WithLatents
from .config import (COLLECT_POLICIES, CONTROLLER_INPUTS, DISCRETE_OUTPUTS, DREAM_DONE, RNN_WINDOWS,
                     TRAIN_IN, WorldModelsConfig)
from .networks import (MDNRNN, VAE, controller_act, controller_shapes, mdn_loss,
                       sample_mixture, vae_loss)
from .search import CMAES

#: stage names
COLLECT, VAE_STAGE, MDN, CONTROLLER = "collect", "vae", "mdn", "controller"
#: frames of episode starts kept for the dream's first z
INITIAL_FRAMES = 1000
#: the parts of M's state ``(h, c)`` C reads after z, by ``controller_input``
STATE_PARTS = {"z": (), "zh": ("h",), "zch": ("c", "h")}
#: the seed of the dream rollouts that score the search's mean (``select_every``)
SELECT_SEED = 0


class WorldModels(Method):
    """World Models (Ha & Schmidhuber 2018, arXiv 1803.10122), four stages of one run:

    1. ``collect``: ``collect_steps`` env steps of a random policy (``collect_policy``),
       stored as episodes;
    2. ``vae``: ``vae_updates`` updates of V on single frames (squared error + KL floored at
       ``kl_tolerance * z_dim``);
    3. ``mdn``: ``rnn_updates`` updates of M on runs of ``rnn_sequence`` stored rows
       (episodes back to back, M's state zeroed at each start), each frame's z sampled from
       the frozen V's mean and std (mixture NLL of the next z, and with ``done_head`` the
       episode's end);
    4. ``controller``: CMA-ES over C's parameters (``population`` candidates, fitness the
       mean return of ``episodes`` rollouts), in the real env (``train_in=env``) or in M's
       dream at ``temperature`` (``train_in=dream``, return = steps before the done head
       fires: Doom's survival time).

    C, the controller that acts (evaluations, later rounds' collection), is the search's
    mean: in the real env its latest one, in the dream the one that scored best on
    ``select_episodes`` dream rollouts, scored every ``select_every`` generations (the
    authors' ``best.json``). At every evaluation after the
    VAE stage two videos are logged: ``vae`` (frames beside V's reconstructions) and
    ``dream`` (a rollout of M from a real first frame, decoded by V, under the current
    controller). Departures from the paper: see ``config.py``."""

    Config = WorldModelsConfig
    observations = ("pixels",)
    example_env = "doom:take-cover"
    presets = {
        # tiny nets and budgets: seconds on a CPU
        "debug": {"method": {"z_dim": 4, "vae_depth": 4, "vae_batch": 8, "vae_updates": 5,
                             "rnn_hidden": 8, "mixtures": 2, "rnn_batch": 4, "rnn_sequence": 8,
                             "rnn_updates": 5, "population": 4, "episodes": 1, "generations": 2,
                             "collect_steps": 400, "dream_steps": 20, "video_steps": 5,
                             "done_head": True, "select_episodes": 8},
                  "run": {"steps": 400}, "eval": {"episodes": 1}},
        # the CarRacing experiment [paper]; 2M frames of random data instead of the paper's
        # 10M (10,000 rollouts), which would take 123 GB in the in-memory replay (2M: 25 GB)
        "carracing": {"method": {"z_dim": 32, "rnn_hidden": 256, "train_in": "env",
                                 "collect_policy": "random_controller", "generations": 1800,
                                 "collect_steps": 2_000_000, "rnn_sequence": 500},
                      "eval": {"every": 1_000_000, "episodes": 100}},
        # the Doom experiment, trained in the dream at tau 1.15 [paper]; 2M frames of random
        # data, about the authors' 12,800 rollouts (25 GB in the replay)
        "doom": {"method": {"z_dim": 64, "rnn_hidden": 512, "done_head": True,
                            "controller_input": "zch", "discrete_output": "threshold",
                            "temperature": 1.15, "train_in": "dream",
                            "collect_policy": "held_random", "generations": 1000,
                            "collect_steps": 2_000_000, "rnn_sequence": 500},
                 "eval": {"every": 1_000_000, "episodes": 100}},
        # Doom in the dream on one CPU core (about 35 minutes, two runs side by side on two
        # cores): narrow V and M, 40k frames of random data, a short search (32 candidates of
        # 16 dreams each; the paper: 64 of 16), and five more rounds of the paper's iterative
        # training (10k frames with the controller, 1k M updates, the search going on from the
        # last controller each; C the best of the search's means scored every 5 generations on
        # 512 dreams); V at lr 1e-3 (the authors' 1e-4 draws no fireball in 3k
        # updates); M at 128 units (at 64 the controllers stayed near random play); dream
        # deaths drawn from the done head's odds divided by done_weight (the authors end a
        # dream at p(done) > 0.5; figures in benchmarks/worldmodels_dream_check.py)
        "cpu": {"method": {"z_dim": 16, "vae_depth": 16, "vae_batch": 32, "vae_updates": 3000,
                           "vae_lr": 1e-3, "rnn_hidden": 128, "rnn_batch": 32, "rnn_sequence": 100,
                           "rnn_updates": 3000, "done_head": True, "temperature": 1.15,
                           "dream_done": "calibrated",
                           "train_in": "dream", "collect_policy": "held_random",
                           "population": 32, "episodes": 16, "generations": 20,
                           "select_every": 5, "select_episodes": 512,
                           "dream_steps": 1000, "collect_steps": 40_000, "iterations": 6,
                           "iteration_steps": 10_000, "iteration_rnn_updates": 1000},
                "eval": {"every": 0, "episodes": 16, "video": False}},
    }
    env_presets = {
        # any gymnasium env from 64x64 frames; CarRacing without its dashboard (rows 0:84 of
        # 96), every frame a decision as the authors' code
        "gym:*": {"env": {"obs": "pixels"}},
        "gym:CarRacing-*": {"env": {"obs": "pixels", "crop_bottom": 0.125, "action_repeat": 1}},
        "doom:*": {"method": {"z_dim": 64, "rnn_hidden": 512, "done_head": True,
                              "controller_input": "zch", "discrete_output": "threshold",
                              "temperature": 1.15, "train_in": "dream",
                              "collect_policy": "held_random"}},
    }

    def __init__(self, cfg, specs: EnvSpecs):
        super().__init__(cfg, specs)
        self._check(cfg, specs)
        self.vae = VAE(specs.obs_shape, z_dim=cfg.z_dim, depth=cfg.vae_depth)
        self.rnn = MDNRNN(z_dim=cfg.z_dim, action_dim=specs.action_dim, hidden=cfg.rnn_hidden,
                          mixtures=cfg.mixtures, done_head=cfg.done_head)
        in_dim = cfg.z_dim + cfg.rnn_hidden * len(STATE_PARTS[cfg.controller_input])
        threshold = cfg.discrete_output == "threshold"
        self.out_dim, n_params = controller_shapes(in_dim, 1 if threshold else specs.action_dim,
                                                   bias=not threshold)
        self.register_buffer("controller", torch.zeros(n_params))
        # V's mean and log-variance of episode starts seen by M's stage (the dream's first z)
        self.register_buffer("initial", torch.zeros(INITIAL_FRAMES, 2, cfg.z_dim))
        self.register_buffer("initial_count", torch.zeros((), dtype=torch.long))
        self.register_buffer("rnn_trained", torch.zeros((), dtype=torch.long))
        self.search = CMAES(n_params, population=cfg.population, sigma=cfg.sigma)
        #: the round (``iterations``) whose controller search ``search`` holds; 0: none begun
        self.search_round = 0
        #: the dream score of C in this round's search (``select_every``); -inf: none yet
        self.controller_score = float("-inf")
        self.candidates: torch.Tensor | None = None
        self.automatic_optimization = False
        self.phase, self.round = COLLECT, 1
        #: V's mean and log-variance of stored frames by replay slot (``cache_latents``), not
        #: checkpointed
        self.latent_store = LatentStore(self.encode_frames)

    @staticmethod
    def _check(cfg, specs: EnvSpecs) -> None:
        check_choices(cfg, {"train_in": TRAIN_IN, "controller_input": CONTROLLER_INPUTS,
                            "collect_policy": COLLECT_POLICIES, "dream_done": DREAM_DONE,
                            "discrete_output": DISCRETE_OUTPUTS, "rnn_windows": RNN_WINDOWS})
        if cfg.discrete_output == "threshold" and not (specs.discrete and specs.action_dim == 3):
            raise ConfigError(f"method.discrete_output=threshold maps one output to 3 choices; "
                              f"{specs.name} has "
                              f"{f'{specs.action_dim} choices' if specs.discrete else 'continuous actions'}"
                              f": use method.discrete_output=argmax")
        if specs.obs_kind != "pixels" or tuple(specs.obs_shape) != (3, 64, 64):
            raise ConfigError(f"worldmodels reads 64x64 RGB frames (env.obs=pixels, image_size 64, "
                              f"grayscale false); {specs.name} gives {specs.obs_kind} "
                              f"{tuple(specs.obs_shape)}")
        check_at_least(cfg, ["z_dim", "vae_depth", "vae_batch", "rnn_hidden", "mixtures", "rnn_batch",
                             "episodes", "generations", "dream_steps", "collect_steps", "iterations",
                             "select_episodes", "collect_hold"])
        if cfg.select_every < 0:
            raise ConfigError(f"method.select_every={cfg.select_every} must be >= 0 (0: C is "
                              f"the search's latest mean)")
        if cfg.rnn_sequence < 2:
            raise ConfigError(f"method.rnn_sequence={cfg.rnn_sequence}: M needs windows of at "
                              f"least 2 frames")
        if cfg.temperature <= 0:
            raise ConfigError(f"method.temperature={cfg.temperature} must be > 0")
        if cfg.train_in == "dream":
            if not cfg.done_head:
                raise ConfigError("method.train_in=dream scores a dream rollout by the steps "
                                  "before M's done head fires: set method.done_head=true")
            if cfg.rnn_updates < 1:
                raise ConfigError(f"method.train_in=dream needs a trained M: "
                                  f"method.rnn_updates={cfg.rnn_updates}")

    # --- contract -----------------------------------------------------------------------
    def data_spec(self) -> DataSpec:
        """Runs of ``rnn_sequence`` rows (evaluation videos take one); the replay holds the
        collected episodes (and their final rows)."""
        c = self.cfg
        rows = (c.collect_steps + (c.iterations - 1) * c.iteration_steps) // self.specs.action_repeat
        return DataSpec(batch_size=1, sequence_length=self.cfg.rnn_sequence, prefill_steps=0,
                        capacity=rows + rows // 10 + 1000, sampler=Spans(self.cfg.rnn_sequence))

    def stages(self) -> list[Stage]:
        """collect, vae, mdn, controller; then, for each further round of ``iterations``,
        ``collect<i>`` (``iteration_steps`` with the controller), ``mdn<i>``
        (``iteration_rnn_updates`` on everything stored) and ``controller<i>`` (a new search)."""
        c = self.cfg
        windows = self.rnn_windows()
        mdn_data = DataSpec(batch_size=c.rnn_batch, sequence_length=c.rnn_sequence, prefill_steps=0,
                            sampler=WithLatents(windows, self.latent_store) if c.cache_latents else windows)
        search = Search(generations=c.generations, episodes=c.episodes, in_env=c.train_in == "env")
        stages = [
            Stage(COLLECT, env_steps=c.collect_steps, collect="policy", train=False,
                  data=DataSpec(batch_size=1, prefill_steps=0)),
            Stage(VAE_STAGE, env_steps=0, updates=c.vae_updates,
                  data=DataSpec(batch_size=c.vae_batch, prefill_steps=0)),
            Stage(MDN, env_steps=0, updates=c.rnn_updates, data=mdn_data),
            Stage(CONTROLLER, search=search),
        ]
        for i in range(2, c.iterations + 1):
            stages += [
                Stage(f"{COLLECT}{i}", env_steps=c.iteration_steps, collect="policy", train=False,
                      data=DataSpec(batch_size=1, prefill_steps=0)),
                Stage(f"{MDN}{i}", env_steps=0, updates=c.iteration_rnn_updates, data=mdn_data),
                Stage(f"{CONTROLLER}{i}", search=search),
            ]
        return stages

    def rnn_windows(self) -> Sampler:
        """M's windows (``rnn_windows``): ``spans``, runs of ``rnn_sequence`` rows across
        episode boundaries (the authors' batches of episodes back to back), so every
        transition, a death included, is seen equally often and at any position of the
        window; ``episodes``, windows inside one episode, the one that ends a finished
        episode drawn ``rnn_sequence + 1`` times as often as any other (a death is then
        always a window's last step)."""
        if self.cfg.rnn_windows == "spans":
            return Spans(length=self.cfg.rnn_sequence)
        return Windows(length=self.cfg.rnn_sequence, prioritize_ends=True)

    def on_stage_start(self, stage: Stage) -> None:
        self.phase = stage.name.rstrip("0123456789")  # (a later round's stage: its kind)
        self.round = int(stage.name[len(self.phase):] or 1)
        self.latent_store.clear()  # (V may have changed)
        if self.phase == CONTROLLER and self.search_round != self.round:
            # a later round starts a new search in the retrained M (a resumed one goes on), from
            # the last round's controller unless ``iteration_warm_start`` is off
            if self.search_round > 0:
                start = self.controller.double().cpu().numpy() if self.cfg.iteration_warm_start else None
                self.search = CMAES(self.controller.numel(), population=self.cfg.population,
                                    sigma=self.cfg.sigma, x0=start)
            self.search_round = self.round
            self.controller_score = float("-inf")  # (scored in the old M)
        if self.phase == CONTROLLER and self.cfg.train_in == "dream" and int(self.rnn_trained) == 0:
            raise ConfigError("method.train_in=dream needs a trained M, but this run's M has had "
                              "no update (its mdn stage did not run); train it first, e.g. run "
                              "the stages from the start")

    def configure_optimizers(self):
        c = self.cfg
        return [torch.optim.Adam(self.vae.parameters(), lr=c.vae_lr),
                torch.optim.Adam(self.rnn.parameters(), lr=c.rnn_lr)]

    def make_policy(self, explore: bool) -> Policy:
        if explore and self.phase == COLLECT and self.round == 1:
            return CollectPolicy(self)
        return ControllerPolicy(self, self.controller)

    # --- training -----------------------------------------------------------------------
    def training_step(self, batch: TensorDictBase, batch_idx: int) -> None:
        opts = self.optimizers()
        if self.phase == VAE_STAGE:
            self.fit_vae(batch, opts[0])
        elif self.phase == MDN:
            self.fit_rnn(batch, opts[1])

    def fit_vae(self, batch: TensorDictBase, opt) -> None:
        """One V update on frames ``[B]``."""
        obs = batch.get(keys.OBSERVATION)  # [B, 3, 64, 64] uint8
        mean, logvar = self.vae.encode(obs)
        z = sample_latent(mean, logvar)
        terms = vae_loss(obs.float() / 255.0, self.vae.decode(z), mean, logvar, self.cfg.kl_tolerance)
        opt.zero_grad(set_to_none=True)
        self.manual_backward(terms["loss"])
        opt.step()
        self.log_dict({f"train/loss/vae_{k}" if k != "loss" else "train/loss/vae": v.detach()
                       for k, v in terms.items()}, on_step=True, on_epoch=False,
                      batch_size=obs.shape[0])

    def latents(self, obs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """z sampled from the frozen V's mean and std of frames ``[..., 3, 64, 64]``, and the
        mean and log-variance themselves."""
        with torch.no_grad():
            mean, logvar = self.vae.encode(obs)
        return sample_latent(mean, logvar), mean, logvar

    def encode_frames(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """V's mean and log-variance of frames (on any device), on V's device."""
        return self.vae.encode(frames.to(self.vae.mean.weight.device))

    def fit_rnn(self, batch: TensorDictBase, opt) -> None:
        """One M update on windows ``[B, L]``: row t's z and action predict row t + 1's z
        (and with the done head, whether step t ended the episode). M's state is zeroed
        where a new episode starts (``is_init``, inside ``spans``), and no transition into
        such a row is learnt (the previous row is an episode's final row)."""
        c = self.cfg
        if LATENT_STATS in batch.keys():  # (``cache_latents``: V's outputs, not frames)
            stats = batch.get(LATENT_STATS)  # [B, L, 2, Z]
            mean, logvar = stats[..., 0, :], stats[..., 1, :]
            z = sample_latent(mean, logvar)
        else:
            z, mean, logvar = self.latents(batch.get(keys.OBSERVATION))  # [B, L, Z]
        is_init = batch.get(keys.IS_INIT).reshape(z.shape[:2]).bool()
        self.remember_starts(is_init, mean, logvar)
        action = batch.get(keys.ACTION).float()  # [B, L, A]
        h = self.rnn.unroll(z[:, :-1], action[:, :-1], reset=is_init[:, :-1])  # [B, L-1, H]
        mix, done_logit = self.rnn.heads(h)
        done = batch.get(keys.TERMINATED).reshape(z.shape[:2])[:, :-1]
        terms = mdn_loss(mix, z[:, 1:], done_logit, done, c.done_weight, mask=~is_init[:, 1:])
        opt.zero_grad(set_to_none=True)
        self.manual_backward(terms["loss"])
        if c.rnn_grad_clip > 0:
            torch.nn.utils.clip_grad_value_(self.rnn.parameters(), c.rnn_grad_clip)
        opt.step()
        self.rnn_trained += 1
        self.log_dict({("train/loss/mdn" if k == "loss" else f"train/loss/mdn_{k}"): v.detach()
                       for k, v in terms.items()}, on_step=True, on_epoch=False,
                      batch_size=z.shape[0])

    def remember_starts(self, is_init: torch.Tensor, mean: torch.Tensor, logvar: torch.Tensor) -> None:
        """Keep V's mean and log-variance of the episode starts in a window batch (a ring of
        ``INITIAL_FRAMES``); before any start was seen, the windows' first frames."""
        pick = is_init.bool()
        if not pick.any():
            if int(self.initial_count) > 0:
                return
            pick = torch.zeros_like(pick)
            pick[:, 0] = True
        stats = torch.stack([mean[pick], logvar[pick]], 1)  # [N, 2, Z]
        slots = (self.initial_count + torch.arange(stats.shape[0], device=stats.device)) % INITIAL_FRAMES
        self.initial[slots] = stats
        self.initial_count += stats.shape[0]

    # --- controller search ---------------------------------------------------------------
    def ask(self) -> list[Policy]:
        self.candidates = torch.as_tensor(self.search.ask(), dtype=torch.float32)
        return [ControllerPolicy(self, p) for p in self.candidates]

    def tell(self, fitness: torch.Tensor):
        """Tell the search; C becomes its new mean, or in the dream with ``select_every``,
        the mean when it outscores C (checked every ``select_every`` generations and at the
        last one)."""
        self.search.tell(fitness.detach().cpu().numpy())
        mean = torch.as_tensor(self.search.mean, dtype=torch.float32)
        metrics = {"sigma": self.search.sigma}
        every, generation = self.cfg.select_every, self.search.es.countiter
        if every == 0 or self.cfg.train_in != "dream":
            self.controller.copy_(mean)
        elif generation % every == 0 or generation >= self.cfg.generations:
            score = self.selection_score(mean)
            if score > self.controller_score:
                self.controller_score = score
                self.controller.copy_(mean)
            metrics |= {"mean_score": score, "controller_score": self.controller_score}
        return metrics

    def selection_score(self, params: torch.Tensor) -> float:
        """Mean survival of controller ``params [P]`` over ``select_episodes`` dream rollouts,
        drawn from the same fixed random numbers at every call (the global generator is left
        as it was)."""
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(SELECT_SEED)
            returns = self.dream_returns(params.expand(self.cfg.select_episodes, -1))
        return float(returns.mean())

    def features(self, z: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """What C reads (``controller_input``): ``[z]``, ``[z, h]`` or ``[z, c, h]``, M's LSTM
        state ``state`` = ``(h, c)``."""
        parts = dict(zip(("h", "c"), state))
        return torch.cat([z, *(parts[k] for k in STATE_PARTS[self.cfg.controller_input])], -1)

    def act(self, params: torch.Tensor, z: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """Env actions of controllers ``params`` ``[P]`` or ``[N, P]`` on z ``[N, Z]`` and M's
        state ``(h, c)``."""
        return self.to_action(controller_act(params, self.features(z, state), self.out_dim))

    def to_action(self, out: torch.Tensor) -> torch.Tensor:
        """The controller's outputs in [-1, 1] -> env actions: discrete, one-hot of the
        largest output (``discrete_output=argmax``) or of choice 1 below -1/3, choice 2 above
        1/3 and choice 0 between (``threshold``, one output); continuous, scaled linearly into
        the action bounds."""
        if self.specs.discrete:
            if self.cfg.discrete_output == "threshold":
                third = 1.0 / 3.0
                choice = torch.where(out[..., 0] < -third, 1, torch.where(out[..., 0] > third, 2, 0))
                return F.one_hot(choice, self.specs.action_dim).float()
            return F.one_hot(out.argmax(-1), self.specs.action_dim).float()
        low = self.specs.action_low.to(out.device)
        high = self.specs.action_high.to(out.device)
        return low + (out + 1) * 0.5 * (high - low)

    def score(self, candidates: list[Policy]) -> torch.Tensor:
        """Fitness ``[K]``: each candidate's mean return over ``episodes`` dream rollouts."""
        params = torch.stack([c.params for c in candidates])  # [K, P]
        returns = self.dream_returns(params.repeat_interleave(self.cfg.episodes, 0))
        return returns.reshape(len(candidates), self.cfg.episodes).mean(-1)

    def dream_returns(self, params: torch.Tensor) -> torch.Tensor:
        """Returns ``[N]`` of one dream rollout per parameter vector ``params`` ``[N, P]``: 1 a
        step until M's done head says the episode ended (``dream_done``), at most
        ``dream_steps`` steps."""
        params = params.to(self.device)
        return self.dream_survival(params.shape[0], lambda z, state: self.act(params, z, state))

    @torch.no_grad()
    def dream_survival(self, n: int, choose) -> torch.Tensor:
        """Steps survived ``[n]`` by ``n`` dream rollouts of M (from remembered episode
        starts, at ``temperature``) whose actions ``[n, A]`` are ``choose(z, (h, c))``."""
        z = self.initial_z(n)
        state = self.rnn.initial_state(n, self.device)
        alive = torch.ones(n, dtype=torch.bool, device=self.device)
        total = torch.zeros(n, device=self.device)
        for _ in range(self.cfg.dream_steps):
            state = self.rnn.step(z, choose(z, state), state)
            mix, done_logit = self.rnn.heads(state[0])
            total += alive.float()
            alive &= ~self.dream_ends(done_logit)
            if not alive.any():
                break
            z = sample_mixture(mix, self.cfg.temperature)
        return total

    def dream_ends(self, done_logit: torch.Tensor) -> torch.Tensor:
        """Whether each dream episode ends at this step (``dream_done``): p(done) > 0.5, or a
        draw with probability p(done), the head's odds divided by ``done_weight`` first when
        ``calibrated``."""
        if self.cfg.dream_done == "calibrated":
            done_logit = done_logit - math.log(self.cfg.done_weight)
        if self.cfg.dream_done in ("sample", "calibrated"):
            return torch.rand_like(done_logit) < torch.sigmoid(done_logit)
        return done_logit > 0

    def initial_z(self, n: int) -> torch.Tensor:
        """``[n, Z]`` first z of dream rollouts: from V's stats of remembered episode starts."""
        count = min(int(self.initial_count), INITIAL_FRAMES)
        if count == 0:
            raise ConfigError("a dream needs episode starts seen by M's stage (method.rnn_updates > 0)")
        pick = torch.randint(count, (n,), device=self.device)
        mean, logvar = self.initial[pick, 0], self.initial[pick, 1]
        return mean + (0.5 * logvar).exp() * torch.randn_like(mean)

    # --- checkpoints -------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["cma"] = self.search.state()
        checkpoint["cma_round"] = self.search_round
        checkpoint["controller_score"] = self.controller_score

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        if "cma" in checkpoint:
            self.search.load_state(checkpoint["cma"])
        self.search_round = int(checkpoint.get("cma_round", 0))
        self.controller_score = float(checkpoint.get("controller_score", float("-inf")))

    # --- videos --------------------------------------------------------------------------
    def eval_videos(self, batch: TensorDictBase) -> dict[str, np.ndarray]:
        """``vae``: real frames beside V's reconstructions; ``dream``: M dreaming from the
        window's first frame under the current controller, decoded by V (after M's stage)."""
        if self.phase == COLLECT:
            return {}
        frames = batch.get(keys.OBSERVATION).reshape(-1, *self.specs.obs_shape)[: self.cfg.video_steps]
        mean, _ = self.vae.encode(frames.to(self.device))
        recon = self.vae.decode(mean)
        videos = {"vae": _side_by_side(frames.float() / 255.0, recon.cpu())}
        if int(self.rnn_trained) > 0:
            videos["dream"] = _uint8(self.dream_frames(mean[:1]).cpu())
        return videos

    @torch.no_grad()
    def dream_frames(self, z0: torch.Tensor) -> torch.Tensor:
        """``[T, 3, 64, 64]`` frames in [0, 1] of one dream from ``z0`` ``[1, Z]``."""
        z, state, out = z0, self.rnn.initial_state(1, self.device), []
        for _ in range(self.cfg.video_steps):
            out.append(self.vae.decode(z)[0])
            action = self.act(self.controller, z, state)
            state = self.rnn.step(z, action, state)
            mix, done_logit = self.rnn.heads(state[0])
            if done_logit is not None and bool(self.dream_ends(done_logit)[0]):
                break
            z = sample_mixture(mix, self.cfg.temperature)
        return torch.stack(out)


def sample_latent(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """z ~ N(mean, exp(logvar)), drawn afresh each call."""
    return mean + (0.5 * logvar).exp() * torch.randn_like(mean)


def _uint8(frames: torch.Tensor) -> np.ndarray:
    """``[T, 3, H, W]`` in [0, 1] -> ``uint8 [T, H, W, 3]``."""
    return (frames.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


def _side_by_side(real: torch.Tensor, recon: torch.Tensor) -> np.ndarray:
    return _uint8(torch.cat([real, recon], -1))


class ControllerPolicy(Policy):
    """C acting in the real env on V's sampled z and M's h: ``params`` ``[P]`` (one
    controller) or ``[B, P]`` (one per env). M's state is reset where ``is_init``."""

    def __init__(self, method: WorldModels, params: torch.Tensor):
        super().__init__(method.device)
        self.method, self.params = method, params
        self.state: tuple[torch.Tensor, torch.Tensor] | None = None

    def act(self, obs: torch.Tensor, is_init: torch.Tensor) -> torch.Tensor:
        m = self.method
        z, _, _ = m.latents(obs.to(m.device))
        if self.state is None or self.state[0].shape[0] != z.shape[0]:
            self.state = m.rnn.initial_state(z.shape[0], m.device)
        keep = (~is_init.to(m.device)).float().unsqueeze(-1)
        self.state = (self.state[0] * keep, self.state[1] * keep)
        action = m.act(self.controller_params(z.shape[0]), z, self.state)
        self.state = m.rnn.step(z, action, self.state)
        return action

    def controller_params(self, batch: int) -> torch.Tensor:
        return self.params.to(self.method.device)


class CollectPolicy(ControllerPolicy):
    """The first stage's random policy (``collect_policy``): a controller with random weights
    redrawn per episode (normal, std uniform in [0, 0.01), on the untrained V and M), or a
    uniformly random action held for 1 to ``collect_hold`` steps."""

    def __init__(self, method: WorldModels):
        super().__init__(method, method.controller)
        self.held: torch.Tensor | None = None
        self.left: torch.Tensor | None = None

    def act(self, obs: torch.Tensor, is_init: torch.Tensor) -> torch.Tensor:
        m = self.method
        b = obs.shape[0]
        if m.cfg.collect_policy == "random_controller":
            fresh = is_init.cpu() if self.params.dim() == 2 and self.params.shape[0] == b \
                else torch.ones(b, dtype=torch.bool)
            params = self.params.expand(b, -1).clone() if self.params.dim() == 2 else \
                torch.zeros(b, m.controller.numel())
            std = torch.rand(b, 1) * 0.01
            params[fresh] = (torch.randn(b, params.shape[1]) * std)[fresh]
            self.params = params
            return super().act(obs, is_init)
        if self.held is None or self.held.shape[0] != b:
            self.held, self.left = torch.zeros(b, m.specs.action_dim), torch.zeros(b, dtype=torch.long)
        new = (self.left <= 0) | is_init.cpu()
        if m.specs.discrete:
            pick = F.one_hot(torch.randint(m.specs.action_dim, (b,)), m.specs.action_dim).float()
        else:
            u = torch.rand(b, m.specs.action_dim)
            pick = m.specs.action_low + u * (m.specs.action_high - m.specs.action_low)
        self.held[new] = pick[new]
        self.left[new] = torch.randint(1, m.cfg.collect_hold + 1, (int(new.sum()),))
        self.left -= 1
        return self.held.clone().to(m.device)
