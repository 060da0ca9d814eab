"""Names and lookups: unique run names, ambiguous names listed, ``wmlab eval`` logged to
MLflow with a watchable video under a new name, ``wmlab ui`` on a busy port, one
evaluation per env step."""

import re
import socket

import imageio.v3 as iio
import mlflow
import pytest
from omegaconf import OmegaConf

from wmlab import checkpoint
from wmlab.cli import main
from wmlab.config import CoreConfig
from wmlab.tracking import Tracker, tracking_uri, ui_command

START = dict(method="tdmpc", env="cartpole-swingup", seed=1, plugin_dist="wmlab", plugin_version="0.1.0")
ENV = "cartpole-swingup"


def cfg(**values):
    c = OmegaConf.structured(CoreConfig)
    for key, value in values.items():
        OmegaConf.update(c, key, value)
    return c


def client():
    return mlflow.MlflowClient(tracking_uri(None))


def test_run_names_are_unique_in_their_experiment():
    names = []
    for _ in range(3):
        with Tracker.start(cfg(), **START) as t:
            names.append(t.run_name)
    assert len(set(names)) == 3 and all(re.fullmatch(r"tdmpc-cartpole-swingup-s1-[0-9a-f]{4}", n) for n in names)
    with Tracker.start(cfg(**{"run.name": "baseline"}), **START) as first:
        pass
    with Tracker.start(cfg(**{"run.name": "baseline"}), **START) as second:
        pass
    assert first.run_name == "baseline" and re.fullmatch(r"baseline-[0-9a-f]{4}", second.run_name)
    with Tracker.start(cfg(**{"run.name": "baseline", "tracking.experiment": "other"}), **START) as third:
        pass
    assert third.run_name == "baseline"  # unique per experiment


def test_a_name_of_several_runs_lists_them(capsys, tmp_path):
    c = client()
    exp = c.create_experiment("e")
    ids = [c.create_run(exp, run_name="twin").info.run_id for _ in range(2)]
    capsys.readouterr()  # the store's own creation lines, when this test makes it first
    for argv in (["fit", "--resume", "twin"], ["eval", "--checkpoint", "twin"]):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err[0] == "wmlab: error: 2 MLflow runs are named 'twin'; give the id of one:"
        assert len(err) == 3 and {line.split()[0] for line in err[1:]} == set(ids)
    # one run of a name: that run (here its checkpoint)
    state = {"method": "tdmpc", "env": ENV, "config": "", "progress": {"env_steps": 1}}
    saved = checkpoint.save(tmp_path / "ckpts" / "x", "step-1", state)
    run = c.create_run(exp, run_name="single", tags={"wmlab.checkpoint_dir": str(saved.parent)})
    from wmlab.cli import _resume_source

    assert _resume_source("single")[0] == saved
    assert _resume_source(run.info.run_id)[0] == saved


def test_no_store_no_run(capsys):
    assert main(["eval", "--checkpoint", "nothing-here"]) == 2
    assert "no MLflow store" in capsys.readouterr().err


def test_ui_refuses_a_busy_port_and_takes_a_host(capsys):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        assert main(["ui", "--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert f"port {port} on 127.0.0.1 is in use" in err and len(err.strip().splitlines()) == 1
    cmd, _ = ui_command(None, port=5123, host="0.0.0.0")
    assert cmd[cmd.index("--host") + 1] == "0.0.0.0"
    assert main(["ui", "--host", "no.such.host.invalid", "--port", "5123"]) == 2
    assert "cannot serve the MLflow UI on host" in capsys.readouterr().err


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """One debug run of tdmpc (400 env steps, evaluations every 200)."""
    import os

    folder = tmp_path_factory.mktemp("finished")
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        assert main(["fit", "--method", "tdmpc", "--env", ENV, "--preset", "debug"]) == 0
    finally:
        os.chdir(cwd)
    return folder


def test_one_evaluation_per_env_step(finished_run, monkeypatch):
    monkeypatch.chdir(finished_run)
    c = client()
    (run,) = c.search_runs([c.get_experiment_by_name("wmlab").experiment_id])
    steps = [m.step for m in c.get_metric_history(run.info.run_id, "eval/episode_return")]
    assert steps == [200, 400]  # the final evaluation is the periodic one at 400
    videos = [a.path for a in c.list_artifacts(run.info.run_id, "videos")]
    assert len([v for v in videos if "step000000400" in v]) == 1


def test_eval_logs_a_child_run_and_a_new_video(finished_run, monkeypatch, capsys):
    monkeypatch.chdir(finished_run)
    c = client()
    (parent,) = c.search_runs([c.get_experiment_by_name("wmlab").experiment_id])
    capsys.readouterr()
    assert main(["eval", "--checkpoint", parent.info.run_name, "--episodes", "1"]) == 0
    assert main(["eval", "--checkpoint", parent.info.run_id, "--episodes", "1", "--video-size", "96"]) == 0
    out = capsys.readouterr().out
    first = finished_run / "eval-tdmpc-cartpole-swingup-step000000400.mp4"
    second = finished_run / "eval-tdmpc-cartpole-swingup-step000000400-2.mp4"
    assert f"video: {first.name} (256x256)" in out and f"video: {second.name} (96x96)" in out
    assert iio.imread(first, index=0).shape == (256, 256, 3)  # not the model's 64x64
    assert iio.imread(second, index=0).shape == (96, 96, 3)
    children = c.search_runs([parent.info.experiment_id],
                             filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    assert len(children) == 2
    for child in children:
        assert child.info.status == "FINISHED" and child.info.run_name.startswith(f"eval-{parent.info.run_name}-400")
        history = c.get_metric_history(child.info.run_id, "eval/episode_return")
        assert [m.step for m in history] == [400]
        assert child.data.params["eval.episodes"] == "1"
        assert [a.path for a in c.list_artifacts(child.info.run_id, "videos")][0].endswith(".mp4")
    assert len({child.info.run_name for child in children}) == 2
    # the training run itself keeps one value per step
    assert [m.step for m in c.get_metric_history(parent.info.run_id, "eval/episode_return")] == [200, 400]
    assert main(["eval", "--checkpoint", parent.info.run_id, "--episodes", "1", "--no-video",
                 "--no-mlflow"]) == 0
    assert len(c.search_runs([parent.info.experiment_id])) == 3
