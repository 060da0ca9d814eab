"""The loop serves every shape of data: replay windows, on-policy rollouts from N envs, a
collect-only stage then offline updates, search stages (in the env and in a model), and
episode-aware samplers; counters, evaluation and checkpoints in every stage kind, and
kill-and-resume in the middle of each. The fake methods are in tests/stage_fakes.py."""

import gc
import weakref
from pathlib import Path

import mlflow
import pytest
import torch
from tensordict import TensorDict

import stage_fakes
from stage_fakes import RECORD
from wmlab import checkpoint, keys
from wmlab.cli import main
from wmlab.replay import EPISODE, Replay
from wmlab.samplers import DISTANCE, FIRST, HORIZON, LATER, SECOND, GoalRelabel, Pairs, Spans, Windows
from wmlab.tracking import tracking_uri

#: cartpole with 100-frame episodes of 25 policy steps, evals and checkpoints every 100 frames
BASE = ["--env", "cartpole-swingup", "--preset", "debug", "env.action_repeat=4", "eval.every=100",
        "checkpoint.every=100", "eval.video=false"]


@pytest.fixture
def fakes(tmp_path, monkeypatch):
    """The fake methods as entry points of a throw-away distribution."""
    site = tmp_path / "site"
    info = site / "stage_fakes-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: stage-fakes\nVersion: 0.1\n")
    lines = "".join(f"{name} = stage_fakes:{cls}\n" for name, cls in stage_fakes.FAKES.items())
    (info / "entry_points.txt").write_text(f"[wmlab.methods]\n{lines}")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    RECORD.clear()
    yield
    RECORD.clear()


def fit(method: str, *overrides: str) -> int:
    return main(["fit", "--method", method, *BASE, *overrides])


def final_progress() -> dict:
    run_dir, = Path("checkpoints").iterdir()
    return checkpoint.load(run_dir)[1]["progress"]


def history(key: str) -> list[tuple[int, float]]:
    client = mlflow.MlflowClient(tracking_uri(None))
    run, = client.search_runs([client.get_experiment_by_name("wmlab").experiment_id])
    return [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, key)]


# --- one fake method per shape --------------------------------------------------------------


@pytest.mark.parametrize("envs", [1, 2])
def test_replay_windows_keep_the_ratio_over_all_envs(fakes, envs):
    assert fit("fake_windows", f"run.envs={envs}") == 0
    p = final_progress()
    # 400 frames = 100 policy steps over all envs; prefill 80 frames = 20; ratio 0.5
    assert p["env_steps"] == 400 and p["policy_steps"] == 100 and p["updates"] == 40
    assert set(RECORD["shapes"]) == {(4, 3)} and not any(RECORD["crossed"])
    # every collection step is envs x 4 frames: evals at the first step at or after each 100
    per_step = 4 * envs
    assert [s for s, _ in history("eval/episode_return")] == [-(-k // per_step) * per_step
                                                              for k in (100, 200, 300, 400)]


def test_on_policy_rollouts_come_from_the_current_parameters(fakes):
    assert fit("fake_onpolicy", "run.envs=3", "run.steps=600") == 0
    p = final_progress()
    # a rollout is 3 envs x 5 policy steps x 4 frames = 60 env steps: 10 rollouts, 10 updates
    assert p["env_steps"] == 600 and p["updates"] == 10
    assert set(RECORD["shapes"]) == {(3, 5)} and all(RECORD["has_next_obs"])
    assert RECORD["stale"] == [False] * 10  # each rollout acted with the version it trains


def test_collect_only_stage_then_offline_updates(fakes):
    assert fit("fake_collect") == 0
    p = final_progress()
    assert p["env_steps"] == 200 and p["updates"] == p["offline_updates"] == 7 and p["stage"] == "fit"
    assert set(RECORD["shapes"]) == {(8,)} and set(RECORD["stage"]) == {"fit"}
    # evaluated during the collect stage (100), at its end (200) and after the updates (200)
    assert [s for s, _ in history("eval/episode_return")] == [100, 200, 200]
    assert RECORD["policy_calls"] == 3 * 25  # only the evaluations used the method's policy


def test_optimizer_state_carries_over_between_stages_and_resumes(fakes, monkeypatch):
    assert fit("fake_two") == 0
    steps = RECORD["adam_steps"]
    online = [n for stage, n in steps if stage == "online"]
    assert online == list(range(1, 41))  # 0.5 x (100 - 20) policy steps
    assert [n for stage, n in steps if stage == "offline"] == list(range(41, 46))


def test_a_finished_stage_frees_its_trainer(fakes, monkeypatch):
    # Trainers live in reference cycles: with the automatic collector off, only the loop's
    # own collection at the end of a stage frees the earlier stages' (and their optimizers;
    # the method stays attached to the last one until the next fit)
    from wmlab import loop

    made, freed = [], []
    make, gradient = loop.make_trainer, loop.run_gradient

    def recorded(*args, **kwargs):
        trainer = make(*args, **kwargs)
        made.append(weakref.ref(trainer))
        return trainer

    def stage(*args, **kwargs):
        gradient(*args, **kwargs)
        freed.append([ref() is None for ref in made[:-1]])

    monkeypatch.setattr(loop, "make_trainer", recorded)
    monkeypatch.setattr(loop, "run_gradient", stage)
    gc.collect()
    gc.disable()
    try:
        assert fit("fake_two") == 0
    finally:
        gc.enable()
    assert len(freed) == 2 and freed[1][-1]  # the first stage's Trainer, after the second stage


def test_optimizer_state_survives_a_kill_and_resume(fakes, monkeypatch):
    undo = interrupt_collection_at(monkeypatch, 300)
    assert fit("fake_two") == 130
    saved = final_progress()["updates"]
    assert saved > 0
    undo()
    RECORD.clear()
    assert resume() == 0
    assert [n for _, n in RECORD["adam_steps"]] == list(range(saved + 1, 46))


@pytest.mark.parametrize("envs", [1, 2])
def test_search_in_the_env_counts_candidates_env_steps(fakes, envs):
    assert fit("fake_search", f"run.envs={envs}") == 0
    p = final_progress()
    # 3 generations x 4 candidates x 2 episodes x 100 frames
    assert p["generations"] == 3 and p["env_steps"] == 2400 and p["updates"] == 0
    assert len(RECORD["fitness"]) == 3 and all(len(f) == 4 for f in RECORD["fitness"])
    best = history("search/best_fitness")
    assert [s for s, _ in best] == [800, 1600, 2400]
    assert [v for _, v in best] == pytest.approx([max(f) for f in RECORD["fitness"]])
    assert [s for s, _ in history("eval/episode_return")][-1] == 2400


def test_search_scored_by_the_method_takes_no_env_step(fakes):
    assert fit("fake_modelsearch") == 0
    p = final_progress()
    assert p["generations"] == 3 and p["env_steps"] == 0
    assert [v for _, v in history("search/generation")] == [1, 2, 3]
    assert {v for _, v in history("search/best_fitness")} == {3.0}
    assert RECORD["strategy"] == {"generation": 3, "best": 3.0}


def test_goal_relabelling_on_a_composite_observation(fakes):
    """A gym env with a Dict observation: its goals are stored in every row, relabelled by
    the sampler, and handed to the policy's act_td."""
    env = "gym:gym_fixtures:wmlab_test/GoalPoint-v0"
    assert main(["fit", "--method", "fake_goals", "--env", env, *BASE[2:], "run.steps=200"]) == 0
    assert set(RECORD["shapes"]) == {(4, 2)}
    assert {"achieved_goal", "desired_goal", "horizon", "observation"} <= set(RECORD["batch_keys"])
    assert RECORD["policy_keys"] == ["achieved_goal", "desired_goal", "observation"]
    assert int(torch.cat(RECORD["horizons"]).max()) <= 3


# --- kill and resume in the middle of each stage kind ----------------------------------------


def interrupt_collection_at(monkeypatch, env_steps: int):
    """Ctrl-C at the first collection step at or after ``env_steps``."""
    from wmlab.data import Collection

    step = Collection.step

    def failing(self):
        if self.progress.env_steps >= env_steps:
            raise KeyboardInterrupt
        return step(self)

    monkeypatch.setattr(Collection, "step", failing)
    return lambda: monkeypatch.setattr(Collection, "step", step)


def resume() -> int:
    run_dir, = Path("checkpoints").iterdir()
    return main(["fit", "--resume", str(run_dir)])


def test_kill_and_resume_on_policy(fakes, monkeypatch):
    undo = interrupt_collection_at(monkeypatch, 360)
    assert fit("fake_onpolicy", "run.envs=3", "run.steps=600") == 130
    saved = final_progress()
    assert 0 < saved["env_steps"] <= 360 and saved["updates"] == saved["env_steps"] // 60
    undo()
    assert resume() == 0
    p = final_progress()
    assert p["env_steps"] == 600 and p["updates"] == 10


def test_kill_and_resume_in_a_collect_only_stage(fakes, monkeypatch):
    undo = interrupt_collection_at(monkeypatch, 160)
    assert fit("fake_collect") == 130
    assert final_progress()["env_steps"] == 100 and final_progress()["stage"] == "collect"
    undo()
    assert resume() == 0
    p = final_progress()
    assert p["env_steps"] == 200 and p["updates"] == 7 and p["stage"] == "fit"


def test_kill_and_resume_in_an_offline_stage_starts_it_again(fakes, monkeypatch):
    """Offline updates take no env step: the checkpoint at the stage boundary is where a
    killed offline stage starts again."""
    fit_batch = stage_fakes.CollectThenFit.fit_batch

    def failing(self, obs):
        if self.progress.stage_updates == 3:
            raise KeyboardInterrupt
        fit_batch(self, obs)

    monkeypatch.setattr(stage_fakes.CollectThenFit, "fit_batch", failing)
    assert fit("fake_collect") == 130
    saved = final_progress()
    assert saved["stage"] == "fit" and saved["stage_updates"] == 0 and saved["env_steps"] == 200
    monkeypatch.setattr(stage_fakes.CollectThenFit, "fit_batch", fit_batch)
    assert resume() == 0
    p = final_progress()
    assert p["updates"] == 7 and p["env_steps"] == 200


def test_kill_and_resume_in_a_search_stage_keeps_the_search_state(fakes):
    RECORD["interrupt_at"] = 3
    assert fit("fake_search") == 130
    saved = final_progress()
    assert saved["generations"] == 2 and saved["env_steps"] == 1600
    del RECORD["interrupt_at"]
    assert resume() == 0
    p = final_progress()
    assert p["generations"] == 3 and p["env_steps"] == 2400
    assert RECORD["strategy"]["generation"] == 3  # restored at 2 by on_load_checkpoint, then +1


# --- bad input ---------------------------------------------------------------------------------


@pytest.mark.parametrize("method, extra, words", [
    ("fake_prefill", [], ["on-policy", "prefill", "prefill_steps=0"]),
    ("fake_goals", [], ["GoalRelabel", "achieved_goal", "does not provide"]),
    ("fake_windows", ["run.envs=0"], ["run.envs", "positive"]),
])
def test_bad_stage_settings_are_one_line(fakes, capsys, method, extra, words):
    assert fit(method, *extra) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and all(w in err for w in words), err


# --- samplers on a replay filled by hand ------------------------------------------------------


def fill(replay: Replay, lengths: list[int], *, env: int = 0, finish_last: bool = True, goal_dim: int = 2):
    """Episodes of ``lengths`` rows into ring ``env``: observation = t, achieved goal = t
    (every entry), desired goal = -1; the last episode is left running unless asked."""
    for i, n in enumerate(lengths):
        for t in range(n):
            done = t == n - 1 and (finish_last or i < len(lengths) - 1)
            row = TensorDict({keys.OBSERVATION: torch.tensor([float(t)]),
                              "achieved_goal": torch.full((goal_dim,), float(t)),
                              "desired_goal": torch.full((goal_dim,), -1.0),
                              keys.ACTION: torch.zeros(1), keys.IS_INIT: torch.tensor([t == 0]),
                              keys.REWARD: torch.zeros(1), keys.DONE: torch.tensor([done]),
                              keys.TERMINATED: torch.tensor([False]), keys.TRUNCATED: torch.tensor([done])},
                             batch_size=[])
            replay.write(row.unsqueeze(0), torch.tensor([env]))


def test_windows_weigh_episodes_by_the_windows_they_hold():
    """Four finished episodes of 250 rows and one of 20 still running: the running one holds
    2% of the windows and gets about that share (a per-episode sampler gave it 19%)."""
    torch.manual_seed(0)
    replay = Replay(2000, "cpu")
    fill(replay, [250, 250, 250, 250, 20], finish_last=False)
    batch = Windows(10).sample(replay, 20_000)
    assert batch.batch_size == (20_000, 10)
    episodes = batch.get(EPISODE)
    assert torch.equal(episodes, episodes[:, :1].expand_as(episodes))  # never across episodes
    obs = batch.get(keys.OBSERVATION).squeeze(-1)
    assert torch.equal(obs - obs[:, :1], torch.arange(10.0).expand_as(obs))  # consecutive
    share = (episodes[:, 0] == 4).float().mean().item()
    assert share < 0.03, share  # 11 of 975 windows: 1.1%
    finished = Windows(10, finished_only=True).sample(replay, 2000).get(EPISODE)
    assert not (finished == 4).any()


def test_prioritized_ends_draw_the_last_window_of_finished_episodes_more_often():
    """Episodes of 250 rows, windows of 10: 241 starts plus 10 on the last one, so the last
    window gets 11/251 of an episode's draws (uniform: 1/241); the running episode keeps
    uniform starts."""
    torch.manual_seed(0)
    replay = Replay(2000, "cpu")
    fill(replay, [250, 250, 250, 250, 100], finish_last=False)
    batch = Windows(10, prioritize_ends=True).sample(replay, 40_000)
    episodes = batch.get(EPISODE)
    assert torch.equal(episodes, episodes[:, :1].expand_as(episodes))
    obs = batch.get(keys.OBSERVATION).squeeze(-1)
    assert torch.equal(obs - obs[:, :1], torch.arange(10.0).expand_as(obs))
    finished = episodes[:, 0] < 4
    # the stored observation is the row's index in its episode (see fill): 240 starts the last window
    ends = (obs[finished, 0] == 240).float().mean().item()
    assert abs(ends - 11 / 251) < 0.006, ends
    running = obs[~finished, 0]
    assert (running == 90).float().mean().item() < 0.03  # 1/91 of the running episode's draws
    assert running.numel() > 0


def test_windows_across_envs_and_ring_overwrites():
    torch.manual_seed(0)
    replay = Replay(60, "cpu", envs=2)  # two rings of 30
    fill(replay, [12, 12, 12], env=0)  # 36 rows: the oldest 6 overwritten
    fill(replay, [5, 5], env=1)
    assert len(replay) == 40 and replay.lengths.tolist() == [30, 10]
    batch = Windows(4).sample(replay, 5000)
    obs = batch.get(keys.OBSERVATION).squeeze(-1)
    assert torch.equal(obs - obs[:, :1], torch.arange(4.0).expand_as(obs))
    assert obs.max() <= 11


def test_spans_run_across_episodes_of_one_env_uniformly():
    """Rows of one ring in the order they were written, across episode starts (is_init set
    where a new one begins), every run of L rows drawn equally often; never two envs."""
    torch.manual_seed(0)
    replay = Replay(200, "cpu", envs=2)  # two rings of 100
    fill(replay, [12, 12, 12], env=0)
    fill(replay, [7, 7, 7, 7], env=1)
    batch = Spans(10).sample(replay, 40_000)
    assert batch.batch_size == (40_000, 10)
    episodes = batch.get(EPISODE)
    assert (episodes[:, 1:] - episodes[:, :-1]).ge(0).all()  # in the order written
    assert (episodes[:, -1] != episodes[:, 0]).float().mean() > 0.5  # most cross a start
    obs, init = batch.get(keys.OBSERVATION).squeeze(-1), batch.get(keys.IS_INIT).squeeze(-1)
    assert torch.equal(init, obs == 0)  # a new episode starts exactly where is_init is set
    step = obs[:, 1:] - obs[:, :-1]
    assert torch.all((step == 1) | init[:, 1:])  # consecutive inside an episode
    ring0 = episodes[:, 0] < 3
    # ring 0 holds 27 runs of 10 rows, ring 1 holds 19: drawn in proportion
    assert abs(ring0.float().mean().item() - 27 / 46) < 0.01
    starts = episodes[ring0, 0] * 12 + obs[ring0, 0].long()
    counts = torch.bincount(starts, minlength=27).float()
    assert counts.min() / counts.max() > 0.8
    with pytest.raises(RuntimeError, match="no run of 50 rows"):
        Spans(50).sample(replay, 1)


@pytest.mark.parametrize("sampler", [Windows(1), Windows(4), Windows(4, prioritize_ends=True),
                                     Spans(6)], ids=repr)
def test_positions_are_the_rows_a_sampler_gathers(sampler):
    """``positions`` (API 1.6) draws as ``sample`` does, and names the rows it gathers."""
    replay = Replay(60, "cpu", envs=2)
    fill(replay, [12, 12, 12], env=0)  # the oldest 6 overwritten
    fill(replay, [5, 5, 9], env=1)
    torch.manual_seed(3)
    batch = sampler.sample(replay, 50)
    torch.manual_seed(3)
    env, pos = sampler.positions(replay, 50)
    assert env.shape == (50, 1) and pos.shape == (50, sampler.length)
    rows = replay.gather(env, pos)
    assert torch.equal(rows.get(EPISODE).reshape(batch.batch_size), batch.get(EPISODE))
    assert torch.equal(rows.get(keys.OBSERVATION).reshape(batch.get(keys.OBSERVATION).shape),
                       batch.get(keys.OBSERVATION))


def test_goal_relabelling_uses_later_achieved_goals_of_the_same_episode():
    torch.manual_seed(0)
    replay = Replay(1000, "cpu")
    fill(replay, [30, 40, 25])
    batch = GoalRelabel(horizon_max=5, future=0.75).sample(replay, 4000)
    assert batch.batch_size == (4000, 2)
    t = batch.get(keys.OBSERVATION)[:, 0, 0]
    goal = batch.get("desired_goal")[:, 0, 0]
    relabelled = goal >= 0
    assert abs(relabelled.float().mean().item() - 0.75) < 0.03
    assert (goal[relabelled] > t[relabelled]).all()  # a later row ...
    ends = torch.tensor([29.0, 39.0, 24.0])[batch.get(EPISODE)[:, 0]]
    assert (goal[relabelled] <= ends[relabelled]).all()  # ... of the same episode
    assert torch.equal(batch.get("desired_goal")[:, 0], batch.get("desired_goal")[:, 1])
    tau = batch.get(HORIZON)
    assert tau[:, 0].min() == 0 and tau[:, 0].max() == 5 and torch.equal(tau[:, 1], tau[:, 0] - 1)


def test_pairs_are_ordered_rows_of_one_episode_within_the_distances():
    torch.manual_seed(0)
    replay = Replay(1000, "cpu")
    fill(replay, [30, 8, 50])
    pairs = Pairs(min_distance=2, max_distance=10).sample(replay, 5000)
    a, b = pairs[FIRST], pairs[SECOND]
    assert torch.equal(a.get(EPISODE), b.get(EPISODE))
    ta, tb = a.get(keys.OBSERVATION)[:, 0], b.get(keys.OBSERVATION)[:, 0]
    d = (tb - ta).abs()
    assert torch.equal(d, pairs[DISTANCE].float()) and d.min() == 2 and d.max() == 10
    assert torch.equal(pairs[LATER], (tb > ta).float())
    assert abs(pairs[LATER].mean().item() - 0.5) < 0.03


def test_replay_saves_and_loads_its_index(tmp_path):
    torch.manual_seed(0)
    replay = Replay(60, "cpu", envs=2)
    fill(replay, [12, 12, 12], env=0)
    fill(replay, [5, 5], env=1, finish_last=False)
    replay.dumps(tmp_path / "r")
    loaded = Replay(60, "cpu", envs=2)
    loaded.loads(tmp_path / "r")
    assert len(loaded) == len(replay)
    pos = torch.arange(10)
    assert torch.equal(loaded.gather(torch.ones_like(pos), pos).get(keys.OBSERVATION),
                       replay.gather(torch.ones_like(pos), pos).get(keys.OBSERVATION))
    assert loaded.current.tolist() == [-1, -1]  # a resumed run starts new episodes
    with pytest.raises(ValueError, match="envs"):
        Replay(60, "cpu", envs=3).loads(tmp_path / "r")
