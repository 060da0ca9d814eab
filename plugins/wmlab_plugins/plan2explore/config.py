"""Plan2Explore hyperparameters: Dreamer's fields (dataclass inheritance, Dreamer's values, as
the paper builds on Dreamer) plus the ensemble, the intrinsic reward and the stages.

Sources: the paper (Sekar, Rybkin, Daniilidis, Abbeel, Hafner, Pathak 2020, "Planning to
Explore via Self-Supervised World Models", arXiv 2005.05960, Sec. 3-4; written [paper]), the
authors' code ramanans1/plan2explore (``scripts/configs.py``, ``networks/one_step_model.py``;
[p2e]) and the reimplementation in danijar/dreamerv2 (``configs.yaml``, ``expl.py::Plan2Explore``;
[dv2]).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..dreamer.config import DreamerConfig


@dataclass
class Plan2ExploreConfig(DreamerConfig):
    # --- ensemble of one-step models ------------------------------------------------------
    ensemble_size: int = 10
    """K one-step predictors [dv2 ``disag_models 10``; p2e ``num_models 5``]."""
    disag_target: str = "embed"
    """What they predict at t + 1 from ``[features s_t, action a_t]``: ``embed`` (the
    observation embedding h_{t+1}) [paper Sec. 3; p2e] or ``stoch`` (the posterior's
    stochastic state z_{t+1}) [dv2 ``disag_target stoch``]."""
    ensemble_units: int = 400
    """Hidden width of each predictor [dv2 ``expl_head.units``; p2e: the target's size]."""
    ensemble_layers: int = 4
    """Hidden layers (ELU) of each predictor [dv2 ``expl_head.layers``; p2e: 2, ReLU]."""
    ensemble_lr: float = 3e-4
    """Adam learning rate of the ensemble [dv2 ``expl_opt.lr``]."""
    ensemble_bootstrap: bool = True
    """Each member trains on its own resample, with replacement, of the batch's sequences, so
    the members see different data [p2e ``bootstrap True``, ``sample_with_replacement``;
    dv2 trains every member on the whole batch]."""
    intr_scale: float = 1.0
    """Scale of the intrinsic reward, the ensemble's variance averaged over dims, as the
    paper's and p2e's reward [dv2 ``expl_intr_scale 1``, on the standard deviation; p2e
    ``intrinsic_reward_scale`` 1e4 on the variance]. wmlab keeps 1: the exploration actor
    and critic see only this reward, and with Dreamer's actor loss (the lambda-return
    itself, no entropy bonus: ``actor_ent`` 0, no return normalisation) a constant factor
    changes the size of the gradients, not their direction; Adam's per-parameter
    normalisation then undoes most of it. Raise it with ``actor_ent`` > 0, where the
    ratio of the two matters."""
    free_nats_per_step: bool = True
    """Free nats per step: every step's KL is clipped below at ``free_nats`` before
    averaging (``max(0, KL - free)`` per step in p2e's ``compute_objectives``); false clips
    the batch mean, as Dreamer's code."""

    # --- stages ---------------------------------------------------------------------------
    train_task_while_exploring: bool = True
    """Also train the task actor-critic on the predicted extrinsic reward during exploration,
    so evaluations during exploration measure zero-shot performance [dv2 ``Agent.train``
    trains the task behaviour at every update; paper Fig. 3 plots zero-shot curves]."""
    adapt_updates: int = 10_000
    """Updates of the zero-shot ``adapt`` stage, on the explored data without new env steps
    (wmlab's choice; the paper does not state it)."""
    adapt_world_model: bool = True
    """Keep training the whole world model during ``adapt``; false trains only the reward head
    on a frozen representation (wmlab's option)."""
    fewshot_steps: int = 0
    """Env steps of a third, few-shot stage that collects with the task actor after ``adapt``
    (0: zero-shot only) [paper Sec. 4.3: 150k steps on top of exploration]."""
