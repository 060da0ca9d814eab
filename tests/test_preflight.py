"""Setup problems fail before any env step, in one line, with exit status 2: folders, the
tracking store or server, the GL backend (only for commands that render)."""

import ctypes.util
import http.server
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from wmlab import preflight
from wmlab.cli import main
from wmlab.errors import WmlabError

DEBUG = ["fit", "--method", "tdmpc", "--env", "cartpole-swingup", "--preset", "debug"]


def one_line_error(capsys, *needles):
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    for needle in needles:
        assert needle in err, err
    return err


def no_run_started(tmp_path):
    """Nothing was tracked and nothing checkpointed: the command stopped before the run."""
    assert not (tmp_path / "checkpoints").exists() or not any((tmp_path / "checkpoints").iterdir())
    db = tmp_path / "mlflow" / "mlflow.db"
    if db.exists():
        import mlflow

        client = mlflow.MlflowClient(f"sqlite:///{db}")
        assert not client.search_runs([e.experiment_id for e in client.search_experiments()])


def test_unwritable_checkpoint_folder(tmp_path, capsys):
    (tmp_path / "afile").write_text("")
    assert main([*DEBUG, "checkpoint.dir=afile/ckpts"]) == 2
    one_line_error(capsys, "cannot write checkpoints to afile/ckpts: afile is a file", "checkpoint.dir")
    no_run_started(tmp_path)
    assert main([*DEBUG, "checkpoint.dir=afile"]) == 2
    one_line_error(capsys, "it is a file, not a folder")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes to read-only folders")
def test_read_only_checkpoint_folder(tmp_path, capsys):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        assert main([*DEBUG, f"checkpoint.dir={folder}"]) == 2
        one_line_error(capsys, "Permission denied")
    finally:
        folder.chmod(0o755)


def test_unwritable_mlflow_store(tmp_path, capsys, monkeypatch):
    (tmp_path / "afile").write_text("")
    assert main([*DEBUG, f"tracking.uri=sqlite:///{tmp_path}/afile/sub/mlflow.db"]) == 2
    one_line_error(capsys, "cannot write the MLflow store", "tracking.uri")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/afile/runs.db")
    assert main(DEBUG) == 2
    one_line_error(capsys, "$MLFLOW_TRACKING_URI")
    no_run_started(tmp_path)


@pytest.mark.parametrize("uri", ["file://{}/mlruns", "{}/mlruns"])
def test_a_folder_store_is_one_line_unless_mlflow_allows_it(tmp_path, capsys, monkeypatch, uri):
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    assert main([*DEBUG, f"tracking.uri={uri.format(tmp_path)}"]) == 2
    one_line_error(capsys, "MLflow's file store", "sqlite:///", "MLFLOW_ALLOW_FILE_STORE")
    no_run_started(tmp_path)
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    assert preflight.tracking_store(uri.format(tmp_path)) == uri.format(tmp_path)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_store_of_an_unknown_scheme_is_one_line(capsys):
    assert main([*DEBUG, "tracking.uri=nosuch://x"]) == 2
    err = capsys.readouterr().err
    assert "the MLflow store nosuch://x (tracking.uri) has an unknown scheme 'nosuch'; valid: " in err
    assert "sqlite" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_unreachable_tracking_server_fails_at_once(tmp_path, capsys):
    main(["config", "--method", "tdmpc", "--env", "cartpole-swingup"])  # imports done before timing
    capsys.readouterr()
    start = time.monotonic()
    assert main([*DEBUG, f"tracking.uri=http://127.0.0.1:{_closed_port()}/"]) == 2
    assert time.monotonic() - start < 10
    one_line_error(capsys, "cannot reach the MLflow tracking server", "tracking.uri")
    no_run_started(tmp_path)


def test_silent_server_times_out(monkeypatch):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)  # accepts connections, never answers
    monkeypatch.setattr(preflight, "SERVER_TIMEOUT_S", 0.5)
    try:
        start = time.monotonic()
        with pytest.raises(WmlabError, match="cannot reach the MLflow tracking server"):
            preflight.tracking_store(f"http://127.0.0.1:{listener.getsockname()[1]}")
        assert time.monotonic() - start < 5
    finally:
        listener.close()


class _Answer(http.server.BaseHTTPRequestHandler):
    code = 404

    def do_GET(self):
        self.send_response(self.code)
        self.end_headers()
        self.wfile.write(b"OK")

    def log_message(self, *args):
        pass


@pytest.mark.parametrize("code, ok", [(200, True), (401, True), (404, False)])
def test_server_answer(code, ok):
    handler = type("Handler", (_Answer,), {"code": code})
    server = http.server.HTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    uri = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        if ok:
            assert preflight.tracking_store(uri) == uri
        else:
            with pytest.raises(WmlabError, match="answered HTTP 404 at /health: it is not an MLflow"):
                preflight.tracking_store(uri)
    finally:
        server.shutdown()


GL_SCRIPT = textwrap.dedent("""
    import sys
    from wmlab.cli import main
    codes = {}
    codes["list"] = main(["list"])
    codes["config"] = main(["config", "--method", "tdmpc", "--env", "cartpole-swingup"])
    codes["video"] = main(["fit", "--method", "tdmpc", "--env", "cartpole-swingup", "--preset", "debug"])
    codes["pixels"] = main(["fit", "--method", "tdmpc", "--env", "cartpole-swingup", "--preset", "debug",
                            "env.obs=pixels", "eval.video=false"])
    # the same run without rendering: the state env steps (the rest is the smoke tests' job)
    from wmlab.config import env_config
    from wmlab.envs.dmc import DMControl
    env = DMControl().make("cartpole-swingup", env_config("cartpole-swingup"), seed=0)
    codes["state env"] = int(env.rollout(3)["observation"].shape != (3, 5))
    print("CODES", codes)
""")


def _run_with_gl(backend: str, tmp_path):
    out = subprocess.run([sys.executable, "-c", GL_SCRIPT], capture_output=True, text=True, cwd=tmp_path,
                         env={**os.environ, "MUJOCO_GL": backend}, timeout=600)
    assert out.returncode == 0 and "Traceback" not in out.stderr, out.stderr[-3000:]
    codes = eval(out.stdout.split("CODES", 1)[1])  # a dict literal printed above
    errors = [line for line in out.stderr.splitlines() if line.startswith("wmlab: error:")]
    return codes, errors


def test_unknown_gl_backend_only_stops_commands_that_render(tmp_path):
    codes, errors = _run_with_gl("nosuch", tmp_path)
    assert codes == {"list": 0, "config": 0, "video": 2, "pixels": 2, "state env": 0}
    assert len(errors) == 2 and all("MUJOCO_GL=nosuch is not a backend mujoco knows" in e for e in errors)
    assert "Videos (eval.video)" in errors[0] and "Pixel observations" in errors[1]
    assert not (tmp_path / "checkpoints").exists()


@pytest.mark.skipif(ctypes.util.find_library("OSMesa") is not None, reason="OSMesa is installed here")
def test_osmesa_without_its_library(tmp_path):
    codes, errors = _run_with_gl("osmesa", tmp_path)
    assert codes == {"list": 0, "config": 0, "video": 2, "pixels": 2, "state env": 0}
    assert all("libOSMesa.so is not installed" in e and "libosmesa6" in e for e in errors)


def test_families_that_render_through_gl():
    from wmlab.config import env_config
    from wmlab.envs.atari import Atari
    from wmlab.envs.dmc import DMControl
    from wmlab.envs.goal import Goal
    from wmlab.envs.gym import Gym

    assert DMControl().uses_gl("cheetah-run", env_config("cheetah-run"))
    assert Goal().uses_gl("reacher", env_config("goal:reacher"))
    assert Gym().uses_gl("HalfCheetah-v5", env_config("gym:HalfCheetah-v5"))
    assert not Gym().uses_gl("CartPole-v1", env_config("gym:CartPole-v1"))
    assert not Atari().uses_gl("pong", env_config("atari:pong"))
