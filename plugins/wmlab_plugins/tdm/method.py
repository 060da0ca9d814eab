"""TDM: temporal difference models, and the DDPG + HER baseline of the same paper."""

from __future__ import annotations

import torch
from tensordict import TensorDictBase

from wmlab import keys
from wmlab.api import DataSpec, EnvSpecs, Method, Policy
from wmlab.errors import ConfigError, check_at_least, check_choices
from wmlab.samplers import HORIZON, GoalRelabel

from . import losses
from .config import HER_REWARDS, VARIANTS, TDMConfig
from .networks import ActorCritic, goal_input

ACHIEVED, DESIRED = "achieved_goal", "desired_goal"


class TDM(Method):
    """Temporal difference models (Pong, Gu, Dalal, Levine 2018, arXiv 1802.09081; code:
    rail-berkeley/rlkit v0.1.2, ``rlkit/torch/tdm``).

    A goal- and horizon-conditioned Q(s, a, g, tau) = -|f(s, a, g, tau) - g|, one entry per
    goal dimension, learned from relabelled transitions (75% of goals from later achieved
    goals of the same episode, tau uniform in 0..max_tau): at tau = 0 the target is minus
    the scaled distance of the next achieved goal to g, at tau > 0 the target networks' value
    at tau - 1 with the target policy's action (discount 1, no reward on the way); Huber
    loss, Polyak targets. A deterministic policy pi(s, g, tau) maximises the summed Q
    (DDPG). While acting, tau counts down from max_tau, starting again after 0.

    ``method.variant=her`` is the paper's DDPG + HER baseline on the same networks, sampler
    and train ratio: a scalar Q(s, a, g) (tau always 0) on the goal reward with a discount.

    Departures from the authors' code (see also ``config.py``): Gaussian instead of
    Ornstein-Uhlenbeck exploration noise; a uniformly random prefill before the first update;
    no input normalisation (rlkit's optional ``TdmNormalizer``), tau scaled by max_tau as an
    input, and the goal's offset from the achieved goal as an input beside both; no penalty
    on the policy's pre-activations; the HER baseline's reward is documented in ``config.py``
    (``her_reward``). The small-scale preset ``tdm-goal-reacher-small`` also uses faster
    learning rates and fewer updates per step than the paper (see that file)."""

    Config = TDMConfig
    example_env = "goal:reacher"
    presets = {
        # tiny nets and few updates: seconds on a CPU (the core's debug budget, 400 env steps)
        "debug": {"method": {"hidden": 16, "batch_size": 16, "max_tau": 3, "updates_per_step": 1.0,
                             "prefill_steps": 100}},
    }
    env_presets = {
        # the 7-DoF reacher example's settings [max tau 10, reward scale 100, 25 updates per
        # step] with fewer updates per step (2) to fit CPU budgets; Reacher-v5: 50 steps
        "goal:reacher": {"env": {"action_repeat": 1}, "run": {"steps": 50_000},
                         "eval": {"every": 2500, "episodes": 20},
                         "method": {"max_tau": 10, "reward_scale": 100.0, "updates_per_step": 2.0}},
        # the same arm's example settings for the pusher (the paper's pusher is not among
        # the examples): max tau 10, reward scale 100, 25 updates per step; 100-step episodes
        "goal:pusher": {"env": {"action_repeat": 1}, "run": {"steps": 200_000},
                        "eval": {"every": 5000, "episodes": 20},
                        "method": {"max_tau": 10, "reward_scale": 100.0}},
        # the examples' cheetah settings [max tau 10, reward scale 10, 25 updates per step]
        "goal:cheetah-velocity": {"env": {"action_repeat": 1}, "run": {"steps": 100_000},
                                  "eval": {"every": 5000, "episodes": 5}},
        # not in the paper: a navigation task, given the ant-position example's settings
        # [max tau 49, reward scale 10, 5 updates per step]; 300-step episodes
        "goal:point-maze": {"env": {"action_repeat": 1}, "run": {"steps": 200_000},
                            "eval": {"every": 5000, "episodes": 20},
                            "method": {"max_tau": 49, "updates_per_step": 5.0}},
    }

    def __init__(self, cfg, specs: EnvSpecs):
        super().__init__(cfg, specs)
        missing = [k for k in (ACHIEVED, DESIRED) if k not in specs.extra_obs]
        if missing:
            raise ConfigError(f"tdm needs a goal-conditioned env with observation entries "
                              f"{ACHIEVED} and {DESIRED} (e.g. --env goal:reacher); {specs.name} "
                              f"lacks {', '.join(missing)}")
        if specs.extra_obs[ACHIEVED].shape != specs.extra_obs[DESIRED].shape:
            raise ConfigError(f"tdm needs {ACHIEVED} and {DESIRED} of one shape; {specs.name}'s: "
                              f"{specs.extra_obs[ACHIEVED].shape}, {specs.extra_obs[DESIRED].shape}")
        check_choices(cfg, {"variant": VARIANTS, "her_reward": HER_REWARDS})
        if cfg.max_tau < 0:
            raise ConfigError(f"method.max_tau={cfg.max_tau} must be >= 0")
        check_at_least(cfg, ["hidden", "batch_size"])
        if specs.discrete:
            raise ConfigError("tdm needs continuous actions; this env's actions are discrete")
        self.automatic_optimization = False
        self.vectorized = cfg.variant == "tdm"
        self.max_tau = cfg.max_tau if self.vectorized else 0
        goal_dim = specs.extra_obs[DESIRED].shape[-1]
        in_dim = specs.obs_dim + 3 * goal_dim + 1
        self.nets = ActorCritic(in_dim=in_dim, action_dim=specs.action_dim, goal_dim=goal_dim,
                                hidden=cfg.hidden, layers=cfg.layers, vectorized=self.vectorized)
        self.register_buffer("action_low", specs.action_low.float().reshape(-1), persistent=False)
        self.register_buffer("action_high", specs.action_high.float().reshape(-1), persistent=False)

    # --- contract -----------------------------------------------------------------------
    def data_spec(self) -> DataSpec:
        c = self.cfg
        return DataSpec(batch_size=c.batch_size, sequence_length=2, train_ratio=c.updates_per_step,
                        prefill_steps=c.prefill_steps,
                        sampler=GoalRelabel(horizon_max=self.max_tau, future=c.future))

    def make_policy(self, explore: bool) -> Policy:
        return CountdownPolicy(self, explore=explore)

    def configure_optimizers(self):
        return [torch.optim.Adam(self.nets.q.parameters(), lr=self.cfg.q_lr),
                torch.optim.Adam(self.nets.pi.parameters(), lr=self.cfg.policy_lr)]

    # --- training -----------------------------------------------------------------------
    def training_step(self, batch: TensorDictBase, batch_idx: int) -> None:
        q_opt, pi_opt = self.optimizers()
        now, nxt = batch[:, 0], batch[:, 1]  # rows t and t + 1 of [B, 2] transitions
        goal = now.get(DESIRED)  # [B, G], relabelled (the same on both rows)
        tau = now.get(HORIZON)  # [B]
        x = self.inputs(now, goal, tau)
        action = self.from_env_action(now.get(keys.ACTION))

        # critic: Huber loss to the TDM (or HER) target
        with torch.no_grad():
            x_next = self.inputs(nxt, goal, (tau - 1).clamp(min=0))
            next_q = self.nets.q_target(x_next, self.nets.pi_target(x_next), goal)
            target = self.target(nxt.get(ACHIEVED), goal, next_q, tau,
                                 now.get(keys.TERMINATED).reshape(-1))
        q = self.nets.q(x, action, goal)
        critic = losses.critic_loss(q, target, delta=self.cfg.huber_delta)
        q_opt.zero_grad(set_to_none=True)
        self.manual_backward(critic)
        q_opt.step()

        # actor: maximise the summed Q of the policy's action (DDPG)
        actor = losses.actor_loss(self.nets.q(x, self.nets.pi(x), goal))
        pi_opt.zero_grad(set_to_none=True)
        self.manual_backward(actor)
        pi_opt.step()

        # targets: Polyak averaging after every update
        self.nets.update_targets(self.cfg.target_rate)
        self.log_dict({"train/loss/critic": critic.detach(), "train/loss/actor": actor.detach(),
                       "train/q": q.detach().sum(-1).mean()},
                      on_step=True, on_epoch=False, batch_size=q.shape[0])

    def target(self, next_achieved, goal, next_q, tau, terminated) -> torch.Tensor:
        """The TDM target ``[B, G]`` (vector reward at tau = 0, else next_q at tau - 1), or
        the HER one ``[B, 1]``."""
        c = self.cfg
        if self.vectorized:
            reward = losses.goal_reward(next_achieved, goal, scale=c.reward_scale, vectorized=True)
            return losses.tdm_target(reward, next_q, tau, terminated, discount=c.discount)
        if c.her_reward == "sparse":
            reward = losses.sparse_goal_reward(next_achieved, goal, tolerance=c.her_tolerance)
        else:
            reward = losses.goal_reward(next_achieved, goal, scale=c.reward_scale, vectorized=False)
        return losses.her_target(reward, next_q, terminated, discount=c.her_discount)

    # --- acting -------------------------------------------------------------------------
    def inputs(self, obs: TensorDictBase, goal: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
        """Network input ``[B, D + 3G + 1]`` from observation entries ``obs [B]``."""
        return goal_input(obs.get(keys.OBSERVATION).float(), obs.get(ACHIEVED).float(),
                          goal.float(), tau, self.max_tau)

    def act(self, obs: TensorDictBase, tau: torch.Tensor, *, noise: float) -> torch.Tensor:
        """Env action ``[B, A]`` of the policy at horizons ``tau [B]``, with Gaussian noise."""
        a = self.nets.pi(self.inputs(obs, obs.get(DESIRED), tau))
        if noise > 0:
            a = (a + noise * torch.randn_like(a)).clamp(-1.0, 1.0)
        return self.to_env_action(a)

    def to_env_action(self, a: torch.Tensor) -> torch.Tensor:
        return self.action_low + (a + 1.0) * 0.5 * (self.action_high - self.action_low)

    def from_env_action(self, a: torch.Tensor) -> torch.Tensor:
        return 2.0 * (a - self.action_low) / (self.action_high - self.action_low) - 1.0


class CountdownPolicy(Policy):
    """Acts with the method's current policy at a horizon tau kept per env: max_tau at an
    episode start, one less every step, max_tau again after 0 [rlkit ``_handle_step``]."""

    def __init__(self, method: TDM, *, explore: bool):
        super().__init__(device=method.device)
        object.__setattr__(self, "_method", method)  # a reference, not a submodule
        self.noise = method.cfg.explore_noise if explore else 0.0
        self.tau: torch.Tensor | None = None  # [B] long
        self.obs_keys = (keys.OBSERVATION, ACHIEVED, DESIRED)

    def act_td(self, obs: TensorDictBase, is_init: torch.Tensor) -> torch.Tensor:
        m = self._method
        top = torch.full(is_init.shape, m.max_tau, dtype=torch.long, device=is_init.device)
        if self.tau is None or self.tau.shape != is_init.shape:
            self.tau = top
        self.tau = torch.where(is_init.bool() | (self.tau < 0), top, self.tau)
        action = m.act(obs.to(m.device), self.tau.to(m.device), noise=self.noise)
        self.tau = self.tau - 1
        return action
