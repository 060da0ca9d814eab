"""A third-party method package, pip-installed, runs through `wmlab fit`; the core knows nothing of it."""

import os
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest

from wmlab.tracking import tracking_uri

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "wmlab-shooting"


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    target = tmp_path_factory.mktemp("site")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target),
                    str(EXAMPLE)], check=True)
    return target


def wmlab(site, *args):
    env = {**os.environ, "PYTHONPATH": str(site)}
    return subprocess.run([sys.executable, "-m", "wmlab.cli", *args], capture_output=True, text=True,
                          env=env, timeout=600)


def test_core_does_not_mention_the_example():
    core = Path(__file__).resolve().parents[1] / "wmlab"
    assert not any("shooting" in p.read_text() for p in core.rglob("*.py"))


def test_installed_plugin_is_listed_and_runs(site):
    listed = wmlab(site, "list")
    assert listed.returncode == 0 and "shooting" in listed.stdout and "wmlab-shooting 0.1.0" in listed.stdout
    fit = wmlab(site, "fit", "--method", "shooting", "--env", "cartpole-swingup", "--preset", "debug")
    assert fit.returncode == 0, fit.stderr
    client = mlflow.MlflowClient(tracking_uri(None))
    run, = client.search_runs([client.get_experiment_by_name("wmlab").experiment_id])
    assert run.info.status == "FINISHED"
    assert run.data.tags["wmlab.plugin"] == "wmlab-shooting"
    assert "train/loss/model" in run.data.metrics and "eval/episode_return" in run.data.metrics
