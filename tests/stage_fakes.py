"""Small fake methods, one per shape of data the loop serves (registered as entry points by
the ``fakes`` fixture in tests/test_stages.py). Each records what it saw in ``RECORD``."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from wmlab import keys
from wmlab.api import DataSpec, Method, Policy, Search, Stage
from wmlab.replay import EPISODE

#: what the last run's method saw (cleared by the fixture)
RECORD: dict = {}


@dataclass
class FakeConfig:
    lr: float = 0.01
    """Adam learning rate of the fake linear model."""
    envs_note: int = 0
    """Unused; a second field so configs are not trivial."""


class ConstantPolicy(Policy):
    """Acts ``value()`` in every action dimension (recorded calls)."""

    def __init__(self, method, value):
        super().__init__()
        self.method, self.value = method, value

    def act(self, obs, is_init):
        RECORD["policy_calls"] = RECORD.get("policy_calls", 0) + 1
        return torch.full((obs.shape[0], self.method.specs.action_dim), float(self.value()))


class Fake(Method):
    """A linear model fitted to zero by Adam; acts a constant 0."""

    Config = FakeConfig
    presets = {"debug": {"method": {}}}

    def __init__(self, cfg, specs):
        super().__init__(cfg, specs)
        self.automatic_optimization = False
        self.model = nn.Linear(specs.obs_dim, 1)

    def data_spec(self) -> DataSpec:
        return DataSpec(batch_size=4, sequence_length=3, train_ratio=0.5, prefill_steps=80)

    def make_policy(self, explore):
        return ConstantPolicy(self, lambda: 0.0)

    def configure_optimizers(self):
        return torch.optim.Adam(self.model.parameters(), lr=self.cfg.lr)

    def fit_batch(self, obs: torch.Tensor) -> None:
        loss = self.model(obs.float().flatten(0, -2)).pow(2).mean()
        opt = self.optimizers()
        opt.zero_grad()
        self.manual_backward(loss)
        opt.step()
        self.log("train/loss/fake", loss)

    def training_step(self, batch, batch_idx):
        RECORD.setdefault("shapes", []).append(tuple(batch.batch_size))
        episodes = batch.get(EPISODE)
        RECORD.setdefault("crossed", []).append(bool((episodes != episodes[:, :1]).any()))
        self.fit_batch(batch.get(keys.OBSERVATION))


class OnPolicy(Fake):
    """Rollouts [N, T]; acts ``version / 10`` where ``version`` counts its updates, so a
    rollout collected before the last update would show in the actions."""

    T = 5

    def __init__(self, cfg, specs):
        super().__init__(cfg, specs)
        self.register_buffer("version", torch.zeros((), dtype=torch.long))

    def data_spec(self) -> DataSpec:
        return DataSpec(batch_size=1, sequence_length=self.T, on_policy=True, prefill_steps=0)

    def make_policy(self, explore):
        return ConstantPolicy(self, lambda: (int(self.version) % 10) / 10)

    def training_step(self, batch, batch_idx):
        RECORD.setdefault("shapes", []).append(tuple(batch.batch_size))
        RECORD.setdefault("has_next_obs", []).append((keys.NEXT, keys.OBSERVATION) in batch.keys(True))
        expected = (int(self.version) % 10) / 10
        RECORD.setdefault("stale", []).append(bool((batch.get(keys.ACTION) != expected).any()))
        self.fit_batch(batch.get(keys.OBSERVATION))
        self.version += 1


class CollectThenFit(Fake):
    """A collect-only random stage, then offline updates on single rows."""

    def data_spec(self) -> DataSpec:
        return DataSpec(batch_size=8, sequence_length=1, prefill_steps=0)

    def stages(self):
        return [Stage("collect", env_steps=200, collect="random", train=False),
                Stage("fit", env_steps=0, updates=7)]

    def training_step(self, batch, batch_idx):
        RECORD.setdefault("shapes", []).append(tuple(batch.batch_size))
        RECORD.setdefault("stage", []).append(self.progress.stage)
        self.fit_batch(batch.get(keys.OBSERVATION))


class TwoStages(Fake):
    """Collects and trains, then trains offline: records Adam's step count at every update,
    which goes on across the stage change only if the optimizer state carries over."""

    def data_spec(self) -> DataSpec:
        return DataSpec(batch_size=4, sequence_length=1, train_ratio=0.5, prefill_steps=80)

    def stages(self):
        return [Stage("online"), Stage("offline", env_steps=0, updates=5)]

    def training_step(self, batch, batch_idx):
        self.fit_batch(batch.get(keys.OBSERVATION))
        state = self.optimizers().optimizer.state[self.model.weight]
        RECORD.setdefault("adam_steps", []).append((self.progress.stage, int(state["step"])))


class Searcher(Fake):
    """Search stages: K constant-action candidates; a hill-climbing "strategy" whose state
    (generation, best) lives outside the module's tensors, so only the checkpoint hooks can
    keep it. ``score`` (for ``in_env=False``) ranks candidates by their index."""

    K = 4
    search = Search(generations=3, episodes=2)

    def __init__(self, cfg, specs):
        super().__init__(cfg, specs)
        self.strategy = {"generation": 0, "best": None}

    def data_spec(self) -> DataSpec:
        return DataSpec(batch_size=1, prefill_steps=0)

    def stages(self):
        return [Stage("search", search=self.search)]

    def ask(self):
        self.asked = [ConstantPolicy(self, lambda k=k: -1 + 2 * k / (self.K - 1)) for k in range(self.K)]
        return self.asked

    def score(self, candidates):
        return torch.arange(len(candidates), dtype=torch.float32)

    def tell(self, fitness):
        RECORD.setdefault("fitness", []).append(fitness.tolist())
        if RECORD.get("interrupt_at") == self.strategy["generation"] + 1:
            raise KeyboardInterrupt
        self.strategy["generation"] += 1
        self.strategy["best"] = float(fitness.max())
        RECORD["strategy"] = dict(self.strategy)
        return {"strategy_generation": self.strategy["generation"]}

    def on_save_checkpoint(self, checkpoint):
        checkpoint["search_state"] = dict(self.strategy)

    def on_load_checkpoint(self, checkpoint):
        self.strategy = dict(checkpoint["search_state"])


class ModelSearcher(Searcher):
    search = Search(generations=3, in_env=False)


class OnPolicyWithPrefill(OnPolicy):
    def data_spec(self) -> DataSpec:
        return DataSpec(batch_size=1, sequence_length=5, on_policy=True)


class GoalPolicy(ConstantPolicy):
    """Reads the whole observation (Policy.act_td) and records which entries it got."""

    def act_td(self, obs, is_init):
        RECORD["policy_keys"] = sorted(obs.keys())
        return self.act(obs.get(keys.OBSERVATION), is_init)


class NeedsGoals(Fake):
    """Trains on relabelled transitions of a goal-conditioned env."""

    def data_spec(self) -> DataSpec:
        from wmlab.samplers import GoalRelabel

        return DataSpec(batch_size=4, sampler=GoalRelabel(horizon_max=3), prefill_steps=40)

    def make_policy(self, explore):
        return GoalPolicy(self, lambda: 0.0)

    def training_step(self, batch, batch_idx):
        from wmlab.samplers import HORIZON

        RECORD.setdefault("shapes", []).append(tuple(batch.batch_size))
        RECORD["batch_keys"] = sorted(k for k in batch.keys() if isinstance(k, str))
        RECORD.setdefault("horizons", []).append(batch.get(HORIZON)[:, 0])
        self.fit_batch(batch.get(keys.OBSERVATION))


FAKES = {"fake_windows": "Fake", "fake_onpolicy": "OnPolicy", "fake_collect": "CollectThenFit",
         "fake_search": "Searcher", "fake_modelsearch": "ModelSearcher",
         "fake_prefill": "OnPolicyWithPrefill", "fake_goals": "NeedsGoals", "fake_two": "TwoStages"}
