"""What the benchmarks that compare variants of one method share: one ``wmlab fit`` per
(variant, seed) in a subprocess with its own folder, MLflow store and log file, one torch
thread each; reuse of a finished run; its evaluation curves; a table cell.

A run of variant ``v`` and seed ``s`` lives in ``<out>/<v>-seed<s>/`` (its store in
``mlflow/mlflow.db`` there: ``MLFLOW_TRACKING_URI=sqlite:///<that file> wmlab ui`` shows it)
and logs to ``<out>/<v>-seed<s>.log``.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import time

import numpy as np


def run_dir(out: pathlib.Path, variant: str, seed: int) -> pathlib.Path:
    return (out / f"{variant}-seed{seed}").resolve()


def store(out: pathlib.Path, variant: str, seed: int) -> str:
    return f"sqlite:///{run_dir(out, variant, seed) / 'mlflow' / 'mlflow.db'}"


def finished_run(out: pathlib.Path, variant: str, seed: int):
    """``(client, run)`` of the finished run in the variant's store, else ``None``."""
    db = run_dir(out, variant, seed) / "mlflow" / "mlflow.db"
    if not db.exists():
        return None
    import mlflow

    client = mlflow.MlflowClient(store(out, variant, seed))
    exp = client.get_experiment_by_name("wmlab")
    runs = [] if exp is None else client.search_runs([exp.experiment_id])
    done = [r for r in runs if r.info.status == "FINISHED"]
    return (client, done[0]) if done else None


def fit(out: pathlib.Path, variant: str, seed: int, fit_args: list[str], *, reuse: bool = True) -> float | None:
    """``wmlab fit *fit_args run.seed=<seed>`` in a subprocess, in the variant's folder and
    store; its wall seconds, or ``None`` when ``reuse`` and a finished run is there already."""
    if reuse and finished_run(out, variant, seed) is not None:
        print(f"  {variant} seed {seed}: finished before, reused", flush=True)
        return None
    folder = run_dir(out, variant, seed)
    (folder / "mlflow").mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "wmlab.cli", "fit", *fit_args, f"run.seed={seed}", "eval.video=false",
            "checkpoint.replay=false", "run.threads=1", f"tracking.uri={store(out, variant, seed)}"]
    start = time.perf_counter()
    with open(out / f"{variant}-seed{seed}.log", "w") as log:
        rc = subprocess.run(argv, cwd=folder, env={**os.environ, "OMP_NUM_THREADS": "1"},
                            stdout=log, stderr=subprocess.STDOUT).returncode
    if rc != 0:
        raise RuntimeError(f"{variant} seed {seed} failed (exit {rc}); see {log.name}")
    seconds = time.perf_counter() - start
    print(f"  {variant} seed {seed}: done in {seconds:.0f} s", flush=True)
    return seconds


def eval_histories(out: pathlib.Path, variant: str, seed: int, metrics) -> dict[str, dict[int, float]]:
    """``{metric: {env steps: value}}`` of ``eval/<metric>`` of the variant's finished run."""
    found = finished_run(out, variant, seed)
    if found is None:
        raise RuntimeError(f"{variant} seed {seed}: no finished run in {run_dir(out, variant, seed)}")
    client, run = found
    return {m: {h.step: h.value for h in client.get_metric_history(run.info.run_id, f"eval/{m}")}
            for m in metrics}


def cell(values: list[float], fmt: str) -> str:
    """``mean ± std`` (one value: itself; none: ``-``)."""
    if not values:
        return "-"
    return f"{np.mean(values):{fmt}} ± {np.std(values):{fmt}}" if len(values) > 1 else f"{values[0]:{fmt}}"


def random_policy_eval(method: str, env_name: str, preset: str, overrides, *, seed: int, episodes: int):
    """An :class:`~wmlab.evaluation.EvalResult` of uniformly random actions on the evaluation
    episodes a run of ``method`` on ``env_name`` with ``seed`` evaluates on (its metrics
    those of the env family)."""
    from wmlab import registry
    from wmlab.config import compose
    from wmlab.data import RandomPolicy
    from wmlab.envs import split_family
    from wmlab.evaluation import EVAL_SEED_OFFSET, evaluate
    from wmlab.loop import obs_keys

    cls, _ = registry.load_method(method)
    cfg = compose(method, cls, env_name, presets=[preset], overrides=list(overrides))
    family_name, task = split_family(cfg.env.name)
    family, _ = registry.load_env_family(family_name)
    env = family.make(task, cfg.env, seed=seed + EVAL_SEED_OFFSET)
    specs = family.specs(env, cfg.env)
    policy = RandomPolicy(specs)
    policy.obs_keys = obs_keys(specs)
    try:
        return evaluate(env, policy, episodes=episodes, max_steps=specs.episode_policy_steps,
                        seed=seed, metrics=lambda td: family.eval_metrics(env, td))
    finally:
        env.close()


def run_all(out: pathlib.Path, jobs: list[tuple[str, int]], fit_args, at_a_time: int, *,
            reuse: bool = True) -> dict[tuple[str, int], float | None]:
    """:func:`fit` of every ``(variant, seed)`` in ``jobs``, ``at_a_time`` at once, each with
    ``fit_args(variant)``; their wall seconds (``None``: reused)."""
    from concurrent.futures import ThreadPoolExecutor

    start = time.perf_counter()
    with ThreadPoolExecutor(at_a_time) as pool:
        seconds = dict(zip(jobs, pool.map(lambda job: fit(out, *job, fit_args(job[0]), reuse=reuse), jobs)))
    print(f"all runs done in {time.perf_counter() - start:.0f} s", flush=True)
    return seconds


def print_wall_times(seconds: dict[tuple[str, int], float | None], variants, seeds) -> None:
    """Mean wall time per run of each variant, over the runs made now."""
    for v in variants:
        timed = [seconds[(v, s)] for s in seeds if seconds[(v, s)] is not None]
        if timed:
            print(f"{v}: {np.mean(timed):.0f} s of wall time per run (of the runs made now)")
