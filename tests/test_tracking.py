"""MLflow tracking: store resolution, run lifecycle, metrics on env steps, videos, the UI.

Every test runs in its own temporary folder (conftest chdirs there), so ``./mlflow/`` is a
private store. Creating a SQLite store runs MLflow's migrations (1-2 s), so most tests copy
a store made once per session instead of creating their own.
"""

import re
import shutil
import socket
import subprocess
import time
import urllib.request

import imageio.v2 as imageio
import mlflow
import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from wmlab.config import CoreConfig
from wmlab.errors import WmlabError
from wmlab.tracking import (
    MlflowEnvStepLogger,
    NullTracker,
    Tracker,
    artifact_root,
    find_run,
    local_store_uri,
    tracking_uri,
    ui_command,
)

START = dict(method="tdmpc", env="cartpole-swingup", seed=3, plugin_dist="wmlab",
             plugin_version="0.1.0")


@pytest.fixture(scope="session")
def _template_db(tmp_path_factory):
    root = tmp_path_factory.mktemp("template")
    client = mlflow.MlflowClient(tracking_uri(local_store_uri(root)))
    client.search_experiments()
    return root / "mlflow" / "mlflow.db"


@pytest.fixture
def store(tmp_path, _template_db):
    """A ready local store in ./mlflow/ (a copy of the session's template)."""
    (tmp_path / "mlflow").mkdir(exist_ok=True)
    shutil.copy(_template_db, tmp_path / "mlflow" / "mlflow.db")
    return tracking_uri(None)


def make_cfg(**overrides):
    cfg = OmegaConf.structured(CoreConfig)
    cfg.env.name = START["env"]
    cfg.run.seed = START["seed"]
    for key, value in overrides.items():
        OmegaConf.update(cfg, key, value)
    OmegaConf.set_readonly(cfg, True)
    return cfg


def client_of(tracker):
    return mlflow.MlflowClient(tracker.tracking_uri)


def steps(tracker, key):
    return [(m.step, m.value) for m in client_of(tracker).get_metric_history(tracker.run_id, key)]


# --- store resolution -------------------------------------------------------------------------


def test_uri_resolution_order(tmp_path, monkeypatch):
    local = tracking_uri(None)
    assert local == f"sqlite:///{tmp_path}/mlflow/mlflow.db"
    assert (tmp_path / "mlflow" / "artifacts").is_dir()
    assert artifact_root(local) == (tmp_path / "mlflow" / "artifacts").as_uri()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://tracking.example:5000")
    assert tracking_uri(None) == "http://tracking.example:5000"
    assert artifact_root(tracking_uri(None)) is None
    assert tracking_uri("sqlite:///elsewhere/x.db") == "sqlite:///elsewhere/x.db"
    assert (tmp_path / "elsewhere" / "artifacts").is_dir()


def test_env_var_store_is_created_quietly(tmp_path, monkeypatch, capfd):
    uri = f"sqlite:///{tmp_path}/shared/runs.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    with Tracker.start(make_cfg(), **START) as t:
        pass
    assert t.tracking_uri == uri
    assert not (tmp_path / "mlflow").exists()
    assert t.artifact_uri.startswith((tmp_path / "shared" / "artifacts").as_uri())
    assert (tmp_path / "shared" / "artifacts" / "wmlab" / t.run_id / "artifacts" / "config.yaml").exists()
    # the Default experiment also keeps its artifacts next to the database
    default = mlflow.MlflowClient(uri).get_experiment("0")
    assert default.artifact_location == (tmp_path / "shared" / "artifacts" / "0").as_uri()
    out, err = capfd.readouterr()
    assert out == ""
    assert "Creating initial MLflow database tables" not in err


# --- a new run --------------------------------------------------------------------------------


def test_new_run_has_name_tags_params_and_config(store):
    cfg = make_cfg()
    with Tracker.start(cfg, **START) as t:
        t.set_tag("wmlab.checkpoint_dir", "/ckpt/here")
    run = client_of(t).get_run(t.run_id)
    assert re.fullmatch("tdmpc-cartpole-swingup-s3-[0-9a-f]{4}", run.info.run_name)
    assert run.info.run_name == t.run_name
    assert run.info.status == "FINISHED"
    tags = run.data.tags
    assert tags["mlflow.runName"] == run.info.run_name
    assert tags["wmlab.method"] == "tdmpc" and tags["wmlab.env"] == "cartpole-swingup"
    assert tags["wmlab.seed"] == "3" and tags["wmlab.plugin"] == "wmlab"
    assert tags["wmlab.plugin_version"] == "0.1.0" and tags["wmlab.version"]
    assert tags["wmlab.checkpoint_dir"] == "/ckpt/here"
    assert "wmlab.git_revision" not in tags  # tmp_path is not a git checkout
    params = run.data.params
    assert params["run.seed"] == "3" and params["env.name"] == "cartpole-swingup"
    assert params["tracking.experiment"] == "wmlab"
    exp = client_of(t).get_experiment(run.info.experiment_id)
    assert exp.name == "wmlab"
    assert exp.artifact_location == artifact_root(store) + "/wmlab"
    text = (mlflow.artifacts.download_artifacts(run_id=t.run_id, artifact_path="config.yaml",
                                                tracking_uri=store))
    assert OmegaConf.load(text) == OmegaConf.to_container(cfg)


def test_run_name_and_experiment_from_config(store):
    cfg = make_cfg(**{"run.name": "my-run", "tracking.experiment": "ablation"})
    with Tracker.start(cfg, **START) as t:
        assert t.experiment_name == "ablation"
    assert client_of(t).get_run(t.run_id).info.run_name == "my-run"


def test_git_revision_tag(store, tmp_path):
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"]
    (tmp_path / "f.txt").write_text("a")
    subprocess.run(["git", "init", "-q"], check=True)
    subprocess.run([*git, "add", "f.txt"], check=True)
    subprocess.run([*git, "commit", "-qm", "x"], check=True)
    head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    with Tracker.start(make_cfg(), **START) as clean:
        pass
    (tmp_path / "f.txt").write_text("b")
    with Tracker.start(make_cfg(), **START) as dirty:
        pass
    assert client_of(clean).get_run(clean.run_id).data.tags["wmlab.git_revision"] == head
    assert client_of(dirty).get_run(dirty.run_id).data.tags["wmlab.git_revision"] == head + "-dirty"


def test_params_are_chunked_and_clipped(store):
    with Tracker.start(None, **START) as t:
        t.log_params({f"p{i}": i for i in range(250)} | {"long": "x" * 7000})
    params = client_of(t).get_run(t.run_id).data.params
    assert len(params) == 251 and params["p249"] == "249"
    assert len(params["long"]) == 6000 and params["long"].endswith("...")


# --- metrics ----------------------------------------------------------------------------------


def test_lightning_logger_uses_env_steps(store):
    import lightning as L
    from lightning.pytorch.loggers import MLFlowLogger

    progress = {"env_steps": 0}

    class Tiny(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.ones(1))

        def training_step(self, batch, batch_idx):
            progress["env_steps"] += 10  # 10 env steps per update, unlike Lightning's step
            loss = (self.w * batch).pow(2).mean()
            self.log("train/loss/mse", loss)
            return loss

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.01)

    with Tracker.start(make_cfg(), **START) as t:
        logger = MlflowEnvStepLogger(t, step_fn=lambda: progress["env_steps"])
        assert isinstance(logger, MLFlowLogger) and logger.tracker is t
        assert logger.version == logger.run_id == t.run_id and logger.name == t.experiment_id
        assert logger.experiment is t.client  # the same client, store and run
        trainer = L.Trainer(max_steps=6, logger=logger, log_every_n_steps=2, enable_progress_bar=False,
                            enable_checkpointing=False, enable_model_summary=False, accelerator="cpu")
        trainer.fit(Tiny(), torch.utils.data.DataLoader(torch.ones(100, 1), batch_size=None))
        logger.log_hyperparams({"ignored": 1})
        assert client_of(t).get_run(t.run_id).info.status == "RUNNING"  # finalize does not end it
        # finalize flushed: metrics are in the store before the run ends
        history = steps(t, "train/loss/mse")
    assert [s for s, _ in history] == [20, 40, 60]
    run = client_of(t).get_run(t.run_id)
    assert "epoch" not in run.data.metrics and "ignored" not in run.data.params


def test_null_tracker_and_its_logger_log_nothing(store):
    null = NullTracker("f" * 32, store)
    assert null.tracking_uri == store and null.client is None and not null.ended
    with null as same:
        same.log_metrics({"x": 1.0}, step=1)
        same.set_tag("wmlab.stage", "explore")
        same.flush()
    logger = MlflowEnvStepLogger(null, step_fn=lambda: 5)  # as the loop builds it on other ranks
    assert logger.version == "f" * 32
    logger.log_metrics({"x": 1.0}, step=3)
    logger.finalize("success")
    client = mlflow.MlflowClient(store)
    assert client.search_runs([e.experiment_id for e in client.search_experiments()]) == []


class CountingClient:
    """Wraps a tracker's client and records the metrics of every ``log_batch`` call."""

    def __init__(self, client):
        self._client = client
        self.batches = []

    def log_batch(self, run_id, metrics=(), params=(), tags=(), synchronous=None):
        if metrics:
            self.batches.append([(m.key, m.value, m.step) for m in metrics])
        return self._client.log_batch(run_id, metrics=metrics, params=params, tags=tags,
                                      synchronous=synchronous)

    def __getattr__(self, name):
        return getattr(self._client, name)


def test_tensor_metrics_wait_on_device_and_go_in_one_batch(store):
    with Tracker.start(None, **START, flush_every_s=3600) as t:
        t.client = counting = CountingClient(t.client)
        t.log_metrics({"c": torch.tensor([3.0], dtype=torch.bfloat16)}, step=8)
        assert counting.batches == []  # held
        t.log_metrics({"a": np.float32(1.5), "b": 2}, step=8)  # plain numbers go at once
        assert counting.batches == [[("a", 1.5, 8), ("b", 2.0, 8)]]
        # 1000 values held: all of them go, in batches of MLflow's limit of 1000
        t.log_metrics({f"m/{i}": torch.tensor(float(i)) for i in range(1500)}, step=7)
        assert [len(b) for b in counting.batches] == [2, 1000, 501]
        t.flush()
        assert len(counting.batches) == 3
        assert client_of(t).get_run(t.run_id).data.metrics == {f"m/{i}": float(i) for i in range(1500)} | {
            "a": 1.5, "b": 2.0, "c": 3.0}
        with pytest.raises(ValueError, match="scalar"):
            t.log_metrics({"v": torch.ones(3)}, step=1)
        with pytest.raises(ValueError, match="invalid metric name"):  # now, not in MLflow's writer
            t.log_metrics({"ok": 1.0, "bad@name": 1.0}, step=1)
        t.flush()
        assert "ok" not in client_of(t).get_run(t.run_id).data.metrics  # nothing of that call sent
    # a flush interval of 0 sends tensor values on every call
    with Tracker.start(None, **START, flush_every_s=0) as t2:
        t2.client = counting = CountingClient(t2.client)
        t2.log_metrics({"x": torch.tensor(1.0)}, step=1)
        assert counting.batches == [[("x", 1.0, 1)]]


def test_thousand_metrics_are_one_log_batch_and_all_arrive(store):
    with Tracker.start(None, **START, flush_every_s=3600) as t:
        t.client = counting = CountingClient(t.client)
        for i in range(999):  # one value per call, as a training loop logs a loss
            t.log_metrics({"train/loss/x": torch.tensor(float(i))}, step=i)
        assert counting.batches == []  # held on the device: no host transfer per call
        t.log_metrics({"train/loss/x": torch.tensor(999.0)}, step=999)
        t.log_metrics({f"eval/m{i}": float(i) for i in range(1000)}, step=5)
        t.flush()
        assert [len(b) for b in counting.batches] == [1000, 1000]
    assert steps(t, "train/loss/x") == [(i, float(i)) for i in range(1000)]
    metrics = client_of(t).get_run(t.run_id).data.metrics
    assert all(metrics[f"eval/m{i}"] == float(i) for i in range(1000))


# --- artifacts --------------------------------------------------------------------------------


def test_video_artifact_is_a_valid_mp4(store, tmp_path):
    frames = np.random.default_rng(0).integers(0, 255, (20, 64, 64, 3), dtype=np.uint8)
    with Tracker.start(None, **START) as t:
        path = t.log_video(frames, name="eval", step=12_000)
        assert path == "videos/eval_step000012000.mp4"
        (tmp_path / "notes.txt").write_text("hello")
        t.log_artifact(tmp_path / "notes.txt", "extra")
    listed = [a.path for a in client_of(t).list_artifacts(t.run_id, "videos")]
    assert listed == [path]
    local = mlflow.artifacts.download_artifacts(run_id=t.run_id, artifact_path=path,
                                                tracking_uri=store, dst_path=str(tmp_path / "dl"))
    with open(local, "rb") as f:
        assert f.read(12)[4:8] == b"ftyp"
    reader = imageio.get_reader(local)
    shapes = [frame.shape for frame in reader]
    assert reader.get_meta_data()["codec"] == "h264"
    assert len(shapes) == 20 and shapes[0] == (64, 64, 3)
    assert [a.path for a in client_of(t).list_artifacts(t.run_id, "extra")] == ["extra/notes.txt"]


def test_write_mp4_pads_odd_sizes_and_takes_channels_first(tmp_path):
    from wmlab.video import write_mp4

    frames = np.random.default_rng(0).random((5, 3, 33, 45))  # [T, 3, H, W] floats
    out = write_mp4(frames, tmp_path / "odd.mp4", fps=10)
    assert out == tmp_path / "odd.mp4"
    reader = imageio.get_reader(out)
    assert [f.shape for f in reader] == [(34, 46, 3)] * 5


# --- ending and resuming ----------------------------------------------------------------------


def status(t):
    return client_of(t).get_run(t.run_id).info.status


def test_terminal_statuses(store):
    with Tracker.start(None, **START) as ok:
        pass
    assert status(ok) == "FINISHED"

    with pytest.raises(ValueError):
        with Tracker.start(None, **START) as failed:
            failed.log_metrics({"x": 1.0}, step=1)
            raise ValueError("boom")
    assert status(failed) == "FAILED"
    assert steps(failed, "x") == [(1, 1.0)]  # flushed before ending

    with pytest.raises(KeyboardInterrupt):
        with Tracker.start(None, **START) as killed:
            raise KeyboardInterrupt
    assert status(killed) == "KILLED"

    # Lightning turns Ctrl+C in Trainer.fit into sys.exit(1) raised while handling it
    with pytest.raises(SystemExit):
        with Tracker.start(None, **START) as lightning_killed:
            try:
                raise KeyboardInterrupt
            except KeyboardInterrupt:
                raise SystemExit(1)
    assert status(lightning_killed) == "KILLED"

    t = Tracker.start(None, **START)
    t.end("KILLED")
    t.end("FINISHED")  # a second end changes nothing
    assert status(t) == "KILLED"
    with pytest.warns(RuntimeWarning):
        t.log_metrics({"late": 1.0}, step=1)
    with pytest.raises(ValueError):
        t.end("DONE")


def test_resume_reopens_the_same_run_and_appends(store):
    cfg = make_cfg()
    with Tracker.start(cfg, **START) as first:
        first.log_metrics({"collect/episode_return": 1.0}, step=100)
        first.set_tag("wmlab.checkpoint_dir", "/ckpt/run")
    assert status(first) == "FINISHED"

    found = find_run(first.run_id)
    assert found.info.run_id == first.run_id
    assert found.data.tags["wmlab.checkpoint_dir"] == "/ckpt/run"
    assert find_run(first.run_name).info.run_id == first.run_id
    with pytest.raises(WmlabError, match="no MLflow run"):
        find_run("0" * 32)
    with pytest.raises(WmlabError, match="no MLflow run"):
        find_run("never-named")

    second = Tracker.start(cfg, **START, run_id=first.run_id)
    assert second.run_id == first.run_id and second.resumed
    assert status(second) == "RUNNING"
    second.log_metrics({"collect/episode_return": 2.0}, step=200)
    second.end()
    assert status(second) == "FINISHED"
    assert steps(second, "collect/episode_return") == [(100, 1.0), (200, 2.0)]
    exp = client_of(first).get_experiment_by_name("wmlab")
    assert len(client_of(first).search_runs([exp.experiment_id])) == 1
    with pytest.raises(WmlabError, match="no MLflow run"):
        Tracker.start(cfg, **START, run_id="f" * 32)


# --- UI ---------------------------------------------------------------------------------------


def test_ui_command_serves_the_local_store(store):
    cmd, env = ui_command(None, port=5123)
    assert cmd[1:4] == ["server", "--backend-store-uri", store]
    assert cmd[cmd.index("--port") + 1] == "5123" and cmd[cmd.index("--workers") + 1] == "1"
    assert cmd[cmd.index("--host") + 1] == "127.0.0.1"
    assert cmd[cmd.index("--default-artifact-root") + 1] == artifact_root(store)
    assert env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "false"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=5) as r:
        return r.read()


@pytest.mark.slow
def test_ui_answers_and_serves_artifacts(store, tmp_path):
    """Starts the real server (5-10 s on 2 cores): the REST API, the page and an artifact."""
    import signal
    import sys

    with Tracker.start(make_cfg(), **START) as t:
        t.log_video(np.zeros((4, 64, 64, 3), np.uint8), name="eval", step=5)
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-c", f"import sys; from wmlab.tracking import ui; sys.exit(ui(None, {port}))"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 60
        while True:
            try:
                body = _get(f"{base}/api/2.0/mlflow/experiments/search?max_results=10")
                break
            except OSError:
                assert proc.poll() is None, proc.stdout.read().decode()
                assert time.time() < deadline, "the MLflow UI did not answer in 60 s"
                time.sleep(0.3)
        assert b'"wmlab"' in body
        assert b"<title>MLflow</title>" in _get(f"{base}/")
        config = _get(f"{base}/get-artifact?path=config.yaml&run_uuid={t.run_id}")
        assert OmegaConf.create(config.decode()).env.name == "cartpole-swingup"
        video = _get(f"{base}/get-artifact?path=videos/eval_step000000005.mp4&run_uuid={t.run_id}")
        assert video[4:8] == b"ftyp"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            import os

            os.killpg(proc.pid, signal.SIGKILL)
            raise
        out = proc.stdout.read().decode()
    assert f"http://127.0.0.1:{port}" in out
    assert code is not None
