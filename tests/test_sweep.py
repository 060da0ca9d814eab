"""Sweeps: the grid checked before any run starts, runs nested under the sweep's MLflow run,
several processes writing to one local SQLite store at once, resuming a sweep."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pytest

from wmlab.cli import main
from wmlab.sweep import Spec, child_runs, find_parent
from wmlab.tracking import tracking_uri

ENV = "cartpole-swingup"
# 200 env steps, episodes of 100, 50 updates (tdmpc debug: action repeat 2, 50 policy steps of
# prefill), a train metric logged at every update: about 600 metric values per run
TINY = ["--preset", "debug", "run.steps=200", "eval.every=100", "eval.video=false", "checkpoint.every=100",
        "run.threads=1", "tracking.log_every=1"]


def cli(folder: Path, *args: str, **kw) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.Popen([sys.executable, "-m", "wmlab.cli", *args], cwd=folder, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)


@pytest.mark.parametrize("argv, message", [
    (["--method", "tdmpc,nosuch", "--env", ENV], "unknown method 'nosuch'"),
    (["--method", "tdmpc", "--env", f"{ENV},cheetah-fly"], "cheetah-run"),
    (["--method", "tdmpc", "--env", ENV, "--seeds", "1,1"], "seed 1 given twice"),
    (["--method", "tdmpc", "--env", ENV, "--seeds", "1,2", "run.seed=3"], "seeds given twice"),
    (["--method", "tdmpc", "--env", ENV, "--seeds", "1,x"], "--seeds takes integers"),
    (["--method", "tdmpc,tdmpc", "--env", ENV], "tdmpc given twice"),
    (["--method", "tdmpc", "--env", ENV, "--seeds", "1,2", "--jobs", "0"], "--jobs must be at least 1"),
    (["--method", "tdmpc", "--env", ENV, "--jobs", "0"], "--jobs must be at least 1, got 0"),
    (["--method", "tdmpc", "--env", ENV, "--seeds", ""], "--seeds must be a comma-separated list"),
    (["--method", "tdmpc", "--env", ENV, "--sweep", ""], "--sweep takes a name"),
    (["--method", "tdmpc", "--env", ENV, "--seeds", "1,2", "run.name=x"], "a sweep names its runs"),
    (["--method", "tdmpc", "--env", ENV, "--seeds", "1,2", "run.stepz=3"], "unknown config key 'run.stepz'"),
])
def test_a_bad_sweep_fails_before_any_run_in_one_line(argv, message, capsys, tmp_path):
    assert main(["fit", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "checkpoints").exists()
    db = tmp_path / "mlflow" / "mlflow.db"
    if db.exists():  # nothing was started in it
        assert mlflow.MlflowClient(tracking_uri(None)).search_runs(["0"]) == []


def test_an_unreachable_tracking_server_fails_a_sweep_in_one_line(capsys, monkeypatch):
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{port}")
    assert main(["fit", "--method", "tdmpc", "--env", ENV, "--seeds", "1,2"]) == 2
    err = capsys.readouterr().err
    assert "cannot reach the MLflow tracking server" in err and len(err.strip().splitlines()) == 1


def test_the_same_command_names_the_same_sweep():
    a = Spec(["tdmpc"], [ENV], [1, 2], ["debug"], [], ["run.steps=200"])
    same = Spec(["tdmpc"], [ENV], [1, 2], ["debug"], [], ["run.steps=200"])
    other = Spec(["tdmpc"], [ENV], [1, 2], ["debug"], [], ["run.steps=300"])
    assert a.default_name() == same.default_name() != other.default_name()
    assert a.default_name().startswith("sweep-tdmpc-cartpole-swingup-s1_2-")
    assert Spec.from_json(a.to_json()) == a
    assert [str(c) for c in a.cells()] == [f"tdmpc on {ENV}, seed 1", f"tdmpc on {ENV}, seed 2"]


@pytest.mark.slow
def test_four_runs_at_once_and_an_eval_write_every_metric_then_the_sweep_resumes(tmp_path):
    """A sweep of 4 seeds with --jobs 4 and a `wmlab eval` beside them, all on the default
    local SQLite store: every process ends well and every run holds every metric value."""
    started = time.monotonic()
    args = ["fit", "--method", "tdmpc", "--env", ENV, "--seeds", "1,2,3,4", "--jobs", "4", *TINY]
    sweep = cli(tmp_path, *args)
    # evaluate the first checkpoint of the sweep's runs while they go on writing
    deadline = time.monotonic() + 600
    while not [p for p in tmp_path.glob("checkpoints/*/latest")] and time.monotonic() < deadline:
        assert sweep.poll() is None, sweep.communicate()[0]
        time.sleep(0.2)
    ckpt = next(tmp_path.glob("checkpoints/*/latest")).parent
    evaluation = cli(tmp_path, "eval", "--checkpoint", str(ckpt), "--episodes", "1", "--no-video")
    eval_out, _ = evaluation.communicate(timeout=600)
    sweep_out, _ = sweep.communicate(timeout=900)
    took = time.monotonic() - started
    assert sweep.returncode == 0, sweep_out
    assert evaluation.returncode == 0, eval_out
    assert "Traceback" not in sweep_out and "database is locked" not in sweep_out
    # one line per start and finish of each run
    assert sweep_out.count("] start: tdmpc") == 4 and sweep_out.count("] done: tdmpc") == 4

    client = mlflow.MlflowClient(tracking_uri(None))
    name = Spec(["tdmpc"], [ENV], [1, 2, 3, 4], ["debug"], [], TINY[2:]).default_name()
    parent = find_parent(client, name)
    assert parent is not None and parent.info.status == "FINISHED"
    children = child_runs(client, parent)
    assert sorted(c.seed for c in children) == [1, 2, 3, 4]
    values = 0
    for cell, run in children.items():
        assert run.info.status == "FINISHED" and run.data.tags["wmlab.sweep"] == name
        history = {k: [m.step for m in client.get_metric_history(run.info.run_id, k)] for k in run.data.metrics}
        values += sum(len(v) for v in history.values())
        assert history["eval/episode_return"] == [100, 200]
        assert history["collect/episode_return"] == [100, 200]
        train = {k: v for k, v in history.items() if k.startswith("train/")}
        assert train and all(len(v) == 50 for v in train.values()), {k: len(v) for k, v in train.items()}
    logs = {a.path for a in client.list_artifacts(parent.info.run_id, "logs")}
    assert len(logs) == 4
    evals = client.search_runs([parent.info.experiment_id], "tags.`wmlab.evaluates` != ''")
    assert len(evals) == 1 and "eval/episode_return" in evals[0].data.metrics
    print(f"4 fits + 1 eval on one SQLite store: {values} metric values in the 4 runs, "
          f"0 failures, {took:.0f} s")

    # the same command again: nothing left to run
    again = cli(tmp_path, *args)
    out, _ = again.communicate(timeout=300)
    assert again.returncode == 0, out
    assert out.count("] finished before") == 4 and "] start" not in out
    # a run that stopped (here: marked KILLED) resumes from its checkpoint, by the sweep's name
    stopped = children[next(iter(children))]
    client.set_terminated(stopped.info.run_id, "KILLED")
    client.set_terminated(parent.info.run_id, "KILLED")
    resumed = cli(tmp_path, "fit", "--resume", name)
    out, _ = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, out
    assert out.count("] finished before") == 3 and out.count(f"resume run {stopped.info.run_name}") == 1
    assert client.get_run(stopped.info.run_id).info.status == "FINISHED"
    assert client.get_run(parent.info.run_id).info.status == "FINISHED"
    history = client.get_metric_history(stopped.info.run_id, "eval/episode_return")
    assert sorted(m.step for m in history) == [100, 200]  # the resumed run logged nothing twice


@pytest.mark.slow
def test_sigterm_stops_a_sweep_with_checkpoints_and_marks_it_killed(tmp_path):
    """SIGTERM to the sweep: each run under way gets one SIGTERM, stops at its next safe point
    with a checkpoint and is KILLED, as is the sweep's run; the exit status is 130."""
    import signal

    sweep = cli(tmp_path, "fit", "--method", "tdmpc", "--env", ENV, "--seeds", "1,2", "--jobs", "2",
                "--sweep", "stopped", *TINY[:-1], "run.steps=100000")
    deadline = time.monotonic() + 600
    while len(list(tmp_path.glob("checkpoints/*/latest"))) < 2 and time.monotonic() < deadline:
        assert sweep.poll() is None, sweep.communicate()[0]
        time.sleep(0.2)
    sweep.send_signal(signal.SIGTERM)
    out, _ = sweep.communicate(timeout=300)
    assert sweep.returncode == 130, out
    assert "continue with: wmlab fit --resume stopped" in out and "Traceback" not in out
    client = mlflow.MlflowClient(tracking_uri(None))
    parent = find_parent(client, "stopped")
    assert parent.info.status == "KILLED"
    children = child_runs(client, parent)
    assert len(children) == 2 and all(r.info.status == "KILLED" for r in children.values())
    assert all((Path(r.data.tags["wmlab.checkpoint_dir"]) / "latest").exists() for r in children.values())
