"""The ``wmlab`` command: fit (one run or a sweep), eval, compare, config, list, ui, server.

Errors in the user's input (an unknown method or env, a bad override, a missing
renderer, an unreadable checkpoint, an unwritable folder, an unreachable tracking
server) print one line and exit with status 2; Ctrl-C exits with 130 after marking the
MLflow run KILLED.

Start-up: torch, Lightning, MLflow and the plugins are imported only by the commands that
use them, after the input has been checked as far as :mod:`wmlab.plugin_index` can without
them; ``--help``, ``wmlab list`` and input errors take well under a second to a few
seconds (``benchmarks/startup.py`` measures them). ``MUJOCO_GL`` is checked before anything
imports mujoco (:mod:`wmlab.gl`), and only commands that render need a working GL backend.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

EPILOG = """\
examples:
  wmlab fit --method tdmpc --env cheetah-run
  wmlab fit --method tdmpc --env walker-walk --preset debug run.steps=2000 method.lr=3e-4
  wmlab fit --resume <mlflow run id or checkpoint folder> run.steps=1000000
  wmlab fit --method tdmpc,dreamer --env cartpole-swingup,walker-walk --seeds 1,2,3 --jobs 2
  wmlab eval --checkpoint checkpoints/<run id> --episodes 10
  wmlab config --method tdmpc --env cartpole-swingup
  wmlab compare --sweep <sweep name> --out comparison/
  wmlab list
  wmlab ui --port 5001
  wmlab server --port 5005        # then: MLFLOW_TRACKING_URI=http://127.0.0.1:5005 wmlab fit ...
"""


def _composition_args(p: argparse.ArgumentParser, *, required: bool = True) -> None:
    p.add_argument("--method", required=required, help="a registered method (see `wmlab list`)")
    p.add_argument("--env", required=required, help="an env, e.g. cheetah-run (dm_control domain-task)")
    p.add_argument("--preset", action="append", default=[], metavar="NAME",
                   help="a preset (repeatable), e.g. debug")
    p.add_argument("--config", action="append", default=[], metavar="FILE",
                   help="a YAML file over the config tree (repeatable, applied in order)")
    p.add_argument("overrides", nargs="*", metavar="key=value",
                   help="overrides, e.g. run.steps=100000 method.horizon=3 env.obs=pixels")


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="wmlab", description="A laboratory for world models and "
                                 "model-based RL.", epilog=EPILOG,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")
    fit = sub.add_parser("fit", help="train a method on an env")
    _composition_args(fit, required=False)
    fit.add_argument("--resume", metavar="RUN_OR_CHECKPOINT",
                     help="continue a run: an MLflow run id or name, or a checkpoint folder; "
                          "or a sweep by its name")
    fit.add_argument("--seeds", metavar="S1,S2,...",
                     help="a sweep over these seeds (with comma lists in --method/--env: the grid)")
    fit.add_argument("--jobs", type=int, default=None, metavar="N",
                     help="runs of a sweep at once, each a process (default 1)")
    fit.add_argument("--sweep", metavar="NAME",
                     help="name of the sweep (default: made from the grid and the command)")
    cfg = sub.add_parser("config", help="print the resolved config")
    _composition_args(cfg)
    ev = sub.add_parser("eval", help="evaluate a checkpoint and record a video")
    ev.add_argument("--checkpoint", metavar="PATH_OR_RUN", required=True,
                    help="a checkpoint folder, a run's checkpoint folder, or an MLflow run id or name")
    ev.add_argument("--episodes", type=int, default=None, help="episodes (default: eval.episodes)")
    ev.add_argument("--video", metavar="FILE", default=None,
                    help="where to write the mp4 (default: a new eval-<method>-<env>-step<N>[-K].mp4)")
    ev.add_argument("--video-size", type=int, default=None, metavar="PIXELS",
                    help="side of the video frames, rendered for the video (default: eval.video_size, 256)")
    ev.add_argument("--no-video", action="store_true", help="do not record a video")
    ev.add_argument("--no-mlflow", action="store_true",
                    help="do not log the result as an MLflow run (by default a child of the evaluated run)")
    cmp = sub.add_parser("compare", help="compare methods over seeds and envs (curves, IQM, "
                         "bootstrap intervals)")
    cmp.add_argument("--sweep", metavar="NAME", help="the runs of this sweep")
    cmp.add_argument("--experiment", metavar="NAME", help="the runs of this MLflow experiment")
    cmp.add_argument("--method", metavar="M1,M2", help="only these methods")
    cmp.add_argument("--env", metavar="E1,E2", help="only these envs")
    cmp.add_argument("--tag", action="append", default=[], metavar="KEY=VALUE",
                     help="only runs with this MLflow tag (repeatable)")
    cmp.add_argument("--out", default="comparison", metavar="DIR",
                     help="folder for the plots and tables (default ./comparison)")
    cmp.add_argument("--normalize", default="minmax", metavar="minmax|none|FILE.yaml",
                     help="scores per env: minmax over the compared runs (default), none, or a YAML "
                          "file 'ENV: {min: LOW, max: HIGH}'")
    cmp.add_argument("--reps", type=int, default=2000, help="bootstrap samples (default 2000)")
    cmp.add_argument("--seed", type=int, default=0, help="seed of the bootstrap (default 0)")
    cmp.add_argument("--no-mlflow", action="store_true", help="do not log a comparison run")
    sub.add_parser("list", help="list methods and env families with their versions")
    ui = sub.add_parser("ui", help="open the MLflow UI on wmlab's store")
    ui.add_argument("--port", type=int, default=5000)
    ui.add_argument("--host", default="127.0.0.1",
                    help="interface to listen on (default 127.0.0.1; 0.0.0.0 for every interface)")
    srv = sub.add_parser("server", help="run an MLflow tracking server on wmlab's store for "
                         "other processes and machines")
    srv.add_argument("--port", type=int, default=5000)
    srv.add_argument("--host", default="127.0.0.1",
                     help="interface to listen on (default 127.0.0.1; 0.0.0.0 for every interface)")
    srv.add_argument("--backend-store-uri", metavar="URI", default=None,
                     help="the database: default the local store ./mlflow/mlflow.db (SQLite), "
                          "or a database URL, e.g. postgresql://user:password@host/mlflow")
    srv.add_argument("--artifacts-destination", metavar="PATH_OR_URI", default=None,
                     help="where the server keeps artifacts (default: artifacts/ beside the SQLite "
                          "database, else ./mlflow/artifacts)")
    srv.add_argument("--workers", type=int, default=1, help="server worker processes (default 1)")
    srv.add_argument("--allowed-hosts", metavar="HOSTS", default=None,
                     help="Host headers the server accepts beyond localhost and private addresses "
                          "(MLflow's --allowed-hosts)")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.command not in ("ui", "server"):  # before anything imports mujoco (torchrl does)
        from wmlab import gl

        gl.prepare()
    from wmlab.errors import WmlabError
    from wmlab.quiet import quiet_libraries

    quiet_libraries()
    try:
        return COMMANDS[args.command](args)
    except WmlabError as e:
        print(f"wmlab: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("wmlab: interrupted", file=sys.stderr)
        import gc

        # an interrupted fit leaves large cycles (trainer, loaders, envs) whose collection at
        # interpreter exit took 10-20 s; nothing in them needs finalizing (the run is ended
        # and its files are written), so the exit skips them
        gc.freeze()
        return 130


# --- commands ------------------------------------------------------------------------------


def _check_input(args):
    """Input errors found before torch, Lightning or a plugin is imported; the config as the
    plugin index composes it, or ``None``."""
    from wmlab import plugin_index

    return plugin_index.check_input(args.method, args.env, presets=args.preset, files=args.config,
                                    overrides=args.overrides)


def cmd_config(args) -> int:
    from wmlab import registry
    from wmlab.config import compose, to_yaml

    _check_input(args)
    cls, _ = registry.load_method(args.method)
    cfg = compose(args.method, cls, args.env, presets=args.preset, files=args.config,
                  overrides=args.overrides)
    family, task = _family(cfg)
    if getattr(family, "fixed_tasks", False) is True:  # as fit would (the index may not know it yet)
        from wmlab.envs import check_listed_task, split_family

        check_listed_task(split_family(args.env)[0], task, sorted(str(t) for t in family.tasks()))
    print(to_yaml(cfg), end="")
    return 0


def cmd_list(args) -> int:
    import warnings

    from wmlab import registry

    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        for group, title in ((registry.METHODS, "methods"), (registry.ENVS, "env families")):
            print(f"{title}:")
            for plugin, problem in registry.survey(group):
                status = f"  WARNING: {problem}" if problem else ""
                print(f"  {plugin.name:<16} {plugin.dist} {plugin.version}{status}")
    return 0


def cmd_compare(args) -> int:
    from wmlab.compare import run_compare

    return run_compare(args)


def cmd_server(args) -> int:
    from wmlab.tracking.server import server

    return server(args.backend_store_uri, port=args.port, host=args.host,
                  artifacts=args.artifacts_destination, workers=args.workers,
                  allowed_hosts=args.allowed_hosts)


def cmd_ui(args) -> int:
    from wmlab.tracking.server import ui

    return ui(None, port=args.port, host=args.host)


def _find_run(ref: str):
    """The one MLflow run ``ref`` (an id or a name) names; several are listed, one a line."""
    from wmlab.errors import CheckpointError, WmlabError
    from wmlab.preflight import existing_store

    uri, where = existing_store()
    if uri is None:
        raise CheckpointError(f"{ref!r} is neither a checkpoint folder nor an MLflow run id or name "
                              f"(there is no MLflow store at {where} yet)")
    from wmlab.tracking import client_for
    from wmlab.tracking.lookup import describe, find_runs

    client = client_for(uri)
    runs = find_runs(client, ref)
    if not runs:
        raise CheckpointError(f"{ref!r} is neither a checkpoint folder nor a known MLflow run id or "
                              f"name in {uri}")
    if len(runs) > 1:
        lines = "\n".join(f"  {describe(client, r)}" for r in runs)
        raise WmlabError(f"{len(runs)} MLflow runs are named {ref!r}; give the id of one:\n{lines}")
    return runs[0]


def _sweep_run(ref: str):
    """The sweep's run ``ref`` names, if ``ref`` is a sweep of the store."""
    from wmlab.preflight import existing_store

    uri, _ = existing_store()
    if uri is None:
        return None
    from wmlab.sweep import sweep_named

    return sweep_named(ref, uri)


def _resume_source(ref: str):
    """A checkpoint folder, or an MLflow run (id or name) whose checkpoint folder is in its tags."""
    from wmlab import checkpoint
    from wmlab.errors import CheckpointError

    if Path(ref).exists():
        return checkpoint.load(ref)
    run = _find_run(ref)
    folder = run.data.tags.get("wmlab.checkpoint_dir")
    if not folder:
        raise CheckpointError(f"MLflow run {run.info.run_id} ({run.info.run_name}) has no checkpoints")
    return checkpoint.load(folder)


def _compose_from_checkpoint(state: dict, args, overrides):
    from omegaconf import OmegaConf

    from wmlab import registry
    from wmlab.config import compose

    cls, plugin = registry.load_method(state["method"])
    saved = OmegaConf.create(state["config"])
    cfg = compose(state["method"], cls, state["env"], files=getattr(args, "config", []) or [],
                  overrides=overrides, base=saved)
    return cls, plugin, cfg


def _family(cfg):
    from wmlab import registry
    from wmlab.envs import split_family

    family_name, task = split_family(cfg.env.name)
    return registry.load_env_family(family_name)[0], task


def cmd_fit(args) -> int:
    from wmlab import preflight, registry
    from wmlab.config import compose
    from wmlab.errors import ConfigError

    from wmlab import sweep

    if args.resume and not Path(args.resume).exists():
        parent = _sweep_run(args.resume)
        if parent is not None:
            return sweep.resume_sweep(parent, args)
    if args.resume and (args.seeds is not None or args.sweep is not None or args.jobs is not None):
        raise ConfigError("--resume continues one run or one sweep (by its name); drop --seeds/--sweep/--jobs")
    if args.resume and args.preset:
        raise ConfigError("--resume continues a run with its saved config, which presets cannot change; "
                          "drop --preset (--config files and key=value overrides still apply)")
    if not args.resume and sweep.is_sweep(args):
        return sweep.fit_sweep(args)
    resume = None
    if args.resume:
        ckpt, state = _resume_source(args.resume)
        for given, saved in ((args.method, state["method"]), (args.env, state["env"])):
            if given and given != saved:
                raise ConfigError(f"--resume continues a {state['method']} run on {state['env']}; "
                                  f"drop --method/--env or give the same ones")
        cls, plugin, cfg = _compose_from_checkpoint(state, args, args.overrides)
        method_name, run_id = state["method"], state.get("run_id")
        resume = (ckpt, state)
    else:
        if not args.method or not args.env:
            raise ConfigError("fit needs --method and --env (or --resume); `wmlab list` shows methods")
        early = _check_input(args)
        if early is not None:  # folders, tracking store and GL, before importing the plugins
            preflight.storage(early)
            preflight.rendering_early(early, args.env)
        cls, plugin = registry.load_method(args.method)
        cfg = compose(args.method, cls, args.env, presets=args.preset, files=args.config,
                      overrides=args.overrides)
        method_name, run_id = args.method, None
    family, task = _family(cfg)
    preflight.fit(cfg, family, task, run_id=run_id)  # before any env is built or stepped

    from wmlab import loop
    from wmlab.tracking import NullTracker, Tracker

    run = loop.build(cfg, method_name, method_cls=cls, plugin=plugin)
    if loop.process_rank() > 0:  # a DDP worker started by Lightning: rank 0 owns run and files
        run.tracker = NullTracker(os.environ.get("WMLAB_RUN_ID", ""), cfg.tracking.uri)
        run.ckpt_dir = Path(cfg.checkpoint.dir).resolve() / run.tracker.run_id
        loop.train(run, resume)
        return 0
    mark_dead_runs_killed(cfg.tracking.uri)
    with Tracker.start(cfg, method=method_name, env=cfg.env.name, seed=cfg.run.seed,
                       plugin_dist=plugin.dist, plugin_version=plugin.version, run_id=run_id) as tracker:
        os.environ["WMLAB_RUN_ID"] = tracker.run_id  # inherited by DDP workers
        run.tracker = tracker
        run.ckpt_dir = Path(cfg.checkpoint.dir).resolve() / tracker.run_id
        tracker.set_tag("wmlab.checkpoint_dir", str(run.ckpt_dir))
        print(f"wmlab: run {tracker.run_id} ({tracker.run_name}: {method_name} on {cfg.env.name}, "
              f"seed {cfg.run.seed}); checkpoints in {run.ckpt_dir}", file=sys.stderr)
        run.stop.install()  # Ctrl-C / SIGTERM: stop at the next safe point with a checkpoint
        try:
            summary = loop.train(run, resume)
        except KeyboardInterrupt:
            if run.stopped_checkpoint is not None:
                print(f"\nwmlab: stopped at {run.progress.env_steps} env steps; checkpoint "
                      f"{run.stopped_checkpoint}; continue with: wmlab fit --resume {tracker.run_id}",
                      file=sys.stderr)
            raise
        finally:
            run.stop.uninstall()
    ret = summary.get("eval_return")
    compiled = f"; run.compile: {loop.COMPILE_PROGRESS.summary()}" if cfg.run.compile != "off" else ""
    print(f"wmlab: done: {summary['env_steps']} env steps, {summary['updates']} updates"
          + (f", eval return {ret:.1f}" if ret is not None else "")
          + f"; run {tracker.run_id}; checkpoint {summary['checkpoint']}{compiled}")
    return 0


def mark_dead_runs_killed(uri) -> None:
    """Runs of the store left RUNNING by a process that is gone (``kill -9``) become KILLED."""
    from wmlab.tracking import client_for
    from wmlab.tracking.store import mark_dead_runs_killed as mark

    for run_id in mark(client_for(uri)):
        print(f"wmlab: run {run_id} had stopped without ending (its process is gone): marked KILLED",
              file=sys.stderr)


def _new_file(path: Path) -> Path:
    """``path``, or ``<stem>-2<suffix>``, ``-3`` ... : the first that does not exist yet, created
    empty so that a parallel evaluation picks another."""
    path.parent.mkdir(parents=True, exist_ok=True)
    for i in range(1, 10_000):
        candidate = path if i == 1 else path.with_name(f"{path.stem}-{i}{path.suffix}")
        try:
            os.close(os.open(candidate, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
            return candidate
        except FileExistsError:
            continue
    raise FileExistsError(f"no free file name next to {path}")


def _log_eval(cfg, state: dict, ckpt: Path, result, video: Path | None, video_size: int) -> str:
    """Log an evaluation as an MLflow run: a child of the evaluated run when that run is in
    the store, else a run of the config's experiment. Returns a line saying where."""
    import time

    from mlflow.entities import Metric, Param
    from mlflow.exceptions import MlflowException

    from wmlab.errors import WmlabError
    from wmlab.tracking import client_for, experiment_id, store
    from wmlab.tracking.lookup import unique_run_name

    steps = int(state["progress"]["env_steps"])
    try:
        client = client_for(cfg.tracking.uri)
        parent = None
        if state.get("run_id"):
            try:
                parent = client.get_run(state["run_id"])
                if parent.info.lifecycle_stage != "active":
                    parent = None
            except MlflowException:
                parent = None
        exp_id = parent.info.experiment_id if parent else experiment_id(client, cfg.tracking.experiment)
        base = f"eval-{parent.info.run_name if parent else state['method'] + '-' + state['env']}-{steps}"
        # owner tags: a process killed between creating and ending this run leaves it for the
        # next command to mark KILLED, as a fit's run
        tags = {**store.owner_tags(), "mlflow.source.name": "wmlab eval", "mlflow.source.type": "LOCAL",
                "wmlab.method": state["method"], "wmlab.env": state["env"], "wmlab.seed": str(cfg.run.seed),
                "wmlab.checkpoint": str(ckpt)}
        if parent:
            tags |= {"mlflow.parentRunId": parent.info.run_id, "wmlab.evaluates": parent.info.run_id}
        name = unique_run_name(client, exp_id, base, base)
        run = client.create_run(exp_id, run_name=name, tags=tags)
        run_id = run.info.run_id
        ts = int(time.time() * 1000)
        metrics = {"eval/episode_return": result.mean, "eval/episode_return_std": result.std,
                   **{f"eval/{k}": v for k, v in result.metrics.items()}}
        params = {"eval.episodes": len(result.returns), "eval.video_size": video_size,
                  "checkpoint": str(ckpt), "env_steps": steps}
        client.log_batch(run_id, metrics=[Metric(k, float(v), ts, steps) for k, v in metrics.items()],
                         params=[Param(k, str(v)) for k, v in params.items()])
        if video is not None:
            client.log_artifact(run_id, str(video), "videos")
        client.set_terminated(run_id, "FINISHED")
    except MlflowException as e:
        raise WmlabError(f"the evaluation ran, but logging it to MLflow failed: {e.message}") from None
    where = f"a child of run {parent.info.run_id}" if parent else f"experiment {cfg.tracking.experiment!r}"
    return f"mlflow: run {run_id} ({name}, {where})"


def cmd_eval(args) -> int:
    from wmlab import preflight
    from wmlab.errors import ConfigError

    if args.episodes is not None and args.episodes < 1:
        raise ConfigError(f"--episodes must be positive, got {args.episodes}")
    if args.video_size is not None and args.video_size < 1:
        raise ConfigError(f"--video-size must be positive, got {args.video_size}")
    if args.video and not args.no_video:  # before the episodes are run, not after
        if Path(args.video).is_dir():
            raise ConfigError(f"--video {args.video} is a folder; give a file, e.g. "
                              f"{Path(args.video) / 'eval.mp4'}")
        preflight.writable_folder(Path(args.video).parent, "the video", "--video")
    ckpt, state = _resume_source(args.checkpoint)
    overrides = [f"eval.episodes={args.episodes}"] if args.episodes else []
    if args.video_size:
        overrides.append(f"eval.video_size={args.video_size}")
    cls, plugin, cfg = _compose_from_checkpoint(state, args, overrides)
    family, task = _family(cfg)
    if not args.no_mlflow:
        preflight.tracking_store(cfg.tracking.uri)
    preflight.rendering(family, task, cfg.env, video=not args.no_video)
    video = None
    if not args.no_video:
        from wmlab.tracking.store import safe_name

        steps = int(state["progress"]["env_steps"])
        video = (Path(args.video) if args.video else
                 _new_file(Path(f"eval-{state['method']}-{safe_name(state['env'])}-step{steps:09d}.mp4")))

    import numpy as np

    from wmlab.video import write_mp4

    try:
        size = None if video is None else int(cfg.eval.video_size)
        result = _evaluate(cfg, state, ckpt, cls, plugin, render_size=size)
        extra = "".join(f", {k} {v:.3g}" for k, v in result.metrics.items())
        print(f"{state['method']} on {state['env']} ({ckpt}, {state['progress']['env_steps']} env steps): "
              f"return {result.mean:.1f} +- {result.std:.1f} over {len(result.returns)} episodes{extra}")
        if video is not None and result.frames is not None:
            written = write_mp4(np.asarray(result.frames), video)
            if written != video and not args.video:
                video.unlink(missing_ok=True)  # (the placeholder of an mp4 that became a gif)
            video = written
            print(f"video: {video} ({cfg.eval.video_size}x{cfg.eval.video_size})")
    except BaseException:
        if video is not None and not args.video and video.exists() and video.stat().st_size == 0:
            video.unlink()  # the placeholder claimed for a video that was not written
        raise
    if not args.no_mlflow:
        print(_log_eval(cfg, state, ckpt, result, video, int(cfg.eval.video_size)))
    return 0


def _evaluate(cfg, state: dict, ckpt: Path, cls, plugin, *, render_size: int | None):
    """The checkpoint's deterministic policy over ``eval.episodes`` episodes, the first one
    rendered at ``render_size`` if given."""
    from wmlab import loop
    from wmlab.evaluation import evaluate, seeded

    run = loop.build(cfg, state["method"], method_cls=cls, plugin=plugin)
    loop.restore_weights(run, ckpt, state)
    policy = run.method.make_policy(explore=False)
    loop.ready_policy(run, policy)
    render = None if render_size is None else (lambda env: run.family.render(env, render_size))
    return seeded(lambda: evaluate(run.eval_env, policy, episodes=cfg.eval.episodes,
                                   max_steps=run.specs.episode_policy_steps, seed=cfg.run.seed,
                                   render=render, metrics=loop.eval_metrics(run),
                                   more_envs=loop.more_eval_envs(run)), cfg.run.seed)


COMMANDS = {"fit": cmd_fit, "config": cmd_config, "list": cmd_list, "ui": cmd_ui, "eval": cmd_eval,
            "compare": cmd_compare, "server": cmd_server}

if __name__ == "__main__":
    sys.exit(main())
