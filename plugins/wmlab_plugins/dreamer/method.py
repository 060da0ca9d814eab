"""Dreamer: learning behaviours by latent imagination."""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from tensordict import TensorDictBase

from wmlab.api import DataSpec, EnvSpecs, Method, Policy
from wmlab.errors import ConfigError, check_at_least, check_choices
from wmlab.nets import (
    RSSM,
    BernoulliHead,
    GaussianHead,
    Imagination,
    OneHotActor,
    RSSMState,
    TanhNormalActor,
    TruncNormalActor,
    frozen,
    imagine_from,
)
from wmlab.nets.world_model import (
    Sequences,
    RSSMPolicy,
    WorldModel,
    make_decoder,
    make_encoder,
    openloop_video,
    to_sequences,
)
from wmlab.nets.heads import record_actor_outputs
from wmlab.nets.mlp import ACTIVATIONS
from wmlab.nets.rssm import CELLS
from wmlab.optim import clip_grad_norms_
from wmlab.returns import discount_weights, lambda_returns

from . import losses
from .config import DreamerConfig

#: ``method.actor_dist`` for continuous actions
ACTOR_DISTS = ("tanh_normal", "trunc_normal")


class Dreamer(Method):
    """Dreamer (Hafner, Lillicrap, Ba, Norouzi 2020, arXiv 1912.01603; code: danijar/dreamer).

    A world model (RSSM, conv or MLP encoder, decoder, reward head, optional continue head)
    is learned from replayed sequences by reconstruction, reward prediction and a KL
    regulariser with free nats. From every posterior state of the batch the actor imagines
    ``horizon`` steps in the model; it maximises V_lambda returns by backpropagating through
    the learned dynamics, and the value model regresses those returns.

    Departures from the authors' code (see also ``config.py``):
      * a steady train ratio (0.2 updates per policy step) instead of 100 updates every
        1000 env steps, and no burst of 100 updates after prefill;
      * the world model is updated before imagination starts (the authors compute all three
        gradients before applying any);
      * the imagined trajectory includes its start state: values are trained on s_0..s_{H-1}
        and G_t sums the rewards after s_t (the authors drop s_0 and count a state's own
        reward in its value);
      * the deterministic (eval) action is ``tanh(mean)`` rather than the most likely of
        100 samples (discrete actions: the most likely choice); float32 instead of mixed
        precision;
      * state-vector observations are supported with MLP encoder and decoder;
      * discrete actions (Atari) get a one-hot categorical actor with straight-through
        samples (:class:`~wmlab.nets.OneHotActor`, as the authors' Atari agent) and
        epsilon-greedy exploration with ``expl_amount`` (the authors decay theirs from 0.4).

    Subclass hooks (DreamerV2, Plan2Explore): ``build_rssm``, ``build_world_model``,
    ``build_actor``, ``build_value``, ``kl_loss``, ``imagined_reward``, ``imagined_discount``,
    ``actor_objective``, ``value_target``, ``behaviour_actor``, ``train_behaviour`` (takes the
    actor, value model and optimizers, so a task and an exploration behaviour can share it).
    """

    Config = DreamerConfig
    presets = {
        "debug": {"method": {
            "deter": 16, "stoch": 4, "hidden": 16, "units": 16, "cnn_depth": 4,
            "reward_layers": 1, "value_layers": 1, "actor_layers": 1, "state_layers": 1,
            "batch_size": 4, "sequence_length": 10, "horizon": 3, "prefill": 100, "train_ratio": 0.5,
        }},
    }
    # the paper: 64x64 pixels and action repeat 2 on every DMC task (other families keep
    # their own presets, e.g. configs/envs/atari.yaml)
    # episodes that terminate (not only by the time limit) get the continue head
    env_presets = {"*": {"env": {"obs": "pixels", "action_repeat": 2}},
                   **{f"{family}:*": {"method": {"continue_head": True}} for family in ("atari", "gym", "sokoban")}}
    observations = ("state", "pixels")

    def __init__(self, cfg, specs: EnvSpecs):
        super().__init__(cfg, specs)
        check_choices(cfg, {"actor_dist": ACTOR_DISTS, "rssm_cell": CELLS, "cnn_act": tuple(ACTIVATIONS)})
        check_at_least(cfg, ["deter", "stoch", "hidden", "cnn_depth", "units", "horizon", "batch_size",
                             "sequence_length"])
        low, high = specs.action_low.float().reshape(-1), specs.action_high.float().reshape(-1)
        if specs.discrete:  # one-hot actions: the model's action is the env's
            low, high = -torch.ones(specs.action_dim), torch.ones(specs.action_dim)
        elif not (torch.isfinite(low).all() and torch.isfinite(high).all()):
            raise ConfigError("dreamer needs bounded actions (a tanh actor); this env's are unbounded")
        self.register_buffer("action_low", low, persistent=False)
        self.register_buffer("action_high", high, persistent=False)
        self.automatic_optimization = False
        self.world_model = self.build_world_model()
        feat_dim = self.world_model.rssm.feat_dim
        self.actor = self.build_actor(feat_dim)
        self.value = self.build_value(feat_dim)

    # --- hooks: networks --------------------------------------------------------------------
    def build_rssm(self, embed_dim: int) -> RSSM:
        c = self.cfg
        return RSSM(embed_dim=embed_dim, action_dim=self.specs.action_dim, deter=c.deter,
                    stoch=c.stoch, hidden=c.hidden, latent="gaussian", min_std=c.min_std,
                    cell=c.rssm_cell)

    def build_world_model(self) -> WorldModel:
        c, shape = self.cfg, self.specs.obs_shape
        encoder = make_encoder(shape, cnn_depth=c.cnn_depth, units=c.units, layers=c.state_layers,
                               cnn_act=c.cnn_act)
        rssm = self.build_rssm(encoder.out_dim)
        decoder = make_decoder(shape, rssm.feat_dim, cnn_depth=c.cnn_depth, units=c.units,
                               layers=c.state_layers, cnn_act=c.cnn_act)
        reward = GaussianHead(rssm.feat_dim, 1, hidden=c.units, layers=c.reward_layers)
        cont = (BernoulliHead(rssm.feat_dim, hidden=c.units, layers=c.continue_layers)
                if c.continue_head else None)
        return WorldModel(encoder=encoder, rssm=rssm, decoder=decoder, reward=reward, cont=cont,
                          obs_ndim=len(shape))

    def build_actor(self, feat_dim: int) -> TanhNormalActor | TruncNormalActor | OneHotActor:
        """A tanh-Normal (or truncated Normal, ``actor_dist``) over continuous actions, a
        one-hot categorical over discrete ones."""
        c = self.cfg
        if self.specs.discrete:
            return OneHotActor(feat_dim, self.specs.action_dim, hidden=c.units, layers=c.actor_layers)
        if c.actor_dist == "trunc_normal":
            return TruncNormalActor(feat_dim, self.specs.action_dim, hidden=c.units, layers=c.actor_layers)
        return TanhNormalActor(feat_dim, self.specs.action_dim, hidden=c.units, layers=c.actor_layers,
                               init_std=c.action_init_std, min_std=c.action_min_std,
                               mean_scale=c.action_mean_scale)

    def build_value(self, feat_dim: int) -> GaussianHead:
        return GaussianHead(feat_dim, 1, hidden=self.cfg.units, layers=self.cfg.value_layers)

    # --- contract ---------------------------------------------------------------------------
    def compiled_modules(self) -> list[str]:
        return [f"world_model.{name}" for name in self.world_model.compiled_modules()] + ["actor", "value"]

    def data_spec(self) -> DataSpec:
        c = self.cfg
        return DataSpec(batch_size=c.batch_size, sequence_length=c.sequence_length,
                        train_ratio=c.train_ratio, prefill_steps=c.prefill)

    def make_policy(self, explore: bool) -> Policy:
        return RSSMPolicy(self, explore=explore)

    def configure_optimizers(self):
        c = self.cfg
        adam = lambda module, lr: torch.optim.Adam(module.parameters(), lr=lr, eps=c.adam_eps)  # noqa: E731
        return [adam(self.world_model, c.model_lr), adam(self.actor, c.actor_lr),
                adam(self.value, c.value_lr)]

    # --- training ---------------------------------------------------------------------------
    def training_step(self, batch: TensorDictBase, batch_idx: int) -> None:
        model_opt, actor_opt, value_opt = self.optimizers()
        data = self.unpack(batch)

        # world model: reconstruction, reward (and continue) likelihoods, KL with free nats
        terms, posts = self.world_model_loss(data)
        norms = self.optimize(model_opt, terms["model"], self.world_model.parts())
        metrics = named(terms, norms)

        # imagination and actor-critic: H steps from every posterior state, model frozen
        behaviour, _ = self.train_behaviour(posts, self.actor, self.value, actor_opt, value_opt,
                                            alive=start_alive(data))
        if self.logs_now(batch_idx):
            self.log_metrics(metrics | behaviour, batch_size=data.obs.shape[1])

    def unpack(self, batch: TensorDictBase) -> Sequences:
        """Batch-major ``[B, T]`` TensorDict -> time-major :class:`Sequences` (actions in
        [-1, 1]; every sequence starts from the initial state, as in the authors' code)."""
        return to_sequences(batch, self.from_env_action)

    def world_model_loss(self, data: Sequences) -> tuple[dict[str, torch.Tensor], RSSMState]:
        """Model loss terms and the posterior states ``[T, B]``."""
        c, wm = self.cfg, self.world_model
        embed = wm.encode(data.obs)  # [T, B, E]
        posts, priors = wm.rssm.observe(embed, data.prev_action, data.is_first)
        feat = wm.rssm.get_feat(posts)  # [T, B, F]
        kl_loss, kl = self.kl_loss(posts, priors)
        # r_t and "continues after a_t" are predicted from the state a_t leads to
        cont_nll = None if wm.cont_head is None else wm.cont_head.nll(feat[1:], data.cont[:-1])
        terms = losses.world_model_loss(
            obs_nll=wm.obs_nll(feat, data.obs), reward_nll=wm.reward_head.nll(feat[1:], data.reward[:-1]),
            kl_loss=kl_loss, kl=kl, valid=(~data.is_first[1:]).float(), cont_nll=cont_nll,
            kl_scale=c.kl_scale, cont_scale=c.continue_scale)
        return terms, posts

    def kl_loss(self, posts: RSSMState, priors: RSSMState):
        """Dreamer: the plain KL clipped below at ``free_nats`` (DreamerV2 balances it)."""
        return self.world_model.rssm.kl_loss(posts, priors, free_nats=self.cfg.free_nats)

    def train_behaviour(self, posts: RSSMState, actor, value, actor_opt, value_opt, *,
                        reward_fn: Callable[[Imagination], torch.Tensor] | None = None, prefix: str = "",
                        alive: torch.Tensor | None = None):
        """One actor and one value update from imagined trajectories; returns the metrics
        (``loss/<prefix>actor``, ``grad_norm/<prefix>value``, ...) and the trajectory.
        ``alive [T, B, 1]`` (:func:`start_alive`) marks the posterior states that are not
        terminal."""
        reward_fn = reward_fn or self.imagined_reward
        # shared_critic: Dreamer's returns bootstrap from the critic being trained, so its one
        # forward pass over the imagined states can serve both losses, each backward pass
        # restricted to its own parameters (the actor's gradient flows through the critic,
        # not into it; the critic's does not reach the actor). Otherwise the critic is frozen
        # for the actor's loss and run again on the detached states for its own.
        shared = (self.cfg.shared_critic and type(self).value_target is Dreamer.value_target
                  and type(self).optimize is Dreamer.optimize)
        with frozen(self.world_model, *([] if shared else [value])):
            traj = self.imagine(posts, actor)
            if alive is not None:
                traj = traj._replace(alive=alive.reshape(-1, 1))
            if shared:
                v = value(traj.feats)  # [H+1, N, 1]
                returns, weights = self.lambda_targets(traj, v, reward_fn(traj))
            else:
                returns, weights = self.value_target(traj, value, reward_fn(traj))  # [H, N, 1]
            terms = self.actor_objective(traj, actor, returns, weights)
        only = dict(inputs=list(actor.parameters()), retain_graph=True) if shared else {}
        norms = self.optimize(actor_opt, terms["actor"], {f"{prefix}actor": actor}, **only)
        v = v[:-1] if shared else value(traj.feats[:-1].detach())
        terms |= losses.value_loss(v, returns, weights)
        only = dict(inputs=list(value.parameters())) if shared else {}
        norms |= self.optimize(value_opt, terms["value"], {f"{prefix}value": value}, **only)
        metrics = named({f"{prefix}{k}": v for k, v in terms.items()}, norms)
        metrics[f"{prefix}imagined_return"] = returns.detach().mean()
        return metrics, traj

    def imagine(self, posts: RSSMState, actor) -> Imagination:
        """``horizon`` steps from every posterior state; the actor sees detached features
        (its gradient comes through the dynamics, not through its input). The actor's output
        at each step is kept (``actor_out``) for its entropy and log-probabilities."""
        rssm = self.world_model.rssm
        policy, outputs = record_actor_outputs(actor)
        traj = imagine_from(rssm, lambda s: policy(rssm.get_feat(s).detach()), posts, self.cfg.horizon)
        return traj._replace(actor_out=outputs())

    def imagined_reward(self, traj: Imagination) -> torch.Tensor:
        """Reward of each imagined transition, ``r_t`` for arriving in s_{t+1}: ``[H, N, 1]``."""
        return self.world_model.reward(traj.feats[1:])

    def imagined_discount(self, traj: Imagination) -> torch.Tensor:
        """``gamma`` times the predicted probability of continuing in s_{t+1}: ``[H, N, 1]``."""
        cont = self.world_model.cont(traj.feats[1:])
        gamma = torch.full_like(traj.feats[1:, ..., :1], self.cfg.discount)
        return gamma if cont is None else gamma * cont

    def value_target(self, traj: Imagination, value, reward: torch.Tensor):
        """V_lambda returns ``G_0..G_{H-1}`` and their loss weights, ``[H, N, 1]`` each.

        From a terminal start state (``traj.alive`` 0) nothing follows: its imagined rewards
        and discounts are zero, so its return is 0, the value there learns 0 and the later
        steps weigh nothing (DreamerV2 sets the first imagined discount from the replay's
        terminal flag for the same reason)."""
        return self.lambda_targets(traj, value(traj.feats), reward)

    def lambda_targets(self, traj: Imagination, v: torch.Tensor, reward: torch.Tensor):
        """:meth:`value_target` from the critic's values ``v [H+1, N, 1]`` of ``traj.feats``."""
        discount = self.imagined_discount(traj)
        if traj.alive is not None:
            reward, discount = reward * traj.alive, discount * traj.alive
        returns = lambda_returns(reward, v[1:], discount, v[-1], self.cfg.return_lambda)
        return returns, discount_weights(discount)

    def actor_objective(self, traj: Imagination, actor, returns, weights) -> dict[str, torch.Tensor]:
        """Dreamer: maximise the returns through the dynamics (DreamerV2 mixes in REINFORCE),
        plus ``actor_ent`` times a one-sample entropy estimate if that is set."""
        entropy = None
        if self.cfg.actor_ent > 0.0:
            entropy = actor.entropy(traj.feats[:-1].detach(), out=traj.actor_out)  # [H, N]
        return losses.actor_loss(returns, weights, entropy=entropy, ent_scale=self.cfg.actor_ent)

    def optimize(self, opt, loss: torch.Tensor, parts, **backward) -> dict[str, torch.Tensor]:
        """Backward (``backward``: keyword arguments of ``Tensor.backward``, e.g. ``inputs``),
        per-part grad norms, one global clip, step."""
        opt.zero_grad(set_to_none=True)
        self.manual_backward(loss, **backward)
        norms = clip_grad_norms_(parts, self.cfg.grad_clip)
        opt.step()
        return norms

    def logs_now(self, batch_idx: int) -> bool:
        """Whether Lightning keeps step metrics logged at this batch (every
        ``log_every_n_steps`` batches); skipping ``log_dict`` elsewhere loses nothing and
        saves about a third of an update at debug sizes."""
        every = self.trainer.log_every_n_steps if self._trainer is not None else 1
        return every > 0 and (batch_idx + 1) % every == 0

    def log_metrics(self, metrics: dict[str, torch.Tensor], *, batch_size: int) -> None:
        metrics = {f"train/{k}": v.detach() for k, v in metrics.items()}
        self.log_dict(metrics, on_step=True, on_epoch=False, batch_size=batch_size)

    # --- acting -----------------------------------------------------------------------------
    def behaviour_actor(self, explore: bool) -> TanhNormalActor | OneHotActor:
        """The actor that acts in the env (Plan2Explore: the exploration actor when exploring)."""
        return self.actor

    @torch.no_grad()
    def act(self, state: RSSMState, prev_action: torch.Tensor, obs: torch.Tensor,
            is_init: torch.Tensor, *, explore: bool):
        """One filtering step and an action: ``[B, A]`` (in [-1, 1], or one-hot) and the new
        state ``[B]``. Exploring adds Gaussian noise of std ``expl_amount`` to a continuous
        action; a discrete one is replaced by a uniformly random choice with probability
        ``expl_amount`` (the authors' epsilon-greedy for discrete actions)."""
        wm, actor = self.world_model, self.behaviour_actor(explore)
        post, _ = wm.rssm.obs_step(state, prev_action, wm.encode(obs), is_init)
        feat = wm.rssm.get_feat(post)  # [B, F]
        if not explore:
            return actor.mode(feat), post
        action = actor.sample(feat)[0]
        amount = self.cfg.expl_amount
        if not self.specs.discrete:
            return (action + amount * torch.randn_like(action)).clamp(-1.0, 1.0), post
        if amount > 0.0:
            n = action.shape[-1]
            random = F.one_hot(torch.randint(n, action.shape[:-1], device=action.device), n).to(action.dtype)
            pick = torch.rand(action.shape[:-1], device=action.device) < amount
            action = torch.where(pick.unsqueeze(-1), random, action)
        return action, post

    def to_env_action(self, a: torch.Tensor) -> torch.Tensor:
        """The model's action (in [-1, 1], or one-hot) -> the env's (within its bounds)."""
        if self.specs.discrete:
            return a
        return self.action_low + (a + 1.0) * 0.5 * (self.action_high - self.action_low)

    def from_env_action(self, a: torch.Tensor) -> torch.Tensor:
        if self.specs.discrete:
            return a
        return 2.0 * (a - self.action_low) / (self.action_high - self.action_low) - 1.0

    # --- videos -----------------------------------------------------------------------------
    @torch.no_grad()
    def eval_videos(self, batch: TensorDictBase, *, context: int = 5, rows: int = 4) -> dict:
        """Open-loop prediction (pixels only): real frames (left) beside the model's (right),
        reconstructions for ``context`` frames, then imagined from the same actions alone;
        ``rows`` sequences stacked vertically: ``{"openloop": uint8 [T, rows*64, 128, 3]}``."""
        if self.specs.obs_kind != "pixels" or batch.batch_size[1] <= context:
            return {}
        return {"openloop": openloop_video(self.world_model, self.unpack(batch[:rows].to(self.device)),
                                           context=context)}


def named(terms: dict[str, torch.Tensor], norms: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``{"loss/<term>": ..., "grad_norm/<module>": ...}``."""
    return {f"loss/{k}": v for k, v in terms.items()} | {f"grad_norm/{k}": v for k, v in norms.items()}



def start_alive(data: Sequences) -> torch.Tensor:
    """``[T, B, 1]``: 0 for the posterior states that are terminal, else 1. Row t + 1 is
    terminal when the transition out of row t terminated the episode and row t + 1 is no
    episode start: it is the episode's final row, holding the terminal observation (see
    :mod:`wmlab.keys`). The first row of a window never is: a window of two or more rows ends
    inside its episode."""
    terminal = torch.zeros_like(data.cont)
    terminal[1:] = (1.0 - data.cont[:-1]) * (~data.is_first[1:]).unsqueeze(-1).to(data.cont.dtype)
    return 1.0 - terminal
