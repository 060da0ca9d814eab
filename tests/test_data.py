"""Collection into the replay: terminal rows for terminated episodes (none for truncated
ones), counters that skip them, and uniform one-hot prefill actions for discrete envs."""

import torch
from tensordict import TensorDict
from torchrl.data import Bounded, Categorical, Composite, OneHot, Unbounded
from torchrl.envs import EnvBase, InitTracker, TransformedEnv

from wmlab import keys
from wmlab.api import DataSpec, EnvSpecs, Progress, Stage
from wmlab.data import EPISODE, Collection, RandomPolicy, make_replay, stored_keys


class CountingEnv(EnvBase):
    """Observation = steps taken so far; episodes terminate after ``terminate_after`` steps
    (reward 1 each) or are truncated after ``truncate_after``, whichever comes first."""

    def __init__(self, *, terminate_after: int, truncate_after: int, discrete: bool = False):
        super().__init__()
        self.terminate_after, self.truncate_after = terminate_after, truncate_after
        self.observation_spec = Composite(observation=Unbounded(shape=(1,)))
        self.action_spec = OneHot(3) if discrete else Bounded(-1.0, 1.0, shape=(2,))
        self.reward_spec = Unbounded(shape=(1,))
        flag = lambda: Categorical(2, shape=(1,), dtype=torch.bool)  # noqa: E731
        self.done_spec = Composite(done=flag(), terminated=flag(), truncated=flag())
        self.count = 0

    def _reset(self, td):
        self.count = 0
        return TensorDict({"observation": torch.zeros(1), "done": torch.zeros(1, dtype=torch.bool),
                           "terminated": torch.zeros(1, dtype=torch.bool),
                           "truncated": torch.zeros(1, dtype=torch.bool)})

    def _step(self, td):
        self.count += 1
        terminated = self.count >= self.terminate_after
        truncated = not terminated and self.count >= self.truncate_after
        flag = lambda b: torch.tensor([b])  # noqa: E731
        return TensorDict({"observation": torch.full((1,), float(self.count)), "reward": torch.ones(1),
                           "done": flag(terminated or truncated), "terminated": flag(terminated),
                           "truncated": flag(truncated)})

    def _set_seed(self, seed):
        return seed


def specs_for(env, discrete=False) -> EnvSpecs:
    n = 3 if discrete else 2
    return EnvSpecs(name="count", obs_kind="state", obs_shape=(1,), action_shape=(n,),
                    action_low=torch.zeros(n) if discrete else -torch.ones(n), action_high=torch.ones(n),
                    action_repeat=1, episode_policy_steps=env.truncate_after, discrete=discrete)


def collect(env, policy_steps: int, discrete=False):
    spec = DataSpec(batch_size=1, sequence_length=2, train_ratio=1.0, prefill_steps=10**9)
    replay, progress, specs = make_replay(spec, 1000, "cpu"), Progress(), specs_for(env, discrete)
    collection = Collection(env=TransformedEnv(env, InitTracker()), policy=RandomPolicy(specs),
                            progress=progress, action_repeat=1, replay=replay, row_keys=stored_keys(specs))
    episodes = []
    collection.on_episode.append(lambda ret, length: episodes.append((ret, length)))
    for _ in range(policy_steps):
        collection.step()
    return replay[:len(replay)], progress, episodes


def test_terminated_episodes_get_a_terminal_row():
    rows, progress, episodes = collect(CountingEnv(terminate_after=3, truncate_after=100), 6)
    # two episodes of 3 policy steps: rows o0 o1 o2 (terminal o3), o0 o1 o2 (terminal o3)
    assert progress.policy_steps == 6 and progress.env_steps == 6 and progress.episodes == 2
    assert episodes == [(3.0, 3), (3.0, 3)]
    assert len(rows) == 8
    assert rows[keys.OBSERVATION].squeeze(-1).tolist() == [0, 1, 2, 3, 0, 1, 2, 3]
    assert rows[EPISODE].tolist() == [0, 0, 0, 0, 1, 1, 1, 1]
    assert rows[keys.IS_INIT].squeeze(-1).tolist() == [True, False, False, False] * 2
    assert rows[keys.TERMINATED].squeeze(-1).tolist() == [False, False, True, True] * 2
    assert rows[keys.REWARD].squeeze(-1).tolist() == [1, 1, 1, 0] * 2
    assert torch.all(rows[keys.ACTION][3] == 0) and torch.all(rows[keys.ACTION][2] != 0)


def test_truncated_episodes_keep_their_final_observation():
    """An episode cut by the time limit also gets a final row (o_T), not terminated, so the
    last transition can be bootstrapped from it."""
    rows, progress, _ = collect(CountingEnv(terminate_after=100, truncate_after=3), 6)
    assert progress.policy_steps == 6 and progress.episodes == 2 and len(rows) == 8
    assert rows[keys.OBSERVATION].squeeze(-1).tolist() == [0, 1, 2, 3, 0, 1, 2, 3]
    assert not rows[keys.TERMINATED].any()
    assert rows.get(keys.TRUNCATED).squeeze(-1).tolist() == [False, False, True, True] * 2
    assert rows[EPISODE].tolist() == [0, 0, 0, 0, 1, 1, 1, 1]
    assert rows[keys.REWARD].squeeze(-1).tolist() == [1, 1, 1, 0] * 2


def test_sequences_from_terminated_episodes_reach_the_final_observation():
    """Dreamer's view: the step into the terminal state has its reward and cont = 0 at the end."""
    from wmlab.nets.world_model import to_sequences

    rows, _, _ = collect(CountingEnv(terminate_after=3, truncate_after=100), 3)
    data = to_sequences(rows.unsqueeze(0))  # one sequence [1, 4]
    assert data.obs.squeeze(-1).squeeze(-1).tolist() == [0, 1, 2, 3]
    assert data.cont.squeeze(-1).squeeze(-1).tolist()[:3] == [1, 1, 0]  # after a_2 it ends
    assert data.reward.squeeze(-1).squeeze(-1).tolist()[:3] == [1, 1, 1]
    assert not data.is_first[1:].any()


def test_discrete_prefill_is_uniform_one_hot():
    rows, _, _ = collect(CountingEnv(terminate_after=1000, truncate_after=1000, discrete=True), 600, discrete=True)
    actions = rows[keys.ACTION]
    assert actions.shape == (600, 3) and torch.equal(actions.sum(-1), torch.ones(600))
    counts = actions.sum(0)
    assert counts.min() > 150, counts  # 200 each expected
