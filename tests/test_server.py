"""`wmlab server`: a tracking server on the project's store that several runs log to at once."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import mlflow
import pytest

from wmlab.tracking import server_command

from test_sweep import ENV, TINY


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("argv, message", [
    (["ui", "--port", "99999"], "--port must be between 1 and 65535, got 99999"),
    (["server", "--port", "-1"], "--port must be between 1 and 65535, got -1"),
    (["server", "--port", str(free_port()), "--backend-store-uri", "nosuch://x"],
     "the MLflow store nosuch://x (--backend-store-uri) has an unknown scheme 'nosuch'; valid: "),
])
def test_bad_server_input_is_one_line(argv, message, capsys):
    from wmlab.cli import main

    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_the_server_command_serves_the_local_store_and_its_artifacts(tmp_path):
    cmd, env = server_command(None, 5123)
    assert cmd[cmd.index("--backend-store-uri") + 1] == f"sqlite:///{tmp_path}/mlflow/mlflow.db"
    assert cmd[cmd.index("--host") + 1] == "127.0.0.1"
    assert "--serve-artifacts" in cmd
    assert cmd[cmd.index("--artifacts-destination") + 1] == (tmp_path / "mlflow" / "artifacts").as_uri()
    assert "MLFLOW_TRACKING_URI" not in env
    assert env["MLFLOW_SQLALCHEMYSTORE_POOLCLASS"] == "NullPool"  # no pool to run out of
    cmd, _ = server_command("postgresql://u@db/mlflow", 5123, "0.0.0.0", artifacts=str(tmp_path / "a"))
    assert cmd[cmd.index("--backend-store-uri") + 1] == "postgresql://u@db/mlflow"
    assert cmd[cmd.index("--host") + 1] == "0.0.0.0"
    assert cmd[cmd.index("--artifacts-destination") + 1] == (tmp_path / "a").as_uri()


@pytest.mark.slow
def test_three_runs_log_to_one_server_at_once(tmp_path):
    port = free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    (tmp_path / "server").mkdir()
    srv = subprocess.Popen([sys.executable, "-m", "wmlab.cli", "server", "--port", str(port)],
                           cwd=tmp_path / "server", env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            assert srv.poll() is None, srv.communicate()[0]
            try:
                urllib.request.urlopen(f"{uri}/health", timeout=2)
                break
            except OSError:
                assert time.monotonic() < deadline, "the server did not answer in 180 s"
                time.sleep(0.5)
        (tmp_path / "runs").mkdir()
        fit = subprocess.run([sys.executable, "-m", "wmlab.cli", "fit", "--method", "tdmpc", "--env", ENV,
                              "--seeds", "1,2,3", "--jobs", "3", *TINY], cwd=tmp_path / "runs",
                             env={**env, "MLFLOW_TRACKING_URI": uri}, capture_output=True, text=True,
                             timeout=900)
        assert fit.returncode == 0, fit.stdout + fit.stderr
        client = mlflow.MlflowClient(uri)
        exp = client.get_experiment_by_name("wmlab")
        runs = [r for r in client.search_runs([exp.experiment_id]) if "wmlab.method" in r.data.tags]
        assert sorted(r.data.tags["wmlab.seed"] for r in runs) == ["1", "2", "3"]
        for run in runs:
            assert run.info.status == "FINISHED"
            steps = [m.step for m in client.get_metric_history(run.info.run_id, "eval/episode_return")]
            assert steps == [100, 200]
            # artifacts went through the server into the server's store, not the runs' folder
            assert {"config.yaml", "model"} <= {a.path for a in client.list_artifacts(run.info.run_id)}
        assert list((tmp_path / "server" / "mlflow" / "artifacts").rglob("config.yaml"))
        assert not (tmp_path / "runs" / "mlflow").exists()
    finally:
        srv.send_signal(signal.SIGTERM)
        try:
            srv.wait(timeout=30)
        except subprocess.TimeoutExpired:
            srv.kill()
