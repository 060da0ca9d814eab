"""TD-MPC: temporal difference learning for model predictive control."""

from __future__ import annotations

import torch
from tensordict import TensorDictBase

from wmlab import keys
from wmlab.api import DataSpec, EnvSpecs, Method, Policy
from wmlab.errors import ConfigError, check_at_least
from wmlab.nets import preprocess_obs
from wmlab.planners import MPPI, warm_start

from . import losses
from .config import TDMPCConfig
from .networks import TOLD, random_shift


def linear_schedule(start: float, end: float, duration: int, step: int) -> float:
    """``start`` at step 0, ``end`` from ``duration`` on, linear in between."""
    mix = min(max(step / max(duration, 1), 0.0), 1.0)
    return (1.0 - mix) * start + mix * end


class TDMPC(Method):
    """TD-MPC (Hansen, Wang, Su 2022, arXiv 2203.04955; code: nicklashansen/tdmpc).

    A TOLD model (encoder, latent dynamics, reward, two Qs, policy prior) learned from
    H-step rollouts with latent consistency, reward and TD losses; actions come from MPPI
    over the latent model with a terminal Q, policy-prior samples and warm starts.

    Departures from the authors' code (see also ``config.py``):
      * uniform replay instead of prioritized replay;
      * no burst of ``seed_steps`` updates after seeding (the core keeps 1 update/step);
      * schedules read the current step at every call (the authors' move per episode);
      * pixels: single 64x64 frames, no frame stack of 3 at 84x84;
      * transitions after an episode start inside a sampled sequence are masked out;
      * env action bounds other than [-1, 1] are mapped to and from the model's [-1, 1].

    Subclass hooks (TD-MPC2): ``build_model``, ``build_planner``, ``model_loss``,
    ``policy_objective``, ``td_target``, ``estimate_value``, ``policy_prior``,
    ``update_targets``.
    """

    Config = TDMPCConfig
    presets = {
        # tiny nets; action repeat 2 so the core's debug budget (400 env steps) holds 200
        # policy steps: 50 of prefill (100 env steps), then 150 updates
        "debug": {"env": {"action_repeat": 2}, "method": {
            "latent_dim": 8, "mlp_dim": 32, "enc_dim": 32, "num_channels": 8, "horizon": 3,
            "batch_size": 16, "num_samples": 32, "num_elites": 4, "iterations": 2,
            "seed_steps": 50, "std_schedule_steps": 100, "horizon_schedule_steps": 100,
        }},
        # the authors' pixel settings as published with the paper [cfgs/pixels.yaml, first
        # version]: 84x84 frames, a stack of 3, 8 iterations, 100k env steps (their later
        # version runs 3M env steps with lr 3e-4 and batch 256, and 6 iterations)
        "pixels": {"env": {"obs": "pixels", "frame_stack": 3, "image_size": 84},
                   "method": {"iterations": 8}, "run": {"steps": 100_000}},
    }
    # per-task settings [cfgs/tasks/*.yaml]; "*" is the authors' default.yaml for all tasks
    env_presets = {
        "*": {"env": {"action_repeat": 4}},
        "cartpole-*": {"env": {"action_repeat": 8}},
        "walker-*": {"env": {"action_repeat": 2}},
        "humanoid-*": {"env": {"action_repeat": 2}, "run": {"steps": 3_000_000},
                       "method": {"iterations": 12, "latent_dim": 100}},
        "dog-*": {"env": {"action_repeat": 2}, "run": {"steps": 5_000_000},
                  "method": {"iterations": 8, "latent_dim": 100, "batch_size": 2048, "lr": 3e-4}},
    }
    observations = ("state", "pixels")

    def __init__(self, cfg, specs: EnvSpecs):
        super().__init__(cfg, specs)
        if specs.discrete:
            raise ConfigError("tdmpc needs continuous actions; this env's actions are discrete")
        check_at_least(cfg, ["latent_dim", "mlp_dim", "enc_dim", "num_channels", "batch_size", "horizon",
                             "horizon_init", "update_freq", "iterations", "num_samples", "num_elites"])
        if cfg.num_elites > cfg.num_samples:
            raise ConfigError(f"method.num_elites={cfg.num_elites} must be <= method.num_samples="
                              f"{cfg.num_samples} (the elites are the best of the samples)")
        self.automatic_optimization = False
        self.model = self.build_model()
        self.planner = self.build_planner()
        low = specs.action_low.float().reshape(-1)
        high = specs.action_high.float().reshape(-1)
        self._rescale = bool(torch.isfinite(low).all() and torch.isfinite(high).all()
                             and not (low.eq(-1).all() and high.eq(1).all()))
        self.register_buffer("action_low", low, persistent=False)
        self.register_buffer("action_high", high, persistent=False)

    # --- hooks: nets and planner --------------------------------------------------------
    def build_model(self) -> TOLD:
        c = self.cfg
        return TOLD(obs_shape=self.specs.obs_shape, action_dim=self.specs.action_dim,
                    latent_dim=c.latent_dim, mlp_dim=c.mlp_dim, enc_dim=c.enc_dim,
                    num_channels=c.num_channels, pi_noise_clip=c.pi_noise_clip)

    def build_planner(self) -> MPPI:
        c = self.cfg
        return MPPI(num_samples=c.num_samples, num_elites=c.num_elites, iterations=c.iterations,
                    temperature=c.temperature, momentum=c.momentum, min_std=c.min_std,
                    max_std=c.max_std, select=c.action_selection)

    # --- contract -----------------------------------------------------------------------
    def compiled_modules(self) -> list[str]:
        """The planner's inner loop runs the latent dynamics, reward, Q and policy nets; the
        update runs those and both encoders."""
        return [f"model.{name}" for name in self.model.compiled_modules()]

    def data_spec(self) -> DataSpec:
        return DataSpec(batch_size=self.cfg.batch_size, sequence_length=self.cfg.horizon + 1,
                        train_ratio=1.0, prefill_steps=self.cfg.seed_steps * self.specs.action_repeat)

    def make_policy(self, explore: bool) -> Policy:
        return TDMPCPolicy(self, explore=explore)

    def configure_optimizers(self):
        params = lambda mods: [p for m in mods.values() for p in m.parameters()]  # noqa: E731
        model_opt = torch.optim.Adam(params(self.model.model_modules()), lr=self.cfg.lr)
        pi_opt = torch.optim.Adam(params(self.model.policy_modules()), lr=self.cfg.lr)
        return [model_opt, pi_opt]

    # --- schedules (the authors count agent steps; wmlab's progress counts env steps) ----
    def policy_steps(self) -> int:
        return self.progress.env_steps // self.specs.action_repeat

    def planning_std(self) -> float:
        c = self.cfg
        return linear_schedule(c.std_init, c.min_std, c.std_schedule_steps, self.policy_steps())

    def planning_horizon(self) -> int:
        c = self.cfg
        h = linear_schedule(c.horizon_init, c.horizon, c.horizon_schedule_steps, self.policy_steps())
        return int(min(c.horizon, h))

    # --- training -----------------------------------------------------------------------
    def training_step(self, batch: TensorDictBase, batch_idx: int) -> None:
        model_opt, pi_opt = self.optimizers()
        obs, action, reward, valid = self.unpack(batch)
        rho = losses.rho_weights(action.shape[0] + 1, self.cfg.rho, device=action.device)

        # world model (TOLD): consistency, reward and TD losses over an H-step rollout
        terms, zs = self.model_loss(obs, action, reward, rho[:-1, None] * valid)
        model_opt.zero_grad(set_to_none=True)
        self.manual_backward(terms["total"])
        norms = self.clip_gradients_(self.model.model_modules())
        model_opt.step()

        # policy prior: maximise Q on the (detached) rollout latents
        pi_valid = torch.cat([torch.ones_like(valid[:1]), valid])  # [H+1, B]
        pi_terms = self.policy_objective(zs.detach(), rho[:, None] * pi_valid)
        pi_opt.zero_grad(set_to_none=True)
        self.manual_backward(pi_terms["policy"])
        norms |= self.clip_gradients_(self.model.policy_modules())
        pi_opt.step()

        # targets: Polyak averaging every update_freq updates
        if self.progress.updates % self.cfg.update_freq == 0:
            self.update_targets()

        metrics = {f"train/loss/{k}": v.detach() for k, v in (terms | pi_terms).items()}
        metrics |= {f"train/grad_norm/{k}": v for k, v in norms.items()}
        metrics["train/planning_std"] = self.planning_std()
        self.log_dict(metrics, on_step=True, on_epoch=False, batch_size=action.shape[1])

    def unpack(self, batch: TensorDictBase):
        """Batch-major ``[B, L]`` TensorDict -> time-major tensors.

        Returns obs ``[L, B, *obs]``, action ``[H, B, A]`` in [-1, 1], reward ``[H, B, 1]``
        and ``valid [H, B]``: 0 for transitions at or after an episode start inside the
        sequence (the replay should not produce them; they are masked if it does).
        """
        B, L = batch.batch_size[:2]
        obs = batch.get(keys.OBSERVATION).transpose(0, 1)
        action = self.from_env_action(batch.get(keys.ACTION)[:, :-1].reshape(B, L - 1, -1)).transpose(0, 1)
        reward = batch.get(keys.REWARD)[:, :-1].reshape(B, L - 1, 1).float().transpose(0, 1)
        is_init = batch.get(keys.IS_INIT, None)
        if is_init is None:
            return obs, action, reward, torch.ones(L - 1, B, device=reward.device)
        starts = is_init.reshape(B, L)[:, 1:].long().cumsum(1) > 0  # [B, H]
        return obs, action, reward, (~starts).float().transpose(0, 1)

    def model_loss(self, obs, action, reward, weights):
        """TOLD loss terms and the rollout latents ``zs [H+1, B, D]`` (z_0 encoded, then d)."""
        c = self.cfg
        obs = self.augment(obs)  # [L, B, *obs]
        with torch.no_grad():
            next_z = self.model.encode(obs[1:])  # [H, B, D], online encoder as the authors
            z_target = self.model.encode(obs[1:], target=True)
            target = self.td_target(next_z, reward)  # [H, B, 1]
        zs = [self.model.encode(obs[0])]
        for a in action.unbind(0):
            zs.append(self.model.next(zs[-1], a))
        zs = torch.stack(zs)  # [H+1, B, D]
        terms = losses.told_loss(
            z_pred=zs[1:], z_target=z_target, reward_pred=self.model.reward(zs[:-1], action),
            reward=reward, qs=self.model.Q(zs[:-1], action), target=target, weights=weights,
            consistency_coef=c.consistency_coef, reward_coef=c.reward_coef,
            value_coef=c.value_coef, clip=c.loss_clip)
        return terms, zs

    def td_target(self, next_z, reward):
        """``r + gamma * min(Q_target(z', pi(z')))`` with the policy's min_std noise."""
        next_q = self.model.Q(next_z, self.model.pi(next_z, self.cfg.min_std), target=True)
        return losses.td_target(reward, next_q, self.cfg.discount)

    def policy_objective(self, zs, weights):
        a = self.model.pi(zs, self.cfg.min_std)
        return losses.policy_loss(self.model.Q(zs, a, detach=True), weights)

    def update_targets(self) -> None:
        self.model.update_targets(self.cfg.tau)

    def augment(self, obs: torch.Tensor) -> torch.Tensor:
        """Pixels: scale, then random shifts (independent per frame); states unchanged."""
        if self.specs.obs_kind != "pixels":
            return obs
        pad = self.cfg.shift_pad if self.cfg.shift_pad is not None else obs.shape[-1] // 21
        x = preprocess_obs(obs)
        return random_shift(x.flatten(0, 1), pad).view_as(x)

    def clip_gradients_(self, modules) -> dict:
        """Per-module grad norms (before clipping), then one clip over all of them."""
        norms = {}
        for name, m in modules.items():
            grads = [p.grad for p in m.parameters() if p.grad is not None]
            if grads:
                norms[name] = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
        params = [p for m in modules.values() for p in m.parameters()]
        torch.nn.utils.clip_grad_norm_(params, self.cfg.grad_clip_norm, foreach=True)
        return norms

    # --- planning -----------------------------------------------------------------------
    @torch.no_grad()
    def plan(self, obs, is_init, prev_mean=None, *, explore: bool = False):
        """MPPI from ``obs [B, *obs]``: env action ``[B, A]`` and the mean ``[H, B, A]`` to keep."""
        z = self.model.encode(obs)  # [B, D]
        horizon = self.planning_horizon()
        mean = warm_start(prev_mean, horizon, z.shape[0], self.specs.action_dim,
                          reset=is_init, device=z.device)
        plan = self.planner.plan(lambda acts: self.estimate_value(z, acts), mean,
                                 prior=self.policy_prior(z, horizon),
                                 min_std=self.planning_std(), explore=explore)
        return self.to_env_action(plan.action), plan.mean

    def estimate_value(self, z: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Discounted model return of ``actions [H, B, N, A]`` from ``z [B, D]`` plus a
        terminal ``min(Q1, Q2)``: ``[B, N]``."""
        c = self.cfg
        z = z.unsqueeze(1).expand(-1, actions.shape[2], -1)  # [B, N, D]
        ret, discount = 0.0, 1.0
        for a in actions.unbind(0):
            ret = ret + discount * self.model.reward(z, a)  # [B, N, 1]
            z = self.model.next(z, a)
            discount *= c.discount
        q = self.model.Q(z, self.model.pi(z, c.min_std)).min(0).values
        return (ret + discount * q).squeeze(-1)

    def policy_prior(self, z: torch.Tensor, horizon: int) -> torch.Tensor | None:
        """``int(mixture_coef * num_samples)`` policy rollouts: ``[H, B, P, A]`` or None."""
        n = int(self.cfg.mixture_coef * self.cfg.num_samples)
        if n == 0:
            return None
        z = z.unsqueeze(1).expand(-1, n, -1)  # [B, P, D]
        actions = []
        for _ in range(horizon):
            actions.append(self.model.pi(z, self.cfg.min_std))
            z = self.model.next(z, actions[-1])
        return torch.stack(actions)

    def to_env_action(self, a: torch.Tensor) -> torch.Tensor:
        if not self._rescale:
            return a
        return self.action_low + (a + 1.0) * 0.5 * (self.action_high - self.action_low)

    def from_env_action(self, a: torch.Tensor) -> torch.Tensor:
        if not self._rescale:
            return a
        return 2.0 * (a - self.action_low) / (self.action_high - self.action_low) - 1.0


class TDMPCPolicy(Policy):
    """Plans with the method's current model; keeps one warm-start mean per env."""

    def __init__(self, method: TDMPC, *, explore: bool):
        super().__init__(device=method.device)
        object.__setattr__(self, "_method", method)  # a reference, not a submodule
        self.explore = explore
        self._mean: torch.Tensor | None = None  # [H, B, A]

    def act(self, obs: torch.Tensor, is_init: torch.Tensor) -> torch.Tensor:
        m = self._method
        action, self._mean = m.plan(obs.to(m.device), is_init.to(m.device), self._mean,
                                    explore=self.explore)
        return action
