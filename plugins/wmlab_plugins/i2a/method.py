"""I2A: imagination-augmented agents (A2C), with the model-free and copy-model baselines."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from tensordict import TensorDictBase

from wmlab import keys
from wmlab.api import DataSpec, EnvSpecs, Method, Policy, Stage
from wmlab.errors import ConfigError, check_at_least, check_choices
from wmlab.replay import EPISODE

from .config import AGENTS, OPTIMIZERS, SIZES, I2AConfig
from .networks import CopyModel, EnvModel, I2AAgent, ModelFreeAgent

#: stage names (``self.phase``); the first three exist for ``agent=i2a`` only
STANDARD, COLLECT, ENVMODEL, TRAIN = "standard", "collect", "envmodel", "train"


def sokoban_rewards() -> torch.Tensor:
    """The rewards one Sokoban step can give (the env model's reward classes): a step, a box
    onto a target, a box off one, the last box onto a target (solved)."""
    from wmlab.envs.sokoban import BOX_REWARD, SOLVED_REWARD, STEP_REWARD

    return torch.tensor([STEP_REWARD, STEP_REWARD + BOX_REWARD, STEP_REWARD - BOX_REWARD,
                         STEP_REWARD + BOX_REWARD + SOLVED_REWARD])


def a2c_returns(reward: torch.Tensor, terminated: torch.Tensor, truncated: torch.Tensor,
                values: torch.Tensor, bootstrap: torch.Tensor, discount: float) -> torch.Tensor:
    """n-step returns ``[N, T]`` of a rollout: ``reward``, ``terminated``, ``truncated`` and
    the (detached) ``values`` of its observations ``[N, T]``; ``bootstrap`` ``[N]`` is the
    value of the last step's next observation. A termination cuts the return; a time limit
    in the middle of the rollout bootstraps from the value of the step's own observation
    (the next one, the episode's final frame, is not evaluated: a rare approximation, once
    per episode)."""
    ret = bootstrap
    out = []
    for t in range(reward.shape[1] - 1, -1, -1):
        if t < reward.shape[1] - 1:
            ret = torch.where(truncated[:, t], values[:, t], ret)
        ret = reward[:, t] + discount * ret * (~terminated[:, t]).to(reward.dtype)
        out.append(ret)
    return torch.stack(out[::-1], 1)


class I2A(Method):
    """Imagination-augmented agents (Weber, Racanière, Reichert et al. 2017, arXiv
    1707.06203), on the one-hot room of a Sokoban env (``--env sokoban:7x7-2``,
    ``sokoban:10x10-4``, ``env.obs=state``).

    ``method.agent=i2a`` runs four stages:

    1. ``standard``: A2C of a standard model-free agent for ``standard_steps`` env steps;
    2. ``collect``: that partially trained agent collects ``model_data_steps`` env steps
       into the replay (as the paper's env model is trained on a partially trained
       standard agent's data);
    3. ``envmodel``: ``model_updates`` offline updates of the env model (next room as a
       per-cell categorical, cross-entropy; reward as a classifier over the rewards a step
       can give) on transitions of the replay, every ``holdout``-th episode held out;
       ``envmodel/accuracy`` (cells), ``envmodel/frame_accuracy`` (whole rooms right),
       ``envmodel/changed_cell_accuracy`` (the cells that change) and
       ``envmodel/reward_accuracy`` on the held-out transitions; then frozen;
    4. ``train``: A2C of the I2A agent on rollouts ``[run.envs, unroll]`` for
       ``run.steps`` env steps: one imagined rollout per action (the action first, then the
       rollout policy's), encoded backwards by an LSTM, concatenated, beside the model-free
       path; the rollout policy is distilled from the agent's policy (cross-entropy,
       ``distill_weight``).

    Every env step of the four stages counts on the x-axis: the env model's pretraining
    data is in the run's budget (``run.steps`` + ``standard_steps`` + ``model_data_steps``
    env steps in all). ``model_free`` and ``copy_model`` run stage 4 only; give them
    ``run.steps`` equal to that total to compare at one budget.

    Departures from the paper: see ``config.py`` (A2C instead of A3C, the one-hot room
    instead of frames, network sizes)."""

    Config = I2AConfig
    example_env = "sokoban:7x7-2"
    observations = ("state",)
    presets = {
        # tiny nets, a few hundred env steps per stage: seconds on a CPU
        "debug": {"method": {"channels": 8, "hidden": 16, "encoder_channels": 4, "lstm": 8,
                             "rollout_channels": 4, "model_channels": 8, "model_blocks": 1,
                             "rollout_length": 2, "standard_steps": 100, "model_data_steps": 100,
                             "model_updates": 5, "model_batch": 8},
                  "run": {"envs": 2, "steps": 200}},
        # sokoban:7x7-2 on a CPU: 32 envs, a short pretraining, half a million env steps.
        # Seen with the model-free agent alone on sokoban:5x5-1 (16 envs, these A2C settings,
        # seed 1, 100 eval episodes): solved 26%, 29%, 31%, 58%, 88%, 91% at 100k..600k env
        # steps (a random policy: 26-33%); nothing is learnt in the first ~300k. All three
        # agents on sokoban:5x5-1: the README (benchmarks/i2a_sokoban.py, with 16 envs).
        # 32 envs rather than 16: I2A on sokoban:5x5-1 (20k standard + 20k model data, 2000
        # env-model updates, seeds 1 and 2, 100 eval episodes at 60k..140k env steps) solved
        # 41-58% and 37-52% with 32, against 8-49% (one collapse to 8% at 120k) and 30-51%
        # with 16, and ran 1.2x as many env steps per second (its imagination batched over
        # more envs); the A2C batch is then 32 x 5 = 160 steps per update [wmlab choice].
        # Eval episodes run 10 side by side (eval.envs): the policy's imagination is batched
        # (benchmarks/eval_throughput.py: 1.6x as many policy steps/s with 16 as with 1)
        "cpu": {"method": {"channels": 32, "hidden": 128, "encoder_channels": 8, "lstm": 32,
                           "rollout_channels": 8, "model_channels": 32, "model_blocks": 2,
                           "standard_steps": 50_000, "model_data_steps": 50_000,
                           "model_updates": 3000},
                "run": {"envs": 32, "steps": 500_000},
                "eval": {"every": 25_000, "episodes": 50, "envs": 10}},
    }
    env_presets = {
        # the paper's task: its budget is far beyond a CPU; wmlab's pretraining budget
        "sokoban:10x10-4": {"run": {"envs": 32, "steps": 100_000_000},
                            "eval": {"every": 1_000_000, "episodes": 100, "envs": 10}},
        "sokoban:7x7-2": {"run": {"envs": 16, "steps": 2_000_000},
                          "eval": {"every": 50_000, "episodes": 100, "envs": 10}},
    }

    def __init__(self, cfg, specs: EnvSpecs):
        super().__init__(cfg, specs)
        check_choices(cfg, {"agent": AGENTS, "size": SIZES, "optimizer": OPTIMIZERS})
        if cfg.size != "standard" and cfg.agent != "model_free":
            raise ConfigError(f"method.size={cfg.size} is the model-free baseline's "
                              f"(method.agent=model_free); method.agent={cfg.agent} has one size")
        if not specs.name.startswith("sokoban:") or specs.obs_kind != "state":
            raise ConfigError(f"i2a reads the one-hot room of a Sokoban env (--env sokoban:7x7-2 "
                              f"env.obs=state); got {specs.name} with {specs.obs_kind} observations")
        check_at_least(cfg, ["rollout_length", "unroll", "model_updates", "model_batch", "holdout",
                             "channels", "hidden", "lstm", "encoder_channels", "rollout_channels",
                             "model_channels"])
        if cfg.agent == "i2a" and (cfg.standard_steps < 1 or cfg.model_data_steps < 1):
            raise ConfigError(f"method.standard_steps={cfg.standard_steps} and method.model_data_steps="
                              f"{cfg.model_data_steps} must be >= 1 with method.agent=i2a")
        from wmlab.envs.sokoban import grid_shape

        self.shape = grid_shape(specs.name)
        if specs.obs_dim != self.shape[0] * self.shape[1] * self.shape[2]:
            raise ConfigError(f"i2a: {specs.name}'s observation has {specs.obs_dim} entries, not the "
                              f"one-hot room {self.shape}")
        self.automatic_optimization = False
        n = specs.action_dim
        self.imagines = cfg.agent != "model_free"
        if cfg.agent == "model_free":
            hidden = self.large_hidden() if cfg.size == "large" else cfg.hidden
            self.agent = ModelFreeAgent(self.shape, n, cfg.channels, hidden)
        else:
            if cfg.agent == "i2a":
                self.env_model = EnvModel(self.shape, n, cfg.model_channels, cfg.model_blocks,
                                          sokoban_rewards())
                self.standard = ModelFreeAgent(self.shape, n, cfg.channels, cfg.hidden)
                self.register_buffer("heldout", torch.zeros(6), persistent=True)
                model = self.env_model
            else:
                model = CopyModel()
            self.agent = I2AAgent(self.shape, n, model, channels=cfg.channels, hidden=cfg.hidden,
                                  encoder_channels=cfg.encoder_channels, lstm=cfg.lstm,
                                  rollout_channels=cfg.rollout_channels,
                                  rollout_length=cfg.rollout_length)
        self.phase = self.stages()[0].name
        #: (observation, imagined rooms, imagined rewards) of the policy steps since the last
        #: update, kept by the acting policy for :meth:`acted_imagination`
        self.imagined: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []

    def large_hidden(self) -> int:
        """Hidden units of the ``large`` model-free agent: as many parameters as the I2A agent
        of this config (its env model not counted), by widening the fully connected layer
        (the model-free agent's parameter count is linear in it)."""
        c, n = self.cfg, self.specs.action_dim
        i2a = I2AAgent(self.shape, n, CopyModel(), channels=c.channels, hidden=c.hidden,
                       encoder_channels=c.encoder_channels, lstm=c.lstm,
                       rollout_channels=c.rollout_channels, rollout_length=c.rollout_length)

        def count(hidden: int) -> int:
            return sum(p.numel() for p in ModelFreeAgent(self.shape, n, c.channels, hidden).parameters())

        target = sum(p.numel() for p in i2a.parameters())
        per_unit = count(2) - count(1)
        return max(c.hidden, round(c.hidden + (target - count(c.hidden)) / per_unit))

    # --- contract -----------------------------------------------------------------------
    def data_spec(self) -> DataSpec:
        c = self.cfg
        capacity = c.model_data_steps + c.model_data_steps // 10 + 1000 if c.agent == "i2a" else None
        return DataSpec(batch_size=1, sequence_length=c.unroll, on_policy=True, prefill_steps=0,
                        capacity=capacity)

    def model_data(self) -> DataSpec:
        """Transitions ``[B, 2]`` (rows t and t + 1 of one episode) for the env model."""
        return DataSpec(batch_size=self.cfg.model_batch, sequence_length=2, prefill_steps=0)

    def stages(self) -> list[Stage]:
        c = self.cfg
        if c.agent != "i2a":
            return [Stage(TRAIN)]
        return [Stage(STANDARD, env_steps=c.standard_steps),
                Stage(COLLECT, env_steps=c.model_data_steps, collect="policy", train=False,
                      data=self.model_data()),
                Stage(ENVMODEL, env_steps=0, updates=c.model_updates, data=self.model_data()),
                Stage(TRAIN)]

    def on_stage_start(self, stage: Stage) -> None:
        self.phase = stage.name
        if stage.name == TRAIN and self.cfg.agent == "i2a":
            self.env_model.requires_grad_(False)  # frozen from here on (no dropout or norms)

    def make_policy(self, explore: bool) -> Policy:
        return I2APolicy(self, sample=explore or self.cfg.eval_sample, keep=explore)

    def configure_optimizers(self):
        c = self.cfg
        opts = [self.agent_optimizer(self.agent.parameters())]
        if c.agent == "i2a":
            opts += [torch.optim.Adam(self.env_model.parameters(), lr=c.model_lr),
                     self.agent_optimizer(self.standard.parameters())]
        return opts

    def agent_optimizer(self, params) -> torch.optim.Optimizer:
        c = self.cfg
        if c.optimizer == "adam":
            return torch.optim.Adam(params, lr=c.lr)
        return torch.optim.RMSprop(params, lr=c.lr, alpha=c.rmsprop_alpha, eps=c.rmsprop_eps)

    # --- acting -------------------------------------------------------------------------
    def grid(self, obs: torch.Tensor) -> torch.Tensor:
        """Observations ``[..., C * H * W]`` -> rooms ``[B, C, H, W]``."""
        return obs.float().reshape(-1, *self.shape)

    def acting_net(self) -> torch.nn.Module:
        """The standard agent before the I2A's own stage, else the agent."""
        return self.standard if self.phase in (STANDARD, COLLECT, ENVMODEL) and self.cfg.agent == "i2a" \
            else self.agent

    # --- training -----------------------------------------------------------------------
    def training_step(self, batch: TensorDictBase, batch_idx: int) -> None:
        opts = self.optimizers()
        opts = opts if isinstance(opts, list) else [opts]
        if self.phase == ENVMODEL:
            self.fit_env_model(batch, opts[1])
        elif self.phase == STANDARD:
            self.a2c(batch, self.standard, opts[2], prefix="standard/")
        else:
            self.a2c(batch, self.agent, opts[0])

    def a2c(self, batch: TensorDictBase, net: torch.nn.Module, opt, prefix: str = "") -> None:
        """One A2C update on a rollout ``[N, T]``: policy gradient with the n-step advantage,
        value regression, entropy bonus, and (I2A, copy model) the rollout policy's
        distillation."""
        c = self.cfg
        n, t = batch.batch_size
        grid = self.grid(batch.get(keys.OBSERVATION))
        if net is self.agent and self.imagines:
            logits, values = net(grid, self.acted_imagination(batch.get(keys.OBSERVATION)))
        else:
            logits, values = net(grid)
        with torch.no_grad():
            _, bootstrap = net(self.grid(batch.get((keys.NEXT, keys.OBSERVATION))[:, -1]))
        flags = [batch.get(k).reshape(n, t).bool() for k in (keys.TERMINATED, keys.TRUNCATED)]
        reward = batch.get(keys.REWARD).reshape(n, t).float()
        returns = a2c_returns(reward, *flags, values.detach().reshape(n, t), bootstrap, c.discount)
        returns = returns.reshape(-1)
        advantage = returns - values.detach()
        logp = logits.log_softmax(-1)
        taken = (logp * batch.get(keys.ACTION).reshape(n * t, -1)).sum(-1)
        entropy = -(logp.exp() * logp).sum(-1).mean()
        policy_loss = -(taken * advantage).mean()
        value_loss = 0.5 * (returns - values).pow(2).mean()
        loss = policy_loss + c.value_weight * value_loss - c.entropy_weight * entropy
        terms = {"policy": policy_loss, "value": value_loss, "entropy": entropy}
        if net is self.agent and self.imagines:
            distill = distillation_loss(logits.detach(), self.agent.rollout_policy(grid)[0])
            loss = loss + c.distill_weight * distill
            terms["distill"] = distill
        opt.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        if c.max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(net.parameters(), c.max_grad_norm)
        opt.step()
        logs = {f"train/loss/{prefix}{k}": v.detach() for k, v in terms.items()}
        logs[f"train/{prefix}value"] = values.detach().mean()
        self.log_dict(logs, on_step=True, on_epoch=False, batch_size=n * t)

    def acted_imagination(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The imagined rooms and rewards ``[N * T, ...]`` the agent acted on for the rollout's
        observations ``obs [N, T, D]`` (kept by the acting policy, one entry per policy step),
        so the update differentiates the very forward pass that chose each action, as an
        A3C worker does; ``None`` (imagine anew) where they are not all kept, e.g. the first
        rollout after a resume."""
        kept, self.imagined = self.imagined, []
        t = obs.shape[1]
        if len(kept) < t:
            return None
        kept = kept[-t:]
        if not all(torch.equal(k[0], obs[:, i].to(k[0].device)) for i, k in enumerate(kept)):
            return None
        frames = torch.stack([k[1] for k in kept], 1).flatten(0, 1)
        rewards = torch.stack([k[2] for k in kept], 1).flatten(0, 1)
        return frames, rewards

    def env_model_terms(self, batch: TensorDictBase) -> tuple[torch.Tensor, torch.Tensor]:
        """The env model on transitions ``[B, 2]``: the training loss (the episodes not held
        out) and the held-out counts ``[5]``: transitions, cells right, whole rooms right,
        changed cells right, changed cells, rewards right."""
        c = self.cfg
        now = batch[:, 0]
        grid = self.grid(now.get(keys.OBSERVATION))
        target = self.grid(batch[:, 1].get(keys.OBSERVATION)).argmax(1)  # [B, H, W]
        reward_class = self.env_model.reward_class(now.get(keys.REWARD).float())
        frame, reward = self.env_model(grid, now.get(keys.ACTION).float())
        held = (now.get(EPISODE) % c.holdout == 0).float().reshape(-1)
        train = 1.0 - held
        per = (F.cross_entropy(frame, target, reduction="none").mean((-2, -1))
               + c.reward_weight * F.cross_entropy(reward, reward_class, reduction="none"))
        loss = (per * train).sum() / train.sum().clamp(min=1.0)
        with torch.no_grad():
            right = (frame.argmax(1) == target).float()
            changed = (target != grid.argmax(1)).float()
            counts = torch.stack([
                held.sum(), (right.mean((-2, -1)) * held).sum(), (right.amin((-2, -1)) * held).sum(),
                (right * changed * held[:, None, None]).sum(), (changed * held[:, None, None]).sum(),
                ((reward.argmax(-1) == reward_class).float() * held).sum()])
        return loss, counts

    def fit_env_model(self, batch: TensorDictBase, opt) -> None:
        loss, counts = self.env_model_terms(batch)
        opt.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        opt.step()
        # held-out accuracies over the recent updates (counts decayed by 0.99 per update)
        self.heldout.mul_(0.99).add_(counts)
        seen = self.heldout[0].clamp(min=1e-6)
        self.log_dict({"train/loss/envmodel": loss.detach(),
                       "envmodel/accuracy": self.heldout[1] / seen,
                       "envmodel/frame_accuracy": self.heldout[2] / seen,
                       "envmodel/changed_cell_accuracy": self.heldout[3] / self.heldout[4].clamp(min=1e-6),
                       "envmodel/reward_accuracy": self.heldout[5] / seen},
                      on_step=True, on_epoch=False, batch_size=batch.batch_size[0])

    # --- videos --------------------------------------------------------------------------
    def eval_videos(self, batch: TensorDictBase) -> dict[str, np.ndarray]:
        """``imagination`` (I2A and copy model, in the agent's own stage): from the first room
        of the latest rollout's first env, side by side per step, the real rooms, the rooms
        the model imagines under the real actions (open loop), and the agent's imagined
        rollout of every action (action ``a`` first, then the rollout policy's)."""
        if not self.imagines or self.phase != TRAIN or batch.ndim != 2:
            return {}
        row = batch[0]
        steps = min(self.cfg.rollout_length, row.batch_size[0])
        obs = self.grid(row.get(keys.OBSERVATION)[:steps].to(self.device))
        nxt = self.grid(row.get((keys.NEXT, keys.OBSERVATION))[:steps].to(self.device))
        actions = row.get(keys.ACTION)[:steps].float().to(self.device)
        ended = (row.get(keys.TERMINATED) | row.get(keys.TRUNCATED)).reshape(-1)[:steps]
        if bool(ended.any()):  # the real rooms of one episode only
            steps = int(ended.float().argmax()) + 1
        model = self.agent.core.model
        state, open_loop = obs[:1], []
        for t in range(steps):
            state, _ = model.step(state, actions[t:t + 1])
            open_loop.append(state[0])
        frames, _ = self.agent.core(obs[:1])  # [1, A, L, C, H, W]
        panels = [nxt[:steps], torch.stack(open_loop), *frames[0]]
        length = max(p.shape[0] for p in panels)
        return {"imagination": video_of_rooms(panels, length)}


def video_of_rooms(panels: list[torch.Tensor], length: int, hold: int = 8) -> np.ndarray:
    """``uint8 [length * hold, 8 H, ..., 3]``: the one-hot rooms ``[T_i, C, H, W]`` of each
    panel drawn side by side (a gap of 2 black columns between panels); a panel shorter than
    ``length`` holds its last room; each step is held ``hold`` frames (videos play at 30
    frames per second)."""
    from wmlab.envs.sokoban import draw

    out = []
    for t in range(length):
        row = []
        for panel in panels:
            room = panel[min(t, panel.shape[0] - 1)].argmax(0).cpu().numpy()
            image = draw(room)
            row += [image, np.zeros((image.shape[0], 2, 3), np.uint8)]
        out.append(np.concatenate(row[:-1], 1))
    return np.repeat(np.stack(out), hold, 0)


def distillation_loss(agent_logits: torch.Tensor, rollout_logits: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the rollout policy's distribution to the agent's (``agent_logits``
    given detached): ``-sum_a pi(a) log pi_hat(a)``, averaged over the batch."""
    return -(agent_logits.softmax(-1) * rollout_logits.log_softmax(-1)).sum(-1).mean()


class I2APolicy(Policy):
    """Acts with the current stage's network (the standard agent while it pretrains and
    collects, then the agent): a sampled action, or the most likely one."""

    def __init__(self, method: I2A, sample: bool, keep: bool = False):
        super().__init__(method.device)
        self.method, self.sample, self.keep = method, sample, keep

    def act(self, obs: torch.Tensor, is_init: torch.Tensor) -> torch.Tensor:
        m = self.method
        obs = obs.to(m.device)
        grid = m.grid(obs)
        net = m.acting_net()
        if net is m.agent and m.imagines:
            imagined = m.agent.core(grid)
            if self.keep:  # the training policy: its update reuses what it acted on
                m.imagined = [*m.imagined[-(m.cfg.unroll + 1):], (obs, *imagined)]
            logits, _ = net(grid, imagined)
        else:
            logits, _ = net(grid)
        if self.sample:
            pick = torch.distributions.Categorical(logits=logits).sample()
        else:
            pick = logits.argmax(-1)
        return F.one_hot(pick, logits.shape[-1]).float()
