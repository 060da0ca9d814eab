"""``wmlab fit``: assembles a run from factories and hands the loop to Lightning.

The core builds the env, the method, the replay buffer and the tracker; each stage of
the method is one ``Trainer.fit`` over a :class:`~wmlab.data.ReplayStream`. Core
callbacks count updates, show progress, evaluate, checkpoint and report throughput.
Nothing here knows any method by name.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.callbacks import Callback
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from wmlab import checkpoint, registry
from wmlab.api import DataSpec, EnvSpecs, Method, Progress, Stage
from wmlab.data import ReplayStream, make_replay
from wmlab.errors import CheckpointError, ConfigError
from wmlab.evaluation import EVAL_SEED_OFFSET, evaluate, seeded

log = logging.getLogger("wmlab")


def quiet_libraries() -> None:
    """Keep the console for wmlab's own progress: no per-run banners from the libraries."""
    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "torchrl", "absl", "alembic",
                 "mlflow"):
        logging.getLogger(name).setLevel(logging.WARNING)
    logging.getLogger("absl").setLevel(logging.ERROR)  # dm_control's deprecation chatter
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    warnings.filterwarnings("ignore", ".*IterableDataset.*has `__len__` defined.*")
    warnings.filterwarnings("ignore", ".*compiler attribute 'settotalmass'.*")
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", ".*treespec, LeafSpec.*")


@dataclass
class Run:
    """Everything a run is made of (built by :func:`build`)."""

    cfg: DictConfig
    method_name: str
    env_name: str
    method: Method
    plugin: registry.PluginInfo
    family: Any
    env: Any
    eval_env: Any
    specs: EnvSpecs
    data_spec: DataSpec
    progress: Progress = field(default_factory=Progress)
    replay: Any = None
    ckpt_dir: Path | None = None
    tracker: Any = None
    stream: ReplayStream | None = None
    last_return: float | None = None
    last_eval: float | None = None
    last_eval_step: int | None = None
    last_eval_updates: int | None = None
    step_listeners: list = field(default_factory=list)
    """Extra ``fn(td)`` called on every collected policy step (benchmarks, tools)."""


def process_rank() -> int:
    """Global rank of this process under Lightning's DDP launchers (0 when not distributed)."""
    for var in ("RANK", "LOCAL_RANK"):
        if var in os.environ:
            return int(os.environ[var])
    return 0


#: each distributed rank collects with its own seed: run.seed + RANK_SEED_STRIDE * rank
RANK_SEED_STRIDE = 1000


def set_threads(cfg: DictConfig) -> None:
    threads = cfg.run.threads or os.cpu_count() or 1
    torch.set_num_threads(threads)


def build(cfg: DictConfig, method_name: str, *, method_cls=None, plugin=None) -> Run:
    """Env, method and specs for a composed config (replay and tracker come later)."""
    from wmlab.envs import split_family

    set_threads(cfg)
    make_trainer(cfg, [], False)  # reject bad accelerator/devices/precision/strategy up front
    seed = cfg.run.seed + RANK_SEED_STRIDE * process_rank()
    L.seed_everything(seed, workers=True, verbose=False)
    if method_cls is None:
        method_cls, plugin = registry.load_method(method_name)
    family_name, task = split_family(cfg.env.name)
    family, _ = registry.load_env_family(family_name)
    env = family.make(task, cfg.env, seed=seed)
    eval_env = family.make(task, cfg.env, seed=cfg.run.seed + EVAL_SEED_OFFSET)
    specs = family.specs(env, cfg.env)
    method = method_cls(cfg.method, specs)
    return Run(cfg=cfg, method_name=method_name, env_name=cfg.env.name, method=method, plugin=plugin,
               family=family, env=env, eval_env=eval_env, specs=specs, data_spec=method.data_spec())


def make_trainer(cfg: DictConfig, callbacks: list[Callback], logger) -> L.Trainer:
    try:
        return L.Trainer(
            accelerator=cfg.run.accelerator, devices=cfg.run.devices, precision=cfg.run.precision,
            strategy=cfg.run.strategy, max_epochs=1, logger=logger, callbacks=callbacks,
            enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
            log_every_n_steps=cfg.tracking.log_every, num_sanity_val_steps=0, limit_val_batches=0,
            use_distributed_sampler=False, default_root_dir=cfg.checkpoint.dir,
        )
    except (ValueError, TypeError, RuntimeError, MisconfigurationException) as e:
        raise ConfigError(f"invalid Lightning settings in run.* "
                          f"(accelerator/devices/precision/strategy): {e}") from None


def replay_device(cfg: DictConfig, trainer: L.Trainer) -> torch.device:
    return trainer.strategy.root_device if cfg.replay.device == "auto" else torch.device(cfg.replay.device)


# --- callbacks -----------------------------------------------------------------------------


class Counters(Callback):
    """Counts finished updates (Lightning's global_step counts optimizer steps instead)."""

    def __init__(self, run: Run, stage: Stage):
        self.run, self.stage = run, stage

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        p = self.run.progress
        p.updates += 1
        p.stage_updates += 1
        if self.stage.env_steps == 0:
            p.offline_updates += 1


class ProgressBar(Callback):
    """A tqdm bar over env steps: last episode return, last eval, updates, speed."""

    def __init__(self, run: Run, stage: Stage, budget: int):
        self.run = run
        desc = f"{run.method_name} {run.env_name}" + (f" [{stage.name}]" if stage.name != "train" else "")
        total = budget if stage.env_steps != 0 else (stage.updates or 0)
        self.offline = stage.env_steps == 0
        start = run.progress.stage_updates if self.offline else run.progress.stage_env_steps
        self.desc = desc
        self.bar = tqdm(total=total, initial=start, desc=desc, unit="upd" if self.offline else "step",
                        dynamic_ncols=True, mininterval=1.0, disable=None)
        self._last_post = 0.0

    def on_collect(self, td) -> None:
        self.bar.update(self.run.specs.action_repeat)
        self._postfix()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if self.offline:
            self.bar.update(1)
        self._postfix()

    def _postfix(self):
        now = time.monotonic()
        if now - self._last_post < (1.0 if not self.bar.disable else 30.0):
            return
        self._last_post = now
        p = self.run.progress
        post = {"upd": p.updates}
        if self.run.last_return is not None:
            post["ret"] = f"{self.run.last_return:.1f}"
        if self.run.last_eval is not None:
            post["eval"] = f"{self.run.last_eval:.1f}"
        if not self.bar.disable:
            self.bar.set_postfix(post, refresh=False)
        else:  # not a terminal (a log file, CI): a plain line every 30 s instead of a bar
            fields = " ".join(f"{k}={v}" for k, v in post.items())
            print(f"{self.desc}: {p.env_steps} env steps {fields}", file=sys.stderr, flush=True)

    def close(self):
        self.bar.close()


class Throughput(Callback):
    """Logs time/env_steps_per_s and time/updates_per_s every ``every`` seconds."""

    def __init__(self, run: Run, every: float = 10.0):
        self.run, self.every = run, every
        self._mark = None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        p, now = self.run.progress, time.monotonic()
        if self._mark is None:
            self._mark = (now, p.env_steps, p.updates)
            return
        t0, s0, u0 = self._mark
        if now - t0 >= self.every:
            dt = now - t0
            self.run.tracker.log_metrics({"time/env_steps_per_s": (p.env_steps - s0) / dt,
                                          "time/updates_per_s": (p.updates - u0) / dt}, step=p.env_steps)
            self._mark = (now, p.env_steps, p.updates)


class Evaluation(Callback):
    """Every ``eval.every`` env steps: N deterministic episodes, mean return, one video."""

    def __init__(self, run: Run):
        self.run = run
        every = run.cfg.eval.every
        self.next_at = (run.progress.env_steps // every + 1) * every if every > 0 else None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if not trainer.is_global_zero:
            return
        if self.next_at is not None and self.run.progress.env_steps >= self.next_at:
            evaluate_now(self.run)
            every = self.run.cfg.eval.every
            self.next_at = (self.run.progress.env_steps // every + 1) * every


class Checkpointing(Callback):
    """Every ``checkpoint.every`` env steps, at the next episode end (so a resumed run
    starts a fresh episode and no env step is lost or repeated)."""

    def __init__(self, run: Run):
        self.run = run
        every = run.cfg.checkpoint.every
        self.next_at = (run.progress.env_steps // every + 1) * every if every > 0 else None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        run = self.run
        if not trainer.is_global_zero:
            return
        if (self.next_at is not None and run.progress.env_steps >= self.next_at
                and run.stream is not None and run.stream.at_episode_boundary):
            save_checkpoint(run, trainer)
            every = run.cfg.checkpoint.every
            self.next_at = (run.progress.env_steps // every + 1) * every


# --- evaluation and checkpoints ------------------------------------------------------------


def evaluate_now(run: Run) -> float:
    cfg = run.cfg
    policy = run.method.make_policy(explore=False)
    render = None
    if cfg.eval.video:
        render = lambda env: run.family.render(env, cfg.env.image_size)  # noqa: E731
    max_steps = run.specs.episode_policy_steps
    result = seeded(lambda: evaluate(run.eval_env, policy, episodes=cfg.eval.episodes,
                                     max_steps=max_steps, seed=cfg.run.seed, render=render),
                    cfg.run.seed + run.progress.env_steps)
    step = run.progress.env_steps
    run.tracker.log_metrics({"eval/episode_return": result.mean, "eval/episode_return_std": result.std},
                            step=step)
    if result.frames is not None:
        run.tracker.log_video(result.frames, name="eval", step=step)
    if len(run.replay) > 0:
        from wmlab.data import sample

        with torch.no_grad():
            extra = run.method.eval_videos(sample(run.replay, run.data_spec))
        for name, frames in extra.items():
            run.tracker.log_video(frames, name=name, step=step)
    run.last_eval, run.last_eval_step = result.mean, step
    run.last_eval_updates = run.progress.updates
    return result.mean


def checkpoint_state(run: Run, trainer: L.Trainer | None) -> dict[str, Any]:
    state = {
        "method": run.method_name,
        "env": run.env_name,
        "plugin": {"dist": run.plugin.dist, "version": run.plugin.version} if run.plugin else None,
        "config": OmegaConf.to_yaml(run.cfg),
        "run_id": run.tracker.run_id if run.tracker else None,
        "module": run.method.state_dict(),
        "optimizers": [o.state_dict() for o in trainer.optimizers] if trainer else [],
        "progress": run.progress.state_dict(),
        "rng": checkpoint.rng_state(),
    }
    run.method.on_save_checkpoint(state)
    return state


def save_checkpoint(run: Run, trainer: L.Trainer | None, *, with_replay: bool | None = None) -> Path:
    with_replay = run.cfg.checkpoint.replay if with_replay is None else with_replay
    name = f"step-{run.progress.env_steps:010d}"
    path = checkpoint.save(run.ckpt_dir, name, checkpoint_state(run, trainer),
                           run.replay if with_replay else None)
    log.info("checkpoint written: %s", path)
    return path


class RestoreOptimizers(Callback):
    """Puts saved optimizer states back once Lightning has created the optimizers."""

    def __init__(self, states: list[dict]):
        self.states = states

    def on_train_start(self, trainer, pl_module):
        if len(self.states) != len(trainer.optimizers):
            raise CheckpointError(f"the checkpoint holds {len(self.states)} optimizer states, "
                                  f"the method has {len(trainer.optimizers)}")
        for opt, state in zip(trainer.optimizers, self.states):
            opt.load_state_dict(state)
        self.states = []


def restore_weights(run: Run, ckpt: Path, state: dict[str, Any]) -> None:
    try:
        run.method.load_state_dict(state["module"])
    except (RuntimeError, KeyError) as e:
        raise CheckpointError(f"{ckpt} does not fit this method and env: {e}") from None
    run.method.on_load_checkpoint(state)


def restore(run: Run, ckpt: Path, state: dict[str, Any]) -> list[dict]:
    """Weights, counters, RNG and replay from a checkpoint; returns optimizer states."""
    restore_weights(run, ckpt, state)
    run.progress.load_state_dict(state["progress"])
    checkpoint.set_rng_state(state["rng"])
    if not checkpoint.load_replay(ckpt, run.replay):
        log.warning("%s holds no replay buffer; resuming with an empty one", ckpt)
    return state.get("optimizers", [])


# --- the loop ------------------------------------------------------------------------------


def run_stage(run: Run, stage: Stage, optimizer_states: list[dict]) -> None:
    from wmlab.tracking import MlflowEnvStepLogger

    cfg = run.cfg
    budget = stage.env_steps if stage.env_steps is not None else cfg.run.steps
    run.method.on_stage_start(stage)
    if len(run.method.stages()) > 1:  # make the phases easy to tell apart in MLflow
        run.tracker.set_tag("wmlab.stage", stage.name)
        run.tracker.log_metrics({"progress/stage": run.progress.stage_index}, step=run.progress.env_steps)
    stream = ReplayStream(env=run.env, method=run.method, spec=run.data_spec, replay=run.replay,
                          progress=run.progress, stage=stage, stage_env_steps=budget,
                          action_repeat=run.specs.action_repeat)
    run.stream = stream
    bar = ProgressBar(run, stage, budget)
    stream.on_step.append(bar.on_collect)
    stream.on_step.extend(run.step_listeners)
    stream.on_episode.append(lambda ret, length: on_episode(run, ret, length))
    callbacks = [Counters(run, stage), bar, Throughput(run), Evaluation(run), Checkpointing(run)]
    if optimizer_states:
        callbacks.append(RestoreOptimizers(optimizer_states))
    logger = MlflowEnvStepLogger(run.tracker, step_fn=lambda: run.progress.env_steps)
    trainer = make_trainer(cfg, callbacks, logger)
    try:
        fit_interruptible(trainer, run.method, DataLoader(stream, batch_size=None, collate_fn=_as_is))
    finally:
        bar.close()
        stream.close()
    run.last_trainer = trainer


def _as_is(batch):
    """The stream yields finished TensorDict batches: no collation."""
    return batch


def fit_interruptible(trainer: L.Trainer, module, loader) -> None:
    """``trainer.fit``, turning Lightning's exit on Ctrl-C back into a KeyboardInterrupt."""
    try:
        trainer.fit(module, train_dataloaders=loader)
    except SystemExit:
        if trainer.interrupted:
            raise KeyboardInterrupt from None
        raise
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def on_episode(run: Run, ret: float, length: int) -> None:
    run.last_return = ret
    run.tracker.log_metrics({"collect/episode_return": ret,
                             "collect/episode_length": length * run.specs.action_repeat},
                            step=run.progress.env_steps)


def train(run: Run, resume: tuple[Path, dict] | None = None) -> dict[str, Any]:
    """Run every remaining stage, then the final evaluation and checkpoint."""
    cfg = run.cfg
    run.method.progress = run.progress
    probe = make_trainer(cfg, [], False)
    capacity = run.data_spec.capacity or cfg.replay.capacity
    run.replay = make_replay(run.data_spec, capacity, replay_device(cfg, probe))
    optimizer_states: list[dict] = []
    if resume is not None:
        optimizer_states = restore(run, *resume)
    stages = run.method.stages()
    run.last_trainer = None
    while True:  # the last stage stays current, so a finished run can be resumed for longer
        stage = stages[run.progress.stage_index]
        run.progress.stage = stage.name
        run_stage(run, stage, optimizer_states)
        optimizer_states = []
        if run.progress.stage_index + 1 >= len(stages):
            break
        run.progress.stage_index += 1
        run.progress.stage_env_steps = 0
        run.progress.stage_updates = 0
    summary = {"env_steps": run.progress.env_steps, "updates": run.progress.updates,
               "episodes": run.progress.episodes}
    if process_rank() > 0:  # rank 0 evaluates, checkpoints and logs the model
        return summary
    if cfg.eval.final:
        # a periodic eval just ran, and no update since (a stage that only trains, such as
        # Plan2Explore's adapt, changes the policy without any env step)
        fresh = (run.last_eval_step == run.progress.env_steps
                 and run.last_eval_updates == run.progress.updates)
        summary["eval_return"] = run.last_eval if fresh else evaluate_now(run)
    final = save_checkpoint(run, run.last_trainer)
    run.tracker.log_artifact(final / checkpoint.STATE, "model")
    run.tracker.flush()
    summary["checkpoint"] = str(final)
    return summary
