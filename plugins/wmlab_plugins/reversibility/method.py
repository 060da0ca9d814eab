"""Reversibility-aware RL (Grinsztajn et al. 2021): RAE and RAC over PPO or a random agent."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from tensordict import TensorDictBase

from wmlab import keys
from wmlab.api import DataSpec, EnvSpecs, Method, Policy, Stage
from wmlab.errors import ConfigError, check_at_least, check_choices
from wmlab.returns import gae
from wmlab.samplers import FIRST, LATER, SECOND, Pairs

from .config import AGENTS, MODES, PSI_FORMS, ReversibilityConfig
from .losses import (filter_actions, phi_terms, ppo_terms, precedence_terms, rae_penalty,
                     rollout_pairs, shaped_reward)
from .networks import ActionReversibility, ActorCritic, Precedence

#: stage names; the first three exist for ``mode=rac`` only
RANDOM, PSI, PHI, CONTROL = "random", "psi", "phi", "control"


class Reversibility(Method):
    """Reversibility-aware RL (Grinsztajn, Ferret, Pietquin, Preux, Geist 2021, "There is no
    turning back", arXiv 2106.04480), on discrete actions and state observations.

    A precedence estimator psi(s, s') is a binary classifier of whether ``s'`` came after
    ``s`` in a trajectory, trained on pairs of one episode ``d`` policy steps apart
    (``min_distance <= d <= max_distance``, random order, label 1[t' > t], cross-entropy).
    A transition ``s -> s'`` with psi(s, s') near 1 is one the agent is not seen to undo.

    ``method.mode=rac`` (reversibility-aware control) runs four stages:

    1. ``random``: ``random_steps`` env steps of uniformly random actions, stored;
    2. ``psi``: ``psi_updates`` offline updates of psi on pairs of the stored episodes (the
       core's :class:`~wmlab.samplers.Pairs` sampler); ``psi/accuracy`` on each batch before
       its update;
    3. ``phi``: ``phi_updates`` offline updates of phi(s, a), one output per action, fitted
       (cross-entropy with a soft target) to sigmoid(psi(s, s')) of stored transitions;
       ``phi/filtered_share`` is the share of the stored random actions the filter replaces;
    4. ``control``: the base agent (PPO on rollouts ``[run.envs, unroll]``, or uniformly
       random actions) acts; every action with phi(s, a) > ``threshold`` is replaced by the
       action of lowest phi. ``rac/filtered_share`` logs the share replaced while collecting.

    ``method.mode=rae`` (reversibility-aware exploration) runs PPO alone, training psi every
    ``psi_every`` env steps (``psi_updates_each`` updates of ``psi_batch`` pairs drawn inside
    the latest rollout) and lowering each reward by ``penalty * max(0, psi(s_t, s_t+1) -
    threshold)`` (``reward_free``: the penalty is the whole reward). ``method.mode=none`` is
    the base agent alone.

    Departures from the paper and the authors' code: see ``config.py``."""

    Config = ReversibilityConfig
    example_env = "gym:CartPole-v1"
    observations = ("state",)
    presets = {
        # tiny nets, a few hundred env steps per stage: seconds on a CPU
        # (RAC: 200 random env steps, then 4 rollouts of 2 x 25: 400 env steps in all)
        "debug": {"method": {"psi_hidden": 16, "phi_hidden": 16, "hidden": 16, "unroll": 25,
                             "epochs": 2, "minibatch": 25, "random_steps": 200, "psi_updates": 5,
                             "phi_updates": 5, "max_distance": 20, "psi_every": 50},
                  "run": {"envs": 2, "steps": 200}},
        # RAC lets a uniformly random policy balance CartPole [paper Sec. 5.2] (wmlab's check of
        # the filter alone; rac_cartpole.py filters PPO on CartPole-v0's 200-step episodes).
        # psi in the potential form: like the authors' psi (each observation encoded alone, a
        # linear head on the two codes) it cannot compare the two states, so it cannot read a
        # step's order off CartPole's dynamics (see psi_form)
        "cartpole-rac": {"method": {"mode": "rac", "agent": "random", "random_steps": 20_000,
                                    "psi_updates": 3000, "phi_updates": 3000,
                                    "psi_form": "potential"},
                         "run": {"envs": 1, "steps": 20_000},
                         "eval": {"every": 10_000, "episodes": 20}},
        # reward-free RAE: PPO learns to balance CartPole from the penalty alone [paper Sec. 5.1]
        "cartpole-rae": {"method": {"mode": "rae", "agent": "ppo", "reward_free": True,
                                    "psi_form": "potential", "psi_bound": 10.0, "penalty": 1.0,
                                    "unroll": 128, "max_distance": 128},
                         "run": {"envs": 4, "steps": 60_000},
                         "eval": {"every": 10_000, "episodes": 10}},
        # Turf with RAC over PPO [paper Sec. 5.3; rac_turf.py: entropy weight 0.05; 50,000
        # random env steps as in the authors' README]: w 0.1 for RAE on this task
        "turf": {"method": {"mode": "rac", "agent": "ppo", "penalty": 0.1, "random_steps": 50_000,
                            "psi_updates": 3000, "phi_updates": 3000, "unroll": 128,
                            "entropy_weight": 0.05},
                 "run": {"envs": 4, "steps": 100_000},
                 "eval": {"every": 10_000, "episodes": 20}},
    }
    env_presets = {
        # one gymnasium step per policy step, CartPole-v1's own 500-step limit (the authors'
        # scripts: CartPole-v0, 200 steps)
        "gym:CartPole-*": {"env": {"action_repeat": 1, "episode_steps": 500}},
        "gridworld:turf": {"method": {"penalty": 0.1}},  # rae_turf.py --wir 0.1
    }

    def __init__(self, cfg, specs: EnvSpecs):
        super().__init__(cfg, specs)
        self.check(cfg, specs)
        self.automatic_optimization = False
        d, n = specs.obs_dim, specs.action_dim
        self.psi = Precedence(d, cfg.psi_hidden, cfg.psi_form, cfg.psi_bound)
        self.phi = ActionReversibility(d, n, cfg.phi_hidden) if cfg.mode == "rac" else None
        self.agent = ActorCritic(d, n, cfg.hidden) if cfg.agent == "ppo" else None
        # updates of psi and of phi so far: RAC's filter needs both (checked at each stage)
        self.register_buffer("fitted", torch.zeros(2), persistent=True)
        self.phase = self.stages()[0].name
        self.acted = torch.zeros(())
        self.replaced = torch.zeros(())

    @staticmethod
    def check(cfg, specs: EnvSpecs) -> None:
        """Reject settings and envs the method cannot run, each with one line."""
        check_choices(cfg, {"mode": MODES, "agent": AGENTS, "psi_form": PSI_FORMS})
        if not 0.0 < float(cfg.threshold) < 1.0:
            raise ConfigError(f"method.threshold={cfg.threshold} must lie strictly between 0 and 1 "
                              f"(it is compared with probabilities)")
        if cfg.mode == "rae" and cfg.agent != "ppo":
            raise ConfigError("method.mode=rae shapes the reward of a learning agent: use method.agent=ppo")
        if cfg.reward_free and cfg.mode != "rae":
            raise ConfigError("method.reward_free=true is RAE's reward-free mode: use method.mode=rae")
        if float(cfg.psi_bound) < 0:
            raise ConfigError(f"method.psi_bound={cfg.psi_bound} must be >= 0 (0: f not squashed)")
        if float(cfg.penalty) < 0:
            raise ConfigError(f"method.penalty={cfg.penalty} must be >= 0")
        check_at_least(cfg, ["min_distance", "psi_hidden", "psi_batch", "psi_every", "psi_updates_each",
                             "phi_hidden", "phi_batch", "hidden", "unroll", "epochs", "minibatch"])
        if cfg.max_distance < cfg.min_distance:
            raise ConfigError(f"method.max_distance={cfg.max_distance} must be >= method.min_distance="
                              f"{cfg.min_distance}")
        if cfg.mode == "rac" and min(cfg.random_steps, cfg.psi_updates, cfg.phi_updates) < 1:
            raise ConfigError("method.random_steps, method.psi_updates and method.phi_updates must be "
                              ">= 1 with method.mode=rac")
        if not specs.discrete:
            raise ConfigError(f"reversibility needs discrete actions (RAC picks the most reversible "
                              f"one); {specs.name} has continuous actions")
        if specs.obs_kind != "state" or len(specs.obs_shape) != 1 or specs.extra_obs:
            raise ConfigError(f"reversibility pairs state vectors; {specs.name} observes "
                              f"{specs.obs_kind} {tuple(specs.obs_shape)}"
                              f"{' with ' + ', '.join(specs.extra_obs) if specs.extra_obs else ''} "
                              f"(use env.obs=state)")
        if specs.episode_policy_steps <= cfg.min_distance:
            raise ConfigError(f"{specs.name}'s episodes last {specs.episode_policy_steps} policy steps: "
                              f"no two observations are method.min_distance={cfg.min_distance} apart")

    # --- contract -----------------------------------------------------------------------
    def data_spec(self) -> DataSpec:
        """PPO's rollouts; the replay holds RAC's random episodes (with their final rows)."""
        c = self.cfg
        random_rows = c.random_steps // self.specs.action_repeat if c.mode == "rac" else 0
        return DataSpec(batch_size=1, sequence_length=c.unroll, on_policy=True, prefill_steps=0,
                        capacity=random_rows + random_rows // 2 + 1000 if random_rows else None)

    def stages(self) -> list[Stage]:
        c = self.cfg
        if c.agent == "ppo":
            control = Stage(CONTROL)
        else:  # nothing to train: collect (stored, as any collect-only stage) with the filter on
            control = Stage(CONTROL, collect="policy", train=False,
                            data=DataSpec(batch_size=1, prefill_steps=0))
        if c.mode != "rac":
            return [control]
        return [Stage(RANDOM, env_steps=c.random_steps, collect="random", train=False,
                      data=DataSpec(batch_size=1, prefill_steps=0)),
                Stage(PSI, env_steps=0, updates=c.psi_updates,
                      data=DataSpec(batch_size=c.psi_batch, prefill_steps=0,
                                    sampler=Pairs(c.min_distance, c.max_distance))),
                Stage(PHI, env_steps=0, updates=c.phi_updates,
                      data=DataSpec(batch_size=c.phi_batch, sequence_length=2, prefill_steps=0)),
                control]

    def on_stage_start(self, stage: Stage) -> None:
        self.phase = stage.name
        if self.cfg.mode != "rac" or stage.name == RANDOM:
            return
        psi_updates, phi_updates = (int(v) for v in self.fitted.tolist())
        if stage.name in (PHI, CONTROL) and psi_updates == 0:
            raise ConfigError(f"reversibility: stage {stage.name} needs a trained precedence estimator, "
                              f"and this run has none (resumed at the wrong stage?); start RAC anew")
        if stage.name == CONTROL and phi_updates == 0:
            raise ConfigError("reversibility: the RAC filter needs a trained phi, and this run has none "
                              "(resumed at the wrong stage?); start RAC anew")
        if stage.name in (PHI, CONTROL):
            self.psi.requires_grad_(False)  # psi is the target now

    def make_policy(self, explore: bool) -> Policy:
        return ReversibilityPolicy(self, sample=explore or self.cfg.eval_sample, count=explore)

    def configure_optimizers(self):
        c = self.cfg
        opts = [torch.optim.Adam(self.psi.parameters(), lr=c.psi_lr)]
        if self.phi is not None:
            opts.append(torch.optim.Adam(self.phi.parameters(), lr=c.phi_lr))
        if self.agent is not None:
            opts.append(torch.optim.Adam(self.agent.parameters(), lr=c.lr, eps=1e-5))
        return opts

    # --- acting -------------------------------------------------------------------------
    @property
    def filtering(self) -> bool:
        """Whether RAC's filter acts now (in the control stage, once phi is trained)."""
        return self.phi is not None and self.phase == CONTROL

    def act(self, obs: torch.Tensor, sample: bool, count: bool = False) -> torch.Tensor:
        """Action indices ``[B]`` for observations ``[B, D]``: the base agent's, filtered
        (``count``: add the actions and those replaced to ``rac/filtered_share``)."""
        n = self.specs.action_dim
        if self.agent is None:
            pick = torch.randint(n, obs.shape[:1], device=obs.device)
        else:
            logits = self.agent.actor(obs)
            pick = torch.distributions.Categorical(logits=logits).sample() if sample else logits.argmax(-1)
        if self.filtering:
            pick, replaced = filter_actions(torch.sigmoid(self.phi(obs)), pick, self.cfg.threshold)
            if count:
                self.acted = self.acted + replaced.numel()
                self.replaced = self.replaced + replaced.sum().cpu()
        return pick

    # --- training -----------------------------------------------------------------------
    def training_step(self, batch: TensorDictBase, batch_idx: int) -> None:
        opts = self.optimizers()
        opts = opts if isinstance(opts, list) else [opts]
        if self.phase == PSI:
            self.fit_psi(batch, opts[0])
        elif self.phase == PHI:
            self.fit_phi(batch, opts[1])
        else:
            self.ppo(batch, opts[-1], opts[0])

    def psi_step(self, first: torch.Tensor, second: torch.Tensor, later: torch.Tensor, opt,
                 weight: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """One psi update on pairs ``[B, D]``; returns the loss and the accuracy before it."""
        loss, accuracy = precedence_terms(self.psi(first, second), later, weight)
        opt.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        opt.step()
        self.fitted[0] += 1
        return loss.detach(), accuracy.detach()

    def fit_psi(self, batch: TensorDictBase, opt) -> None:
        """RAC: one offline psi update on a batch of the Pairs sampler."""
        first, second = (batch.get(k).get(keys.OBSERVATION).float() for k in (FIRST, SECOND))
        loss, accuracy = self.psi_step(first, second, batch.get(LATER), opt)
        self.log_dict({"train/loss/psi": loss, "psi/accuracy": accuracy},
                      on_step=True, on_epoch=False, batch_size=first.shape[0])

    def fit_phi(self, batch: TensorDictBase, opt) -> None:
        """RAC: one offline phi update on stored transitions ``[B, 2]`` (rows t, t + 1)."""
        obs = batch.get(keys.OBSERVATION).float()
        with torch.no_grad():
            target = torch.sigmoid(self.psi(obs[:, 0], obs[:, 1]))  # [B]
        logits = self.phi(obs[:, 0])
        action = batch.get(keys.ACTION)[:, 0].float()
        loss = phi_terms(logits, action, target)
        opt.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        opt.step()
        self.fitted[1] += 1
        with torch.no_grad():
            _, replaced = filter_actions(torch.sigmoid(logits), action.argmax(-1), self.cfg.threshold)
        self.log_dict({"train/loss/phi": loss.detach(), "phi/filtered_share": replaced.float().mean(),
                       "phi/target": target.mean()},
                      on_step=True, on_epoch=False, batch_size=obs.shape[0])

    def rae_reward(self, batch: TensorDictBase, psi_opt) -> tuple[torch.Tensor, dict]:
        """RAE: train psi on pairs of this rollout as often as ``psi_every`` asks, then the
        shaped reward ``[N, T]`` and what to log."""
        c = self.cfg
        n, t = batch.batch_size
        after = batch.get((keys.NEXT, keys.OBSERVATION)).float()  # [N, T, D]: o_{t+1}
        frames = n * t * self.specs.action_repeat  # this rollout's env steps
        due = self.progress.env_steps // c.psi_every - max(0, self.progress.env_steps - frames) // c.psi_every
        logs = {}
        episode = batch.get(keys.IS_INIT).reshape(n, t).long().cumsum(1)
        for _ in range(due * c.psi_updates_each):
            pairs = rollout_pairs(episode, c.psi_batch, c.min_distance, c.max_distance)
            if pairs is None:
                break
            env, first, second, later, valid = pairs
            # the states after steps first and second (so final frames take part)
            loss, accuracy = self.psi_step(after[env, first], after[env, second], later, psi_opt, valid)
            logs = {"train/loss/psi": loss, "psi/accuracy": accuracy}
        with torch.no_grad():
            psi_prob = torch.sigmoid(self.psi(batch.get(keys.OBSERVATION).float(), after))  # [N, T]
        penalty = rae_penalty(psi_prob, c.threshold, c.penalty)
        reward = batch.get(keys.REWARD).reshape(n, t).float()
        logs |= {"rae/penalty": penalty.mean(), "rae/penalised_share": (psi_prob > c.threshold).float().mean()}
        return shaped_reward(reward, penalty, c.reward_free), logs

    def ppo(self, batch: TensorDictBase, opt, psi_opt) -> None:
        """One PPO update on a rollout ``[N, T]``: GAE, then ``epochs`` passes over shuffled
        minibatches of the clipped surrogate, value regression and entropy bonus."""
        c = self.cfg
        n, t = batch.batch_size
        obs = batch.get(keys.OBSERVATION).float()  # [N, T, D]
        if c.mode == "rae":
            reward, logs = self.rae_reward(batch, psi_opt)
        else:
            reward, logs = batch.get(keys.REWARD).reshape(n, t).float(), {}
        flags = [batch.get(k).reshape(n, t).bool() for k in (keys.TERMINATED, keys.DONE)]
        action = batch.get(keys.ACTION).float().reshape(n * t, -1)
        with torch.no_grad():
            logits, value = self.agent(obs)
            next_value = self.agent.critic(batch.get((keys.NEXT, keys.OBSERVATION)).float()).squeeze(-1)
            old_logp = (logits.log_softmax(-1).reshape(n * t, -1) * action).sum(-1)
            advantage = gae(reward.T, value.T, next_value.T, flags[0].T, flags[1].T,
                            c.discount, c.gae_lambda).T  # [N, T]
            returns = (advantage + value).reshape(-1)
            advantage = advantage.reshape(-1)
        flat = obs.reshape(n * t, -1)
        for _ in range(c.epochs):
            for idx in torch.randperm(n * t, device=flat.device).split(c.minibatch):
                adv = advantage[idx]
                adv = (adv - adv.mean()) / (adv.std(unbiased=False) + 1e-8)
                new_logits, new_value = self.agent(flat[idx])
                terms = ppo_terms(new_logits, new_value, action[idx], old_logp[idx], adv, returns[idx], c.clip)
                loss = terms["policy"] + c.value_weight * terms["value"] - c.entropy_weight * terms["entropy"]
                opt.zero_grad(set_to_none=True)
                self.manual_backward(loss)
                if c.max_grad_norm > 0:
                    torch.nn.utils.clip_grad_norm_(self.agent.parameters(), c.max_grad_norm)
                opt.step()
        logs |= {f"train/loss/{k}": terms[k].detach() for k in ("policy", "value", "entropy")}
        logs |= {"ppo/clip_fraction": terms["clip_fraction"], "ppo/approx_kl": terms["approx_kl"],
                 "train/value": value.mean(), "train/reward": reward.mean()}
        if self.filtering:
            logs["rac/filtered_share"] = self.replaced / self.acted.clamp(min=1.0)
            self.acted, self.replaced = torch.zeros(()), torch.zeros(())
        self.log_dict(logs, on_step=True, on_epoch=False, batch_size=n * t)


class ReversibilityPolicy(Policy):
    """The base agent (PPO's sampled or most likely action, or a uniformly random one) with
    RAC's filter in the control stage."""

    def __init__(self, method: Reversibility, sample: bool, count: bool = False):
        super().__init__(method.device)
        self.method, self.sample, self.count = method, sample, count

    def act(self, obs: torch.Tensor, is_init: torch.Tensor) -> torch.Tensor:
        pick = self.method.act(obs.float().to(self.method.device), self.sample, self.count)
        return F.one_hot(pick, self.method.specs.action_dim).float()
