"""The real entry point end to end: a smoke run per method, resume, eval, bad input."""

import importlib.util
import math
import re
import subprocess
import sys

import mlflow
import pytest

from wmlab import registry
from wmlab.cli import main
from wmlab.tracking import tracking_uri

METHODS = registry.names(registry.METHODS)
ENV = "cartpole-swingup"


def client():
    return mlflow.MlflowClient(tracking_uri(None))


def only_run():
    c = client()
    exp = c.get_experiment_by_name("wmlab")
    runs = c.search_runs([exp.experiment_id])
    assert len(runs) == 1
    return runs[0]


def steps_of(run, key):
    return [m.step for m in client().get_metric_history(run.info.run_id, key)]


@pytest.mark.parametrize("name", METHODS)
def test_fit_smoke(name, capsys):
    # from states: the pixel path has its own smoke test below (conv nets cost about 1 s per
    # update on a CPU even at debug sizes); a method that needs a kind of env names one, and
    # one that learns from pixels only (worldmodels) runs on them
    cls = registry.load_method(name)[0]
    env = cls.example_env or ENV
    obs = ["env.obs=state"] if "state" in cls.observations else []
    assert main(["fit", "--method", name, "--env", env, "--preset", "debug", *obs]) == 0
    run = only_run()
    assert run.info.status == "FINISHED"
    assert re.fullmatch(f"{name}-{env}-s1-[0-9a-f]{{4}}", run.info.run_name), run.info.run_name
    tags = run.data.tags
    assert tags["wmlab.method"] == name and tags["wmlab.env"] == env and tags["wmlab.seed"] == "1"
    assert tags["wmlab.plugin"] and tags["wmlab.plugin_version"]
    from wmlab.config import compose, flatten

    cfg = compose(name, cls, env, presets=["debug"], overrides=obs)
    assert run.data.params == {k: str(v) for k, v in flatten(cfg).items()}  # the resolved config
    metrics = run.data.metrics
    assert "eval/episode_return" in metrics and "collect/episode_return" in metrics
    assert any(k.startswith("train/loss/") for k in metrics), sorted(metrics)
    # x-axis is env steps: the last eval is at the end of the budget (400 env steps in debug)
    assert steps_of(run, "eval/episode_return")[-1] == 400
    if name == "plan2explore":  # the adapt stage trains without env steps: evaluated again after it
        assert steps_of(run, "eval/episode_return").count(400) == 2
    artifacts = {a.path for a in client().list_artifacts(run.info.run_id)}
    assert {"config.yaml", "model", "videos"} <= artifacts
    out = capsys.readouterr().out
    assert "400 env steps" in out


def test_fit_smoke_from_pixels_with_openloop_video(capsys):
    """The RSSM methods' debug presets run from states; one pixel run covers the conv
    encoder and decoder, rendering, and the open-loop prediction video beside the eval one."""
    argv = ["fit", "--method", "dreamer", "--env", ENV, "--preset", "debug", "env.obs=pixels",
            "run.steps=240", "eval.every=240", "checkpoint.every=0"]
    assert main(argv) == 0
    run = only_run()
    assert run.info.status == "FINISHED" and run.data.params["env.obs"] == "pixels"
    videos = {a.path for a in client().list_artifacts(run.info.run_id, "videos")}
    assert any("openloop" in v for v in videos) and any("eval" in v for v in videos), videos


def test_fit_smoke_atari_discrete_actions(capsys):
    """DreamerV2 on an Atari game: 64x64 grayscale frames, one-hot actions, terminal rows."""
    argv = ["fit", "--method", "dreamerv2", "--env", "atari:pong", "--preset", "debug",
            "run.steps=240", "eval.every=240", "checkpoint.every=0", "env.episode_steps=120"]
    assert main(argv) == 0
    run = only_run()
    assert run.info.status == "FINISHED" and run.data.params["env.grayscale"] == "True"
    assert run.data.params["env.action_repeat"] == "4"
    assert "train/loss/actor" in run.data.metrics and "eval/episode_return" in run.data.metrics


def test_resume_continues_the_same_run(capsys):
    name = "tdmpc"
    common = ["--method", name, "--env", ENV, "--preset", "debug", "env.action_repeat=2"]
    assert main(["fit", *common, "run.steps=300", "eval.every=0", "checkpoint.every=100"]) == 0
    first = only_run()
    ckpt_dir = first.data.tags["wmlab.checkpoint_dir"]
    assert main(["fit", "--resume", first.info.run_id, "run.steps=600"]) == 0
    run = only_run()  # the same run, continued
    assert run.info.run_id == first.info.run_id and run.info.status == "FINISHED"
    from wmlab import checkpoint

    _, state = checkpoint.load(ckpt_dir)
    progress = state["progress"]
    assert progress["env_steps"] == 600
    # no env step lost or repeated: episodes of 100 env steps (debug), 6 of them in the log
    episode_steps = steps_of(run, "collect/episode_return")
    assert episode_steps == sorted(set(episode_steps)) == [100, 200, 300, 400, 500, 600]
    # no burst of updates: exactly train_ratio (1) x (policy steps - prefill) updates in all;
    # tdmpc's debug prefill is seed_steps=50 policy steps
    assert progress["updates"] == 600 // 2 - 50
    # the replay holds every policy step once, across the resume
    assert progress["policy_steps"] == 300


def test_eval_command(capsys, tmp_path):
    assert main(["fit", "--method", "tdmpc", "--env", ENV, "--preset", "debug", "eval.every=0"]) == 0
    run = only_run()
    assert main(["eval", "--checkpoint", run.info.run_id, "--episodes", "2",
                 "--video", str(tmp_path / "v.mp4")]) == 0
    out = capsys.readouterr().out
    assert "over 2 episodes" in out and "+-" in out
    assert (tmp_path / "v.mp4").stat().st_size > 1000


@pytest.mark.parametrize("argv, message", [
    (["fit", "--method", "nosuch", "--env", ENV], "unknown method 'nosuch'"),
    (["fit", "--method", "tdmpc", "--env", "cheetah-fly"], "cheetah-run"),
    (["fit", "--method", "tdmpc", "--env", ENV, "run.stepz=3"], "unknown config key 'run.stepz'"),
    (["fit", "--method", "tdmpc", "--env", ENV, "run.steps"], "malformed override"),
    (["fit", "--method", "tdmpc", "--env", ENV, "--preset", "nope"], "valid presets"),
    (["fit", "--method", "tdmpc", "--env", ENV, "run.precision=fp7"], "run.precision='fp7' is not valid; valid: 32-true"),
    (["fit", "--method", "tdmpc", "--env", ENV, "run.accelerator=abacus"], "accelerator"),
    (["eval", "--checkpoint", "does-not-exist"], "neither a checkpoint folder"),
    # settings a method cannot run, before its run starts
    (["fit", "--method", "tdmpc", "--env", ENV, "--preset", "debug", "method.horizon=-1"],
     "method.horizon=-1 must be >= 1"),
    (["fit", "--method", "tdmpc", "--env", ENV, "--preset", "debug", "method.num_elites=100"],
     "method.num_elites=100 must be <= method.num_samples=32"),
    (["fit", "--method", "planet", "--env", ENV, "--preset", "debug", "method.elites=100"],
     "method.elites=100 must be <= method.candidates=32"),
    (["fit", "--method", "dreamer", "--env", ENV, "--preset", "debug", "method.batch_size=0"],
     "method.batch_size=0 must be >= 1"),
    (["fit", "--method", "dreamer", "--env", ENV, "--preset", "debug", "env.image_size=32"],
     "read 64x64 images, not 32x32: set env.image_size=64"),
    (["fit", "--method", "tdmpc", "--env", ENV, "--preset", "debug", "env.obs=pixels", "env.image_size=16"],
     "needs images of at least 39x39 pixels, not 16x16"),
    (["fit", "--method", "tdmpc", "--env", ENV, "replay.device=nosuch"],
     "replay.device='nosuch' is not a device; valid: auto (the training device), cpu"),
    (["fit", "--method", "tdmpc", "--env", ENV, "tracking.experiment="],
     "bad value for 'tracking.experiment' (from command-line override): it needs a value"),
    (["fit", "--method", "tdmpc", "--env", ENV, "replay.device=meta"],
     "replay.device='meta': the replay holds its data on the CPU or a GPU; valid: auto"),
    (["fit", "--method", "worldmodels", "--env", ENV], "worldmodels learns from pixels, not env.obs=state"),
    # --resume takes neither presets nor sweep options
    (["fit", "--resume", "some-run", "--preset", "debug"], "drop --preset"),
    (["fit", "--resume", "some-run", "--jobs", "2"], "drop --seeds/--sweep/--jobs"),
    # a video that cannot be written fails before the episodes, not after
    (["eval", "--checkpoint", "does-not-exist", "--video", "."], "--video . is a folder; give a file"),
])
def test_bad_input_is_one_clear_line(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.skipif(importlib.util.find_spec("torch_xla") is not None, reason="torch_xla is installed")
def test_an_accelerator_without_its_package_is_one_line(capsys):
    assert main(["fit", "--method", "tdmpc", "--env", ENV, "run.accelerator=tpu"]) == 2
    err = capsys.readouterr().err
    assert "invalid Lightning settings in run.*" in err and "Traceback" not in err


def test_a_replay_device_this_machine_lacks_is_named():
    import torch

    from wmlab.errors import ConfigError
    from wmlab.loop import check_replay_device

    gpus = torch.cuda.device_count()
    with pytest.raises(ConfigError, match=rf"replay.device='cuda:{gpus}': this machine has {gpus} CUDA devices; "
                                          r"valid: auto \(the training device\), cpu"):
        check_replay_device(f"cuda:{gpus}")
    check_replay_device("cpu")


def test_config_rejects_an_unknown_task_without_the_plugin_index(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("WMLAB_CACHE_DIR", str(tmp_path / "fresh-cache"))  # nothing indexed yet
    assert main(["config", "--method", "tdmpc", "--env", "cheetah-runn"]) == 2
    err = capsys.readouterr().err
    assert "unknown dmc task 'cheetah-runn'; did you mean: cheetah-run?" in err
    assert main(["config", "--method", "tdmpc", "--env", "goal:nosuch"]) == 2
    assert "unknown goal task 'nosuch'; valid: cheetah-velocity, point-maze, pusher, reacher" in capsys.readouterr().err


def test_corrupt_checkpoint(tmp_path, capsys):
    bad = tmp_path / "ckpt"
    bad.mkdir()
    (bad / "state.pt").write_bytes(b"not a checkpoint")
    assert main(["eval", "--checkpoint", str(bad)]) == 2
    assert "cannot read checkpoint" in capsys.readouterr().err


def test_config_and_list_commands(capsys):
    assert main(["config", "--method", "tdmpc", "--env", ENV, "method.horizon=3"]) == 0
    out = capsys.readouterr().out
    assert "horizon: 3" in out and "name: cartpole-swingup" in out
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "tdmpc" in out and "dmc" in out and "wmlab" in out


def test_console_script_exit_code():
    proc = subprocess.run([sys.executable, "-m", "wmlab.cli", "fit", "--method", "nosuch", "--env", ENV],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr


def test_ctrl_c_marks_killed_and_keeps_the_checkpoint(tmp_path):
    import os
    import signal
    import time

    from wmlab import checkpoint

    cmd = [sys.executable, "-m", "wmlab.cli", "fit", "--method", "tdmpc", "--env", ENV, "--preset",
           "debug", "run.steps=100000", "checkpoint.every=50", "eval.every=0"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    deadline = time.time() + 600  # generous: a loaded CI machine imports slowly
    while not list(tmp_path.glob("checkpoints/*/latest")) and time.time() < deadline:
        time.sleep(0.5)
        assert proc.poll() is None, proc.communicate()
    assert list(tmp_path.glob("checkpoints/*/latest")), "no checkpoint was written in time"
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    run = only_run()
    assert run.info.status == "KILLED"
    ckpt, state = checkpoint.load(run.data.tags["wmlab.checkpoint_dir"])
    assert state["progress"]["env_steps"] > 0
