"""`wmlab compare` on runs written straight into a store: selection, curves with bootstrap
bands, rliable's aggregates, outputs on disk and in MLflow, bad input."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from mlflow.entities import Metric

from wmlab.cli import main
from wmlab.compare import bootstrap_band, common_grid, RunCurve
from wmlab.tracking import LOCAL_STORE_DIR, client_for, experiment_id, local_store_uri
from wmlab.tracking.run import KIND_TAG, SWEEP_TAG

STEPS = [100, 200, 300]


def add_run(client, exp, method, env, seed, returns, *, tags=None, status="FINISHED", steps=STEPS):
    tags = {"wmlab.method": method, "wmlab.env": env, "wmlab.seed": str(seed), **(tags or {})}
    run = client.create_run(exp, run_name=f"{method}-{env}-s{seed}", tags=tags)
    metrics = [Metric("eval/episode_return", float(r), 0, s) for s, r in zip(steps, returns)]
    if metrics:
        client.log_batch(run.info.run_id, metrics=metrics)
    client.set_terminated(run.info.run_id, status)
    return run.info.run_id


@pytest.fixture(scope="session")
def _template(tmp_path_factory):
    """Two methods on two envs, 3 seeds each: `good` beats `bad` in every run (made once)."""
    root = tmp_path_factory.mktemp("compare-store")
    client = client_for(local_store_uri(root))
    exp = experiment_id(client, "wmlab")
    for env, scale in (("cartpole-swingup", 1.0), ("walker-walk", 3.0)):
        for seed in (1, 2, 3):
            add_run(client, exp, "good", env, seed, [scale * (100 + seed), scale * (200 + seed), scale * (300 + seed)],
                    tags={SWEEP_TAG: "s1"})
            add_run(client, exp, "bad", env, seed, [scale * seed, scale * 2 * seed, scale * 3 * seed],
                    tags={SWEEP_TAG: "s1"})
    # never chosen: a run that did not finish, an evaluation, a sweep's own run
    add_run(client, exp, "good", "cartpole-swingup", 9, [0, 0, 0], status="KILLED")
    add_run(client, exp, "good", "cartpole-swingup", 8, [0], tags={"wmlab.evaluates": "x"})
    client.create_run(exp, run_name="s1", tags={SWEEP_TAG: "s1", KIND_TAG: "sweep"})
    return root / LOCAL_STORE_DIR


@pytest.fixture
def store(_template, tmp_path):
    """A copy of the template store as this test's ./mlflow/."""
    shutil.copytree(_template, tmp_path / LOCAL_STORE_DIR)
    return client_for(None)


def read_table(text: str, header: str) -> list[list[str]]:
    lines = text.split(header, 1)[1].splitlines()[1:]
    rows = []
    for line in lines:
        if not line.startswith("|"):
            if rows:
                break
            continue
        if not line.startswith("|---"):
            rows.append([c.strip() for c in line.strip("|").split("|")])
    return rows


def test_compare_writes_plots_tables_and_a_comparison_run(store, tmp_path, capsys):
    out = tmp_path / "cmp"
    assert main(["compare", "--sweep", "s1", "--out", str(out), "--reps", "500"]) == 0
    err = capsys.readouterr().err
    assert "read 12/12 runs" in err and "bootstrapping" in err
    assert {p.name for p in out.iterdir()} == {"curves.png", "aggregates.png", "improvement.png",
                                               "comparison.md", "scores.csv"}
    for png in ("curves.png", "aggregates.png", "improvement.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG"
    text = (out / "comparison.md").read_text()
    per_env = read_table(text, "| env | method | seeds |")
    walker_good = next(r for r in per_env if r[0] == "walker-walk" and r[1] == "good")
    assert walker_good[2] == "3" and walker_good[3] == "300" and float(walker_good[4]) == pytest.approx(3 * 302)
    # min/max normalisation: every good run is above every bad one on each env
    aggregates = {r[0]: r for r in read_table(text, "| method | runs |")}
    assert float(aggregates["good"][2].split()[0]) > 0.9 and float(aggregates["bad"][2].split()[0]) < 0.1
    poi = {(r[0], r[1]): float(r[2]) for r in read_table(text, "| X | Y |")}
    assert poi == {("bad", "good"): 0.0, ("good", "bad"): 1.0}
    # the comparison is a run of its own, nested under the sweep's run, holding the same files
    client = store
    run, = client.search_runs(["1"], f"tags.`{KIND_TAG}` = 'compare'")
    parent, = client.search_runs(["1"], f"tags.`{KIND_TAG}` = 'sweep'")
    assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
    assert {a.path for a in client.list_artifacts(run.info.run_id)} >= {"curves.png", "comparison.md"}
    assert run.data.metrics["compare/good/iqm"] > 0.9
    # a second comparison does not take the first comparison's run for a training run
    assert main(["compare", "--out", str(tmp_path / "again"), "--reps", "200", "--no-mlflow"]) == 0
    assert "read 12/12 runs" in capsys.readouterr().err


def test_selection_by_method_env_tag_and_given_normalisation(store, tmp_path, capsys):
    scores = tmp_path / "scores.yaml"
    scores.write_text("cartpole-swingup: {min: 0, max: 1000}\n")
    assert main(["compare", "--method", "good", "--env", "cartpole-swingup", "--tag", "wmlab.seed=2",
                 "--normalize", str(scores), "--out", str(tmp_path / "c"), "--reps", "200", "--no-mlflow"]) == 0
    text = (tmp_path / "c" / "comparison.md").read_text()
    runs = read_table(text, "| env | method | seed | run |")
    assert [(r[0], r[1], r[2]) for r in runs] == [("cartpole-swingup", "good", "2")]
    iqm = read_table(text, "| method | runs |")[0][2]
    assert iqm.startswith("0.302")  # 302 / 1000
    assert "improvement.png" not in {p.name for p in (tmp_path / "c").iterdir()}  # one method


@pytest.mark.parametrize("argv, message", [
    (["--method", "nosuch"], "no finished training run matches methods nosuch"),
    (["--method", "nosuch"], "there: methods bad, good; envs cartpole-swingup, walker-walk"),
    (["--sweep", "nosuch"], "no finished training run matches sweep nosuch"),
    (["--sweep", "nosuch"], "; sweeps s1"),
    (["--experiment", "nosuch"], "no MLflow experiment 'nosuch'"),
    (["--normalize", "whatever"], "--normalize takes minmax, none or a YAML file"),
    (["--tag", "novalue"], "--tag takes KEY=VALUE"),
    (["--seed", "-1"], "--seed must be >= 0 (a numpy seed), got -1"),
])
def test_bad_compare_input_is_one_line(store, argv, message, capsys, tmp_path):
    assert main(["compare", *argv, "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert len([ln for ln in err.splitlines() if not ln.startswith("compare:")]) == 1


def test_runs_without_an_eval_metric_are_one_line(tmp_path, capsys):
    client = client_for(None)
    exp = experiment_id(client, "wmlab")
    add_run(client, exp, "m", "e", 1, [], steps=[])
    assert main(["compare", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "1 of the 1 selected runs logged no eval/episode_return" in err and "Traceback" not in err


def test_a_missing_store_is_one_line_and_stays_missing(capsys, tmp_path):
    assert main(["compare", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert f"there is no MLflow store at {tmp_path / 'mlflow' / 'mlflow.db'} yet" in err
    assert "Traceback" not in err and not (tmp_path / "mlflow").exists()


def test_an_empty_store_is_one_line(capsys, tmp_path):
    experiment_id(client_for(None), "wmlab")
    assert main(["compare", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "no finished training run matches every run of the store" in err
    assert "it has no finished training run yet" in err


def test_bands_and_grid():
    rng = np.random.default_rng(0)
    same = np.tile(np.arange(5.0), (3, 1))  # three identical seeds: no spread
    lo, hi = bootstrap_band(same, 200, rng)
    assert np.allclose(lo, same[0]) and np.allclose(hi, same[0])
    spread = np.array([[0.0, 0.0], [10.0, 10.0]])
    lo, hi = bootstrap_band(spread, 2000, rng)
    assert lo[0] == 0.0 and hi[0] == 10.0  # resampling two seeds can give either alone
    a = RunCurve("a", "a", "m", "e", "1", np.array([0, 100, 200]), np.array([0.0, 1.0, 2.0]))
    b = RunCurve("b", "b", "m", "e", "2", np.array([0, 150]), np.array([0.0, 3.0]))
    grid, values = common_grid([a, b])
    assert grid.tolist() == [0, 100, 150] and values[0].tolist() == [0.0, 1.0, 1.5]
    assert values[1].tolist() == [0.0, 2.0, 3.0]
