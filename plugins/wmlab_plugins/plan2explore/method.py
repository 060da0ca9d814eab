"""Plan2Explore: planning to explore via self-supervised world models."""

from __future__ import annotations

import torch
from tensordict import TensorDictBase

from wmlab.api import EnvSpecs, Stage
from wmlab.errors import check_at_least, check_choices
from wmlab.nets import Imagination, RSSMState, TanhNormalActor, frozen
from wmlab.nets.world_model import Sequences

from ..dreamer import Dreamer
from ..dreamer.method import named, start_alive
from . import losses
from .config import Plan2ExploreConfig
from .networks import Ensemble

TARGETS = ("embed", "stoch")


class Plan2Explore(Dreamer):
    """Plan2Explore (Sekar, Rybkin, Daniilidis, Abbeel, Hafner, Pathak 2020, arXiv 2005.05960;
    code: ramanans1/plan2explore and danijar/dreamerv2 ``expl.py``).

    Dreamer's world model, plus an ensemble of K one-step models that predict the next
    observation embedding (or stochastic state) from ``[s_t, a_t]``, trained on the world
    model's posterior sequences. Their disagreement (variance across members, averaged over
    dims) is the intrinsic reward of an exploration actor-critic trained in imagination. A
    separate task actor-critic learns from the reward head's predictions of the env reward,
    which is stored and learned during exploration but never rewards the exploration actor.

    Stages: ``explore`` (``run.steps`` env steps with the exploration actor), ``adapt``
    (``adapt_updates`` updates on the explored data, zero-shot: no env steps) and, if
    ``fewshot_steps > 0``, ``fewshot`` (collecting with the task actor). Evaluation always
    uses the task actor.

    Departures: the predictors take the action taken in s_t (danijar/dreamerv2 feeds the
    action that led to s_t); the actor-critics are Dreamer's (dynamics gradients, no slow
    critic), as the paper's; the intrinsic reward is not normalised; besides Dreamer's.
    """

    Config = Plan2ExploreConfig
    presets = {"debug": {"method": {**Dreamer.presets["debug"]["method"], "ensemble_size": 3,
                                    "ensemble_units": 16, "ensemble_layers": 1, "adapt_updates": 5}}}

    def __init__(self, cfg, specs: EnvSpecs):
        check_choices(cfg, {"disag_target": TARGETS})
        check_at_least(cfg, ["ensemble_size", "ensemble_units"])
        check_at_least(cfg, ["ensemble_layers", "adapt_updates", "fewshot_steps"], 0)
        super().__init__(cfg, specs)
        rssm = self.world_model.rssm
        self.expl_actor = self.build_actor(rssm.feat_dim)
        self.expl_value = self.build_value(rssm.feat_dim)
        target_dim = rssm.latent.size if cfg.disag_target == "stoch" else self.world_model.encoder.out_dim
        self.ensemble = Ensemble(cfg.ensemble_size, rssm.feat_dim + specs.action_dim, target_dim,
                                 hidden=cfg.ensemble_units, layers=cfg.ensemble_layers)
        self.exploring = True  # set by on_stage_start

    # --- stages and acting ------------------------------------------------------------------
    def stages(self) -> list[Stage]:
        stages = [Stage("explore", env_steps=None, explore=True),
                  Stage("adapt", env_steps=0, updates=self.cfg.adapt_updates)]
        if self.cfg.fewshot_steps > 0:
            stages.append(Stage("fewshot", env_steps=self.cfg.fewshot_steps, explore=True))
        return stages

    def on_stage_start(self, stage: Stage) -> None:
        self.exploring = stage.name == "explore"

    def kl_loss(self, posts: RSSMState, priors: RSSMState):
        """Dreamer's KL with free nats per step (``free_nats_per_step``, the authors' code) or
        on the mean (Dreamer's)."""
        return self.world_model.rssm.kl_loss(posts, priors, free_nats=self.cfg.free_nats,
                                             free_avg=not self.cfg.free_nats_per_step)

    def behaviour_actor(self, explore: bool) -> TanhNormalActor:
        """The exploration actor while exploring, the task actor otherwise and for evaluation."""
        return self.expl_actor if explore and self.exploring else self.actor

    def configure_optimizers(self):
        c = self.cfg
        adam = lambda module, lr: torch.optim.Adam(module.parameters(), lr=lr, eps=c.adam_eps)  # noqa: E731
        return [*super().configure_optimizers(), adam(self.expl_actor, c.actor_lr),
                adam(self.expl_value, c.value_lr), adam(self.ensemble, c.ensemble_lr)]

    def compiled_modules(self) -> list[str]:
        return [*super().compiled_modules(), "expl_actor", "expl_value", "ensemble"]

    # --- training ---------------------------------------------------------------------------
    def training_step(self, batch: TensorDictBase, batch_idx: int) -> None:
        model_opt, actor_opt, value_opt, expl_actor_opt, expl_value_opt, ensemble_opt = self.optimizers()
        data = self.unpack(batch)

        # world model (the reward head learns the env reward in every stage)
        metrics, posts = self.train_world_model(data, model_opt)

        # exploration: ensemble on posterior sequences, actor-critic on the disagreement
        if self.exploring:
            metrics |= self.train_ensemble(data, posts, ensemble_opt)
            expl, _ = self.train_behaviour(posts, self.expl_actor, self.expl_value, expl_actor_opt,
                                           expl_value_opt, reward_fn=self.intrinsic_reward, prefix="expl_",
                                           alive=start_alive(data))
            metrics |= expl

        # task: actor-critic on the predicted extrinsic reward
        if not self.exploring or self.cfg.train_task_while_exploring:
            task, _ = self.train_behaviour(posts, self.actor, self.value, actor_opt, value_opt,
                                           prefix="task_", alive=start_alive(data))
            metrics |= task
        if self.logs_now(batch_idx):
            self.log_metrics(metrics, batch_size=data.obs.shape[1])

    def train_world_model(self, data: Sequences, opt) -> tuple[dict[str, torch.Tensor], RSSMState]:
        """Dreamer's model update, or during ``adapt`` with ``adapt_world_model=False`` the
        reward head alone on the frozen representation."""
        if self.exploring or self.cfg.adapt_world_model:
            terms, posts = self.world_model_loss(data)
            return named(terms, self.optimize(opt, terms["model"], self.world_model.parts())), posts
        wm = self.world_model
        with torch.no_grad():
            posts, _ = wm.rssm.observe(wm.encode(data.obs), data.prev_action, data.is_first)
        feat = wm.rssm.get_feat(posts)  # [T, B, F]
        nll = wm.reward_head.nll(feat[1:], data.reward[:-1])  # [T-1, B]
        terms = {"reward": losses.masked_mean(nll, (~data.is_first[1:]).float())}
        return named(terms, self.optimize(opt, terms["reward"], {"reward": wm.reward_head})), posts

    def ensemble_target(self, data: Sequences, posts: RSSMState) -> torch.Tensor:
        """What the members predict, at every step: ``[T, B, D]``."""
        if self.cfg.disag_target == "stoch":
            return posts.stoch.detach()
        with torch.no_grad():
            return self.world_model.encode(data.obs)

    def train_ensemble(self, data: Sequences, posts: RSSMState, opt) -> dict[str, torch.Tensor]:
        """One step of every member (:meth:`ensemble_terms`)."""
        terms = self.ensemble_terms(data, posts)
        return named(terms, self.optimize(opt, terms["ensemble"], {"ensemble": self.ensemble}))

    def ensemble_terms(self, data: Sequences, posts: RSSMState) -> dict[str, torch.Tensor]:
        """The members' loss: ``[s_t, a_t]`` -> target at t + 1, on transitions that stay
        inside an episode; with ``ensemble_bootstrap`` member k sees B sequences drawn with
        replacement from the batch, else the whole batch."""
        feat = self.world_model.rssm.get_feat(posts).detach()  # [T, B, F]
        inputs = torch.cat([feat[:-1], data.prev_action[1:]], -1)  # a_t led to o_{t+1}
        target = self.ensemble_target(data, posts)[1:]  # [T-1, B, D]
        valid = (~data.is_first[1:]).float()  # [T-1, B]
        if not self.cfg.ensemble_bootstrap:
            return losses.ensemble_loss(self.ensemble(inputs), target, valid)
        batch = inputs.shape[1]
        pick = torch.randint(batch, (self.ensemble.k, batch), device=inputs.device)  # [K, B]
        each = lambda x: x[:, pick].transpose(0, 1)  # [T-1, B, ...] -> [K, T-1, B, ...]  # noqa: E731
        return losses.ensemble_loss(self.ensemble.each(each(inputs)), each(target), each(valid))

    def intrinsic_reward(self, traj: Imagination) -> torch.Tensor:
        """Disagreement about each imagined transition s_t, a_t -> s_{t+1}: ``[H, N, 1]``;
        differentiable in the states and actions (dynamics gradients), not in the ensemble."""
        inputs = torch.cat([traj.feats[:-1], traj.actions], -1)  # [H, N, F + A]
        with frozen(self.ensemble):
            return self.cfg.intr_scale * losses.disagreement(self.ensemble(inputs))
