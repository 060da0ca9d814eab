"""The ``wmlab`` command: fit, eval, config, list, ui.

Errors in the user's input (an unknown method or env, a bad override, a missing
renderer, an unreadable checkpoint) print one line and exit with status 2; Ctrl-C
exits with 130 after marking the MLflow run KILLED.
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
  wmlab eval --checkpoint checkpoints/<run id> --episodes 10
  wmlab config --method tdmpc --env cartpole-swingup
  wmlab list
  wmlab ui
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
                     help="continue a run: an MLflow run id or a checkpoint folder")
    cfg = sub.add_parser("config", help="print the resolved config")
    _composition_args(cfg)
    ev = sub.add_parser("eval", help="evaluate a checkpoint and record a video")
    ev.add_argument("--checkpoint", metavar="PATH_OR_RUN_ID", required=True,
                    help="a checkpoint folder, a run's checkpoint folder or an MLflow run id")
    ev.add_argument("--episodes", type=int, default=None, help="episodes (default: eval.episodes)")
    ev.add_argument("--video", metavar="FILE", default=None,
                    help="where to write the mp4 (default: eval-<method>-<env>.mp4)")
    ev.add_argument("--no-video", action="store_true", help="do not record a video")
    sub.add_parser("list", help="list methods and env families with their versions")
    ui = sub.add_parser("ui", help="open the MLflow UI on wmlab's store")
    ui.add_argument("--port", type=int, default=5000)
    return ap


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("MUJOCO_GL", "egl")
    args = parser().parse_args(argv)
    from wmlab.errors import WmlabError
    from wmlab.loop import quiet_libraries

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


def cmd_config(args) -> int:
    from wmlab import registry
    from wmlab.config import compose, to_yaml

    cls, _ = registry.load_method(args.method)
    cfg = compose(args.method, cls, args.env, presets=args.preset, files=args.config,
                  overrides=args.overrides)
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


def cmd_ui(args) -> int:
    from wmlab.tracking import ui

    return ui(None, port=args.port)


def _resume_source(ref: str):
    """A checkpoint folder, or an MLflow run id whose checkpoint folder is in its tags."""
    from wmlab import checkpoint
    from wmlab.errors import CheckpointError

    if Path(ref).exists():
        return checkpoint.load(ref)
    from wmlab.tracking import find_run

    try:
        run = find_run(ref)
    except Exception as e:
        raise CheckpointError(f"{ref!r} is neither a checkpoint folder nor a known MLflow run id ({e})") from None
    folder = run.data.tags.get("wmlab.checkpoint_dir")
    if not folder:
        raise CheckpointError(f"{ref!r} is neither a checkpoint folder nor an MLflow run with checkpoints")
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


def cmd_fit(args) -> int:
    from wmlab import loop, registry
    from wmlab.config import compose
    from wmlab.errors import ConfigError
    from wmlab.tracking import NullTracker, Tracker

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
        cls, plugin = registry.load_method(args.method)
        cfg = compose(args.method, cls, args.env, presets=args.preset, files=args.config,
                      overrides=args.overrides)
        method_name, run_id = args.method, None

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
        print(f"wmlab: run {tracker.run_id} ({method_name} on {cfg.env.name}, seed {cfg.run.seed}); "
              f"checkpoints in {run.ckpt_dir}", file=sys.stderr)
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
    print(f"wmlab: done: {summary['env_steps']} env steps, {summary['updates']} updates"
          + (f", eval return {ret:.1f}" if ret is not None else "")
          + f"; run {tracker.run_id}; checkpoint {summary['checkpoint']}")
    return 0


def mark_dead_runs_killed(uri) -> None:
    """Runs of the store left RUNNING by a process that is gone (``kill -9``) become KILLED."""
    from wmlab.tracking import client_for
    from wmlab.tracking.store import mark_dead_runs_killed as mark

    for run_id in mark(client_for(uri)):
        print(f"wmlab: run {run_id} had stopped without ending (its process is gone): marked KILLED",
              file=sys.stderr)


def cmd_eval(args) -> int:
    import numpy as np

    from wmlab import loop
    from wmlab.evaluation import evaluate, seeded
    from wmlab.video import write_mp4

    ckpt, state = _resume_source(args.checkpoint)
    overrides = [f"eval.episodes={args.episodes}"] if args.episodes else []
    cls, plugin, cfg = _compose_from_checkpoint(state, args, overrides)
    run = loop.build(cfg, state["method"], method_cls=cls, plugin=plugin)
    loop.restore_weights(run, ckpt, state)
    policy = run.method.make_policy(explore=False)
    policy.obs_keys = loop.obs_keys(run.specs)
    render = None if args.no_video else (lambda env: run.family.render(env, cfg.env.image_size))
    result = seeded(lambda: evaluate(run.eval_env, policy, episodes=cfg.eval.episodes,
                                     max_steps=run.specs.episode_policy_steps, seed=cfg.run.seed,
                                     render=render, metrics=loop.eval_metrics(run)), cfg.run.seed)
    extra = "".join(f", {k} {v:.3g}" for k, v in result.metrics.items())
    print(f"{state['method']} on {state['env']} ({ckpt}, {state['progress']['env_steps']} env steps): "
          f"return {result.mean:.1f} +- {result.std:.1f} over {len(result.returns)} episodes{extra}")
    if result.frames is not None:
        path = Path(args.video or f"eval-{state['method']}-{state['env']}.mp4")
        write_mp4(np.asarray(result.frames), path)
        print(f"video: {path}")
    return 0


COMMANDS = {"fit": cmd_fit, "config": cmd_config, "list": cmd_list, "ui": cmd_ui, "eval": cmd_eval}

if __name__ == "__main__":
    sys.exit(main())
