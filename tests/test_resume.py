"""Runs a researcher can trust after a crash: one value per metric and env step across a
resume, Ctrl-C and SIGTERM stopping within seconds with a checkpoint, checkpoints by time,
runs of a killed process marked KILLED."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pytest
from omegaconf import OmegaConf

from wmlab.cli import main
from wmlab.tracking import Tracker, client_for, store

DEBUG = ["--method", "tdmpc", "--env", "cartpole-swingup", "--preset", "debug", "run.threads=1",
         "eval.video=false"]


def history(client, run_id: str) -> dict[str, list[int]]:
    """``{metric: [env steps of its values, sorted]}`` of a run, throughput left out."""
    run = client.get_run(run_id)
    return {k: sorted(m.step for m in client.get_metric_history(run_id, k))
            for k in run.data.metrics if not k.startswith("time/")}


def only_run(client):
    run, = client.search_runs([client.get_experiment_by_name("wmlab").experiment_id])
    return run


# --- the tracker: what a resumed run logs again is dropped ---------------------------------


def test_a_resumed_tracker_logs_each_step_once(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cfg = OmegaConf.create({"tracking": {"uri": uri, "experiment": "wmlab"}})
    first = Tracker.start(cfg, method="m", env="e", seed=1, plugin_dist="d", plugin_version="1")
    for step in (10, 20, 30):
        first.log_metrics({"loss": step / 10}, step=step)
    first.log_metrics({"loss": 3.5}, step=30)  # two values at one step, as a run may log
    first.log_metrics({"eval": 1.0}, step=20)
    first.flush()  # then the process dies without ending the run
    again = Tracker.start(cfg, method="m", env="e", seed=1, plugin_dist="d", plugin_version="1",
                          run_id=first.run_id)
    # the resumed attempt replays from a checkpoint at step 10 and goes on to 50
    for step in (10, 20, 30, 40, 50):
        again.log_metrics({"loss": step / 10}, step=step)
        if step == 30:
            again.log_metrics({"loss": 3.5}, step=30)
        if step in (20, 40):
            again.log_metrics({"eval": 2.0}, step=step)
    again.end()
    client = again.client
    assert history(client, first.run_id) == {"loss": [10, 20, 30, 30, 40, 50], "eval": [20, 40]}
    values = [m.value for m in client.get_metric_history(first.run_id, "eval")]
    assert sorted(values) == [1.0, 2.0]  # the first attempt's value at 20 is kept


def test_a_tracker_resumed_from_counts_drops_exactly_what_the_run_holds_past_them(tmp_path):
    """Offline and search stages log many values at one env step; the counts a checkpoint
    keeps say where in them the replay starts."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cfg = OmegaConf.create({"tracking": {"uri": uri, "experiment": "wmlab"}})
    first = Tracker.start(cfg, method="m", env="e", seed=1, plugin_dist="d", plugin_version="1")
    first.log_metrics({"eval": 1.0, "loss": 0.0}, step=800)  # the collect stage's last eval
    for update in range(5):  # an offline stage at env step 800
        first.log_metrics({"loss": 1.0 + update}, step=800)
        if update == 1:
            first.flush()
            counts = first.metric_counts()  # a checkpoint after two updates
    first.flush()  # then the process dies
    assert counts == {"eval": 1, "loss": 3}
    again = Tracker.start(cfg, method="m", env="e", seed=1, plugin_dist="d", plugin_version="1",
                          run_id=first.run_id)
    again.resume_from(counts)
    for update in range(2, 7):  # replays updates 2-4, then goes on
        again.log_metrics({"loss": 1.0 + update}, step=800)
    again.log_metrics({"eval": 2.0}, step=800)  # the final eval, at the same env step
    assert again.metric_counts() == {"eval": 2, "loss": 8}
    again.end()
    client = again.client
    assert [m.value for m in client.get_metric_history(first.run_id, "loss")] == [0, 1, 2, 3, 4, 5, 6, 7]
    assert [m.value for m in client.get_metric_history(first.run_id, "eval")] == [1.0, 2.0]


# --- runs whose process is gone ------------------------------------------------------------


def test_runs_of_a_dead_process_are_marked_killed(tmp_path):
    client = client_for(f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp = store.experiment_id(client, "wmlab")
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    dead = client.create_run(exp, tags={**store.owner_tags(), store.PID_TAG: gone,
                                        store.PID_START_TAG: ""})
    mine = client.create_run(exp, tags=store.owner_tags())
    elsewhere = client.create_run(exp, tags={**store.owner_tags(), store.HOST_TAG: "another-host",
                                             store.PID_TAG: gone})
    untagged = client.create_run(exp)
    assert store.mark_dead_runs_killed(client) == [dead.info.run_id]
    status = {r: client.get_run(r.info.run_id).info.status for r in (dead, mine, elsewhere, untagged)}
    assert status[dead] == "KILLED"
    assert status[mine] == status[elsewhere] == status[untagged] == "RUNNING"


def test_a_reused_pid_does_not_keep_a_run_alive(tmp_path):
    client = client_for(f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp = store.experiment_id(client, "wmlab")
    # this process's pid, but another process start: the run's owner was an earlier process
    run = client.create_run(exp, tags={**store.owner_tags(), store.PID_START_TAG: "1"})
    assert store.mark_dead_runs_killed(client) == [run.info.run_id]


# --- end to end: SIGTERM, kill -9, checkpoints by time --------------------------------------


def start(folder: Path, *argv: str) -> subprocess.Popen:
    """``wmlab ARGV`` in a process of its own, on the store in ``folder``."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MLFLOW_TRACKING_URI": f"sqlite:///{folder / 'mlflow.db'}"}
    return subprocess.Popen([sys.executable, "-m", "wmlab.cli", *argv], cwd=folder, start_new_session=True,
                            env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL)


def kill_9(proc: subprocess.Popen) -> None:
    """``kill -9`` of the run and what it started (ViZDoom's game processes), as a
    scheduler kills a job; they would outlive it otherwise."""
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)


def start_fit(folder: Path, *args: str) -> subprocess.Popen:
    return start(folder, "fit", *DEBUG, *args)


def wait_for(proc: subprocess.Popen, pattern: bytes, timeout: float = 240.0) -> bytes:
    """Read the run's stderr until ``pattern`` appears; what was read."""
    seen, deadline = b"", time.monotonic() + timeout
    while not re.search(pattern, seen):
        chunk = proc.stderr.read1(4096)
        if not chunk or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"{pattern!r} not seen; the run printed: {seen[-2000:].decode()}")
        seen += chunk
    return seen


@pytest.mark.slow
def test_sigterm_stops_within_seconds_with_a_checkpoint_and_the_resume_has_no_duplicates(tmp_path, monkeypatch):
    proc = start_fit(tmp_path, "run.steps=600", "eval.every=200", "checkpoint.every=0")
    wait_for(proc, rb"eval at 200 env steps: episode 1/1")
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    rest = proc.stderr.read().decode()
    proc.wait(timeout=60)
    took = time.monotonic() - sent
    assert proc.returncode == 130, rest
    assert took < 20, took  # seconds, not the rest of the run (about 2 s here)
    stopped = re.search(r"stopped at (\d+) env steps; checkpoint (\S+);", rest)
    assert stopped is not None, rest
    assert Path(stopped.group(2), "state.pt").is_file()

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    run = only_run(client)
    assert run.info.status == "KILLED"
    assert main(["fit", "--resume", run.info.run_id]) == 0
    assert client.get_run(run.info.run_id).info.status == "FINISHED"
    steps = history(client, run.info.run_id)
    assert steps["eval/episode_return"] == [200, 400, 600]
    assert steps["collect/episode_return"] == [100, 200, 300, 400, 500, 600]
    for key, at in steps.items():
        assert len(at) == len(set(at)), f"{key} has two values at one env step: {at}"


@pytest.mark.slow
def test_kill_9_then_resume_leaves_no_gap_and_no_duplicate(tmp_path, monkeypatch):
    proc = start_fit(tmp_path, "run.steps=600", "eval.every=100", "checkpoint.every=200")
    wait_for(proc, rb"eval at 300 env steps: episode 1/1")  # a checkpoint at 200, metrics past it
    proc.kill()
    proc.wait(timeout=30)
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    run = only_run(client)
    assert run.info.status == "RUNNING"  # nobody ended it

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert main(["fit", "--resume", run.info.run_id]) == 0  # marks it KILLED, then RUNNING again
    assert client.get_run(run.info.run_id).info.status == "FINISHED"
    steps = history(client, run.info.run_id)
    assert steps["eval/episode_return"] == [100, 200, 300, 400, 500, 600]
    assert steps["collect/episode_return"] == [100, 200, 300, 400, 500, 600]
    for key, at in steps.items():
        assert len(at) == len(set(at)), f"{key} has two values at one env step: {at}"


def test_checkpoints_by_time(tmp_path, monkeypatch, capfd):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    written = []
    from wmlab import loop

    real = loop.save_checkpoint

    def spy(run, trainer, **kw):
        written.append(run.progress.env_steps)
        return real(run, trainer, **kw)

    monkeypatch.setattr(loop, "save_checkpoint", spy)
    # by env steps only at the end; by time (a minute's hundredth, every episode end after it)
    assert main(["fit", *DEBUG, "checkpoint.every=0", "checkpoint.minutes=0.0001"]) == 0
    episode_ends = [s for s in written[:-1]]
    assert episode_ends and all(s % 100 == 0 for s in episode_ends), written  # at episode ends
    written.clear()
    assert main(["fit", *DEBUG, "checkpoint.every=0", "checkpoint.minutes=0"]) == 0
    assert written == [400]  # the final one only
    err = capfd.readouterr().err
    assert "GPU available" not in err and "max_epochs" not in err  # Lightning's banners stay quiet


def test_episodes_ending_together_log_one_value_per_step(tmp_path, monkeypatch):
    # three envs end their episodes at the same env step (MLflow refuses two identical rows
    # of one metric at one step, e.g. three Sokoban episodes timing out with one return)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert main(["fit", *DEBUG, "run.envs=3", "run.steps=600"]) == 0
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    run = only_run(client)
    steps = history(client, run.info.run_id)
    assert steps["collect/episode_return"] == [300, 600]  # 3 envs x 100 env steps per episode
    ended = client.get_metric_history(run.info.run_id, "collect/episodes_ended")
    assert [m.value for m in ended] == [3.0, 3.0]


def values(client, run_id: str) -> dict[str, list[tuple[int, float]]]:
    run = client.get_run(run_id)
    return {k: sorted((m.step, m.value) for m in client.get_metric_history(run_id, k))
            for k in run.data.metrics if not k.startswith("time/")}


@pytest.mark.slow
def test_a_resumed_run_logs_what_the_uninterrupted_run_logs(tmp_path, monkeypatch):
    """Deterministic resume: killed (-9) after its checkpoint at 200 env steps and resumed,
    a run logs the same value of every metric at every env step as the same run left alone
    (weights, optimizers, replay, the global RNGs and each env's RNG are in the checkpoint;
    the batch of each update is drawn right before it)."""
    args = ["run.steps=600", "eval.every=100", "checkpoint.every=200", "checkpoint.minutes=0",
            "tracking.log_every=1"]
    assert_resume_matches_the_run_left_alone(tmp_path, monkeypatch, [*DEBUG, *args],
                                             rb"eval at 300 env steps: episode 1/1")


def assert_resume_matches_the_run_left_alone(tmp_path, monkeypatch, argv, after: bytes):
    """``wmlab fit ARGV`` left alone, and the same killed (-9) once its output shows
    ``after`` (a checkpoint written before it), then resumed: every metric has the same
    values at the same env steps."""
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    whole.mkdir()
    cut.mkdir()
    monkeypatch.chdir(whole)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{whole / 'mlflow.db'}")
    assert main(["fit", *argv]) == 0
    proc = start(cut, "fit", *argv)
    wait_for(proc, after)
    proc.kill()
    proc.wait(timeout=30)
    cut_client = mlflow.MlflowClient(f"sqlite:///{cut / 'mlflow.db'}")
    run_id = only_run(cut_client).info.run_id
    monkeypatch.chdir(cut)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{cut / 'mlflow.db'}")
    assert main(["fit", "--resume", run_id]) == 0
    whole_client = mlflow.MlflowClient(f"sqlite:///{whole / 'mlflow.db'}")
    expected = values(whole_client, only_run(whole_client).info.run_id)
    got = values(cut_client, run_id)
    assert got.keys() == expected.keys()
    for key in expected:
        assert got[key] == expected[key], key


# --- kill -9 in every stage kind of a staged method -----------------------------------------

STAGED = ["--method", "worldmodels", "--env", "doom:take-cover", "--preset", "debug", "run.threads=1",
          "eval.video=false", "checkpoint.every=200", "eval.every=400", "method.collect_steps=800",
          "method.vae_updates=300", "method.generations=40", "method.dream_steps=100"]


def metric_steps(client, run_id: str) -> dict[str, list[int]]:
    """``{metric: [env step of every value, sorted]}``, throughput left out (several values
    may share a step: the offline and search stages take no env step)."""
    return {k: sorted(m.step for m in client.get_metric_history(run_id, k))
            for k in client.get_run(run_id).data.metrics if not k.startswith("time/")}


@pytest.mark.slow
def test_kill_9_in_each_stage_kind_of_a_staged_method(tmp_path, monkeypatch):
    """World Models (collect -> vae and mdn, offline -> controller, a search in the dream),
    killed with -9 in its collect stage, in its first offline stage and in its search, each
    time resumed: the run finishes, and every metric holds as many values at each env step
    as the same run left alone (nothing lost, nothing logged twice)."""
    pytest.importorskip("vizdoom")
    alone, killed = tmp_path / "alone", tmp_path / "killed"
    alone.mkdir(), killed.mkdir()
    monkeypatch.chdir(alone)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{alone / 'mlflow.db'}")
    assert main(["fit", *STAGED]) == 0
    expected = metric_steps(client_for(f"sqlite:///{alone / 'mlflow.db'}"), only_run(
        client_for(f"sqlite:///{alone / 'mlflow.db'}")).info.run_id)

    proc = start(killed, "fit", *STAGED)
    wait_for(proc, rb"eval at 400 env steps: episode 1/1")  # collecting, a checkpoint at 400
    kill_9(proc)
    client = client_for(f"sqlite:///{killed / 'mlflow.db'}")
    run_id = only_run(client).info.run_id
    for marker in (rb"\[vae\]:", rb"\[controller\]:"):  # an offline stage, then the search
        proc = start(killed, "fit", "--resume", run_id)
        wait_for(proc, marker)
        kill_9(proc)
        assert client.get_run(run_id).info.status == "RUNNING"  # nobody ended it

    monkeypatch.chdir(killed)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{killed / 'mlflow.db'}")
    assert main(["fit", "--resume", run_id]) == 0
    assert client.get_run(run_id).info.status == "FINISHED"
    assert metric_steps(client, run_id) == expected


def test_a_run_resumed_without_its_replay_refills_it_first(tmp_path, monkeypatch):
    """``checkpoint.replay=false``: the resumed run collects a prefill's worth with its
    policy before its next update (that used to fail: no window in an empty replay); those
    steps earn no updates, so the updates keep to the train ratio."""
    from wmlab import checkpoint
    from wmlab.data import Collection

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    step = Collection.step

    def interrupted(self):
        if self.progress.env_steps >= 300:
            raise KeyboardInterrupt
        return step(self)

    monkeypatch.setattr(Collection, "step", interrupted)
    args = [*DEBUG, "run.steps=500", "eval.every=0", "checkpoint.replay=false"]
    assert main(["fit", *args]) == 130
    monkeypatch.setattr(Collection, "step", step)
    run_dir, = Path("checkpoints").iterdir()
    assert main(["fit", "--resume", str(run_dir)]) == 0
    p = checkpoint.load(run_dir)[1]["progress"]
    assert p["env_steps"] == 500 and p["stage_refill_steps"] == 50  # the debug preset's prefill
    # action repeat 2, prefill 50 policy steps, one update per policy step after it
    assert p["updates"] == 500 // 2 - 50 - p["stage_refill_steps"]
