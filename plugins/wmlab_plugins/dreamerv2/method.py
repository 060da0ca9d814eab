"""DreamerV2: Dreamer with discrete world models."""

from __future__ import annotations

import copy
import dataclasses

import torch
from tensordict import TensorDictBase

from wmlab.api import DataSpec, EnvSpecs
from wmlab.errors import check_at_least, check_choices
from wmlab.nets import RSSM, Imagination, RSSMState, ema_update_
from wmlab.nets.world_model import Sequences
from wmlab.samplers import Windows

from ..dreamer import Dreamer
from . import losses
from .config import DreamerV2Config

ACTOR_GRADS = ("dynamics", "reinforce", "both")
REWARD_TRANSFORMS = {"identity": lambda r: r, "tanh": torch.tanh}


class DreamerV2(Dreamer):
    """DreamerV2 (Hafner, Lillicrap, Norouzi, Ba 2021, arXiv 2010.02193; code: danijar/dreamerv2).

    What changes from :class:`~wmlab_plugins.dreamer.Dreamer` (all through Dreamer's hooks):
      * the RSSM's latent is 32 categoricals of 32 classes, sampled with straight-through
        gradients (the core RSSM's ``categorical`` latent);
      * the KL is balanced (alpha = 0.8 trains the prior, 0.2 the posterior), with free nats
        on the batch mean;
      * a slow critic, copied from the critic every 100 updates, gives the lambda-return
        targets and the REINFORCE baseline;
      * the actor loss mixes dynamics backpropagation and REINFORCE (``actor_grad``) and adds
        an entropy bonus; rewards can be squashed by ``tanh`` (Atari).

    Defaults are the authors' DMC settings (``dmc_vision``); the ``atari`` preset holds their
    Atari settings (``wmlab fit --method dreamerv2 --env atari:pong --preset atari``): discrete
    actions get Dreamer's one-hot actor, trained by REINFORCE there.

    As the authors' code: the RSSM's GRU cell is layer-normalised with an update-gate bias of
    -1, the conv encoder and decoder use ELU, and the continuous actor is a Normal truncated
    to [-1, 1] with ``std = 2 sigmoid(s / 2) + 0.1`` and an exact entropy (``rssm_cell``,
    ``cnn_act``, ``actor_dist`` bring back Dreamer's pieces).

    Departures from the authors' code (besides Dreamer's, see its docstring): Adam without
    their 1e-6 weight decay; no 100-update pretraining burst; float32; image and reward heads
    without their layer-norm option.
    """

    Config = DreamerV2Config
    presets = {
        "debug": {"method": {**Dreamer.presets["debug"]["method"], "discrete": 4,
                             "continue_layers": 1, "slow_target_update": 2}},
        # the authors' ``atari`` config
        "atari": {
            "method": {"deter": 600, "hidden": 600, "model_lr": 2e-4, "actor_lr": 4e-5,
                       "value_lr": 1e-4, "actor_ent": 1e-3, "discount": 0.999, "kl_scale": 0.1,
                       "free_nats": 0.0, "actor_grad": "reinforce", "continue_head": True,
                       "continue_scale": 5.0, "clip_rewards": "tanh", "train_ratio": 1 / 16,
                       "prefill": 200_000, "prioritize_ends": True},
            # 27000 policy steps x action repeat 4 (as configs/envs/atari.yaml, which also sets
            # 64x64 grayscale, sticky actions and the rest of the authors' preprocessing)
            "env": {"obs": "pixels", "action_repeat": 4, "episode_steps": 108_000},
        },
    }

    def __init__(self, cfg, specs: EnvSpecs):
        check_choices(cfg, {"actor_grad": ACTOR_GRADS, "clip_rewards": tuple(REWARD_TRANSFORMS)})
        check_at_least(cfg, ["discrete", "slow_target_update"], 0)  # 0: a Gaussian latent; no slow critic
        super().__init__(cfg, specs)
        self.slow_value = copy.deepcopy(self.value).requires_grad_(False)

    def compiled_modules(self) -> list[str]:
        return [*super().compiled_modules(), "slow_value"]

    def data_spec(self) -> DataSpec:
        """Dreamer's windows, drawn towards episode ends with ``prioritize_ends``, from
        finished episodes only without ``ongoing``."""
        spec = super().data_spec()
        if self.cfg.prioritize_ends or not self.cfg.ongoing:
            spec = dataclasses.replace(spec, sampler=Windows(spec.sequence_length, finished_only=not self.cfg.ongoing,
                                                             prioritize_ends=self.cfg.prioritize_ends))
        return spec

    # --- hooks: world model -----------------------------------------------------------------
    def build_rssm(self, embed_dim: int) -> RSSM:
        c = self.cfg
        if not c.discrete:
            return super().build_rssm(embed_dim)
        return RSSM(embed_dim=embed_dim, action_dim=self.specs.action_dim, deter=c.deter,
                    hidden=c.hidden, latent="categorical", groups=c.stoch, classes=c.discrete,
                    cell=c.rssm_cell)

    def kl_loss(self, posts: RSSMState, priors: RSSMState):
        """KL balancing: ``alpha KL(sg(q) || p) + (1 - alpha) KL(q || sg(p))``, free nats on means."""
        return self.world_model.rssm.kl_loss(posts, priors, free_nats=self.cfg.free_nats,
                                             balance=self.cfg.kl_balance)

    def unpack(self, batch: TensorDictBase) -> Sequences:
        """Dreamer's sequences with the rewards transformed (``clip_rewards``)."""
        data = super().unpack(batch)
        return data._replace(reward=REWARD_TRANSFORMS[self.cfg.clip_rewards](data.reward))

    # --- hooks: behaviour -------------------------------------------------------------------
    def target_critic(self, value):
        """The slow copy of ``value`` (if it is the critic and slow targets are on)."""
        return self.slow_value if value is self.value and self.cfg.slow_target_update > 0 else value

    def value_target(self, traj: Imagination, value, reward: torch.Tensor):
        """Lambda-returns bootstrapped with the slow critic: ``[H, N, 1]`` returns and weights."""
        return super().value_target(traj, self.target_critic(value), reward)

    def actor_mix(self) -> float:
        """rho, the weight of the dynamics gradient (1 dynamics, 0 REINFORCE)."""
        return {"dynamics": 1.0, "reinforce": 0.0}.get(self.cfg.actor_grad, self.cfg.actor_grad_mix)

    def actor_objective(self, traj: Imagination, actor, returns, weights) -> dict[str, torch.Tensor]:
        """Eq. 7: dynamics and REINFORCE gradients mixed by rho, plus eta times the entropy."""
        mix, feat = self.actor_mix(), traj.feats[:-1].detach()  # [H, N, F]: s_0 .. s_{H-1}
        log_prob = advantage = None
        if mix < 1.0:
            log_prob = actor.log_prob(feat, traj.actions.detach(), out=traj.actor_out)  # [H, N]
            advantage = returns - self.target_critic(self.value)(feat)  # [H, N, 1]
        entropy = actor.entropy(feat, out=traj.actor_out)  # [H, N]: exact (one-hot, truncated Normal), one sample (tanh-Normal)
        terms = losses.actor_loss(returns=returns, weights=weights, mix=mix, ent_scale=self.cfg.actor_ent,
                                  entropy=entropy, log_prob=log_prob, advantage=advantage)
        return terms

    # --- training ---------------------------------------------------------------------------
    def training_step(self, batch: TensorDictBase, batch_idx: int) -> None:
        super().training_step(batch, batch_idx)
        self.update_slow_target()

    def update_slow_target(self) -> None:
        """Every ``slow_target_update`` updates (counted by the core: this update's index),
        mix the critic into the slow critic; the first update copies it."""
        n, every = self.progress.updates, self.cfg.slow_target_update
        if every > 0 and n % every == 0:
            ema_update_(self.slow_value, self.value, 1.0 if n == 0 else self.cfg.slow_target_fraction)
