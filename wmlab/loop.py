"""``wmlab fit``: assembles a run from factories and runs its stages.

The core builds the envs, the method, the replay and the tracker, then runs each stage
by its kind (:attr:`wmlab.api.Stage.kind`): a gradient stage is one ``Trainer.fit`` over
a :class:`~wmlab.data.ReplayStream` or :class:`~wmlab.data.RolloutStream`, a collect-only
stage a :class:`~wmlab.data.CollectStream`, a search stage generations of ask, score and
tell. One :class:`Clock` in env steps evaluates, checkpoints and reports throughput in
every kind. Nothing here knows any method by name.
"""

from __future__ import annotations

import gc
import logging
import math
import os
import shutil
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.callbacks import Callback
from tensordict import TensorDictBase
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from wmlab import checkpoint, registry
from wmlab.api import COLLECT, DataSpec, EnvSpecs, Method, Policy, Progress, Stage
from wmlab.config import COMPILE_MODES  # ``run.compile``: off, or a mode of torch.compile
from wmlab.data import (Collection, CollectStream, RandomPolicy, ReplayStream, RolloutStream, SwitchPolicy, make_replay,
                        num_envs, sample, stored_keys)
from wmlab.errors import CheckpointError, ConfigError
from wmlab.evaluation import EVAL_SEED_OFFSET, evaluate, seeded
from wmlab.memory import reuse_freed_memory
from wmlab.quiet import quiet_libraries

log = logging.getLogger("wmlab")
# lightning sets its loggers to INFO when first imported (above): quiet them again now
quiet_libraries()


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
    stream: Any = None
    """The current stage's data (a ReplayStream, RolloutStream or collect-only stream)."""
    clock: Any = None
    trainer: Any = None
    """The Trainer of the gradient stage running now, if any."""
    optimizer_states: list = field(default_factory=list)
    """Optimizer states carried from one gradient stage to the next (and through checkpoints)."""
    last_return: float | None = None
    ended: list = field(default_factory=list)
    """``(env step, return, length)`` of training episodes ended in this collection step."""
    last_eval: float | None = None
    last_eval_step: int | None = None
    last_eval_updates: tuple | None = None
    step_listeners: list = field(default_factory=list)
    """Extra ``fn(td)`` called on every collection step (``td [N, T]``; benchmarks, tools)."""
    stop: "StopRequest" = field(default_factory=lambda: StopRequest())
    """Ctrl-C / SIGTERM: stop at the next safe point, with a checkpoint (see :class:`StopRequest`)."""
    eval_pending: bool = False
    """An evaluation due at this env step was interrupted: a resume takes it first."""
    more_eval_envs: list = field(default_factory=list)
    """The eval envs after the first (``eval.envs`` - 1), made at the first evaluation."""
    last_checkpoint_time: float = field(default_factory=time.monotonic)
    stopped_checkpoint: Path | None = None
    """The checkpoint written when a stop was asked for, if any."""


class StopRequest:
    """Ctrl-C (SIGINT) and SIGTERM while a run trains.

    The first signal asks the run to stop at its next safe point: after the update, env step,
    evaluation step or search episode batch under way (seconds in every phase); there the run
    raises :class:`KeyboardInterrupt`, and :func:`train` writes a checkpoint of that point
    before it propagates (an interrupted evaluation is taken again first on resume). A second
    signal stops at once, with no checkpoint. :meth:`install` (the CLI does) routes both
    signals here; without it Ctrl-C raises at once, as Python does."""

    def __init__(self):
        self.signum: int | None = None
        self.forced = False
        self._saved: dict[int, Any] = {}

    def install(self) -> None:
        """Handle SIGINT and SIGTERM (from the main thread)."""
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._saved[sig] = signal.signal(sig, self.handle)

    def uninstall(self) -> None:
        for sig, handler in self._saved.items():
            signal.signal(sig, handler)
        self._saved = {}

    @property
    def installed(self) -> bool:
        return bool(self._saved)

    def handle(self, signum, frame) -> None:
        if self.signum is not None:
            self.forced = True
            raise KeyboardInterrupt
        self.signum = signum
        print(f"\nwmlab: {signal.Signals(signum).name}: stopping at the next safe point with a "
              f"checkpoint (again: stop now, without one)", file=sys.stderr, flush=True)

    def check(self) -> None:
        """Raise :class:`KeyboardInterrupt` if a stop was asked for."""
        if self.signum is not None:
            raise KeyboardInterrupt

    @property
    def graceful(self) -> bool:
        """A stop was asked for and reached a safe point (a checkpoint there is consistent)."""
        return self.signum is not None and not self.forced


def process_rank() -> int:
    """Global rank of this process under Lightning's DDP launchers (0 when not distributed)."""
    for var in ("RANK", "LOCAL_RANK"):
        if var in os.environ:
            return int(os.environ[var])
    return 0


#: each distributed rank collects with its own seed: run.seed + RANK_SEED_STRIDE * rank
RANK_SEED_STRIDE = 1000


def set_threads(cfg: DictConfig) -> None:
    """``run.threads`` torch threads; 0 keeps torch's default (every core, or
    ``$OMP_NUM_THREADS``)."""
    if cfg.run.threads:
        torch.set_num_threads(cfg.run.threads)


def check_compile(mode: str) -> None:
    """Reject a ``run.compile`` the loop cannot run, before anything is built."""
    if mode not in COMPILE_MODES:
        raise ConfigError(f"run.compile={mode}; valid: {', '.join(COMPILE_MODES)}")
    compilers = [os.environ.get("CXX"), "g++", "c++", "clang++"]
    if mode != "off" and not any(c and shutil.which(c) for c in compilers):
        raise ConfigError(f"run.compile={mode} needs a C++ compiler for torch.compile and found "
                          f"none (g++, c++, clang++ or $CXX): install g++, or set run.compile=off")


def check_replay_device(name: str) -> None:
    """Reject a ``replay.device`` that torch cannot parse or this machine does not have
    (without creating a CUDA context: DDP ranks have not chosen their GPU yet)."""
    if name == "auto":
        return
    gpus = torch.cuda.device_count()
    valid = "auto (the training device), cpu" + (f", cuda, cuda:0 to cuda:{gpus - 1}" if gpus else "")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError, ValueError):
        raise ConfigError(f"replay.device={name!r} is not a device; valid: {valid}") from None
    if device.type not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"replay.device={name!r}: the replay holds its data on the CPU or a GPU; "
                          f"valid: {valid}")
    if device.type == "cuda" and (device.index or 0) >= gpus:
        raise ConfigError(f"replay.device={name!r}: this machine has {gpus} CUDA devices; valid: {valid}")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"replay.device={name!r}: MPS is not available here; valid: {valid}")


#: torch.compile modes that record CUDA graphs on a GPU
CUDA_GRAPH_MODES = ("reduce-overhead", "max-autotune")
#: devices whose compiled outputs live in a CUDA graph's memory pool
_GRAPH_DEVICES = ("cuda",)


def _copied_out_of_graphs(compiled):
    """``compiled`` with its outputs on a GPU copied out of the CUDA graph's memory.

    A CUDA graph writes its outputs into the same memory at every replay, and torch's
    graph trees start a new replay generation at a call with no backward pending (every
    call under ``no_grad``: planning, imagined rollouts, targets). An output kept from an
    earlier call and passed to a later one (a latent stepped through the dynamics) is then
    overwritten memory: TD-MPC's update failed so with ``reduce-overhead`` on an H200
    ("accessing tensor output of CUDAGraphs that has been overwritten by a subsequent run").
    A copy per output, differentiable as the output itself, is what torch's error names."""

    def forward(*args, **kwargs):
        return torch.utils._pytree.tree_map_only(
            torch.Tensor, lambda t: t.clone() if t.device.type in _GRAPH_DEVICES else t,
            compiled(*args, **kwargs))

    return forward


class CompileProgress:
    """Lines on stderr while torch.compile works. ``run.compile`` compiles inside the first
    calls of the update and of acting, graph by graph (each new input shape or grad mode of
    a module, and backward passes, is a graph of its own), with nothing else printed
    meanwhile: DreamerV2's modules compiled for more than two minutes on an H200. When a
    graph starts compiling ``every`` seconds or more after the last line, a line says which,
    how many are done and the seconds compiling took so far; :meth:`summary` totals them."""

    def __init__(self, every: float = 10.0):
        self.every = every
        self.reset()

    def reset(self) -> None:
        self.graphs, self.seconds = 0, 0.0
        self._began: float | None = None
        self._said = time.monotonic()

    def start(self, *args) -> None:
        self._began = time.perf_counter()
        if time.monotonic() - self._said >= self.every:
            self._said = time.monotonic()
            graph = getattr(args[0], "compile_id", None) if args else None
            tqdm.write(f"wmlab: run.compile: compiling{f' graph {graph}' if graph else ''} "
                       f"({self.graphs} compiled so far, {self.seconds:.0f} s)", file=sys.stderr)

    def end(self, *_args) -> None:
        if self._began is not None:
            self.graphs += 1
            self.seconds += time.perf_counter() - self._began
            self._began = None

    def summary(self) -> str:
        return f"{self.graphs} graphs compiled in {self.seconds:.0f} s"


#: the process's one :class:`CompileProgress`, hooked into dynamo by compile_method
COMPILE_PROGRESS = CompileProgress()


def _hook_compile_progress() -> None:
    """Count from zero and make sure :data:`COMPILE_PROGRESS` hears dynamo's compile
    callbacks (torch's private hooks, which ``torch._dynamo.reset()`` clears: without them
    compiling runs silent, as before)."""
    COMPILE_PROGRESS.reset()
    try:
        from torch._dynamo.callback import callback_handler
    except ImportError:
        return
    if COMPILE_PROGRESS.start not in callback_handler.start_callbacks:
        callback_handler.register_start_callback(COMPILE_PROGRESS.start)
        callback_handler.register_end_callback(COMPILE_PROGRESS.end)


def compile_method(method: Method, mode: str) -> list[str]:
    """Compile, in place, the ``forward`` of each submodule ``method`` names
    (:meth:`Method.compiled_modules`) with torch.compile ``mode``; returns their names.
    ``off`` compiles nothing. Parameters and ``state_dict`` keys stay as they are."""
    if mode == "off":
        return []
    names = list(method.compiled_modules())
    what = type(method).__name__
    if not names:
        print(f"wmlab: run.compile={mode}: {what} names no modules to compile "
              f"(Method.compiled_modules); it runs eager", file=sys.stderr, flush=True)
        return []
    # modules of one class share a forward, so dynamo keeps their graphs in one cache, whose
    # default limit (8) a method's MLPs of several depths and shapes would overflow into eager
    dynamo = torch._dynamo.config
    dynamo.recompile_limit = max(dynamo.recompile_limit, 8 * len(names))
    # a compiled backward that reuses ("donates") its saved tensors' memory refuses a second
    # backward through the same graph; Dreamer's actor and critic losses share one forward
    # pass of the critic and go backward through it twice (retain_graph)
    torch._functorch.config.donated_buffer = False
    _hook_compile_progress()
    for name in names:
        try:
            module = method.get_submodule(name)
        except AttributeError:
            raise ConfigError(f"run.compile: {what}.compiled_modules() names {name!r}, which is "
                              f"not a submodule of {what}") from None
        # the bound forward, compiled, as an instance attribute: the module's parameters and
        # state_dict keys stay as they are (torch.compile(module) would nest them under
        # _orig_mod); nn.Module.compile() compiled nothing here (torch 2.13, CPU)
        compiled = torch.compile(module.forward, mode=None if mode == "default" else mode)
        module.forward = _copied_out_of_graphs(compiled) if mode in CUDA_GRAPH_MODES else compiled
    print(f"wmlab: run.compile={mode}: {len(names)} modules of {what} compile at their first "
          f"calls ({', '.join(names)})", file=sys.stderr, flush=True)
    return names


def build(cfg: DictConfig, method_name: str, *, method_cls=None, plugin=None) -> Run:
    """Env, method and specs for a composed config (replay and tracker come later)."""
    from wmlab.envs import split_family

    set_threads(cfg)
    if cfg.run.reuse_memory:
        reuse_freed_memory()
    make_trainer(cfg, [], False)  # reject bad accelerator/devices/precision/strategy up front
    check_compile(cfg.run.compile)
    check_replay_device(cfg.replay.device)
    seed = cfg.run.seed + RANK_SEED_STRIDE * process_rank()
    L.seed_everything(seed, workers=True, verbose=False)
    if method_cls is None:
        method_cls, plugin = registry.load_method(method_name)
    family_name, task = split_family(cfg.env.name)
    family, _ = registry.load_env_family(family_name)
    eval_env = family.make(task, cfg.env, seed=cfg.run.seed + EVAL_SEED_OFFSET)
    specs = family.specs(eval_env, cfg.env)
    method = method_cls(cfg.method, specs)
    check_stages(method, specs)
    compile_method(method, cfg.run.compile)
    env = make_envs(family, task, cfg, seed)
    return Run(cfg=cfg, method_name=method_name, env_name=cfg.env.name, method=method, plugin=plugin,
               family=family, env=env, eval_env=eval_env, specs=specs, data_spec=method.data_spec())


def make_envs(family, task: str, cfg: DictConfig, seed: int):
    """The training envs: one env, or ``run.envs`` of them stepping together (torchrl
    ``SerialEnv``; env ``i`` seeded ``seed + i``)."""
    n = int(cfg.run.envs)
    if n == 1:
        return family.make(task, cfg.env, seed=seed)
    from functools import partial

    from torchrl.envs import SerialEnv

    fns = [partial(family.make, task, cfg.env, seed=seed + i) for i in range(n)]
    return SerialEnv(n, fns)


def check_stages(method: Method, specs: EnvSpecs) -> None:
    """Reject stage and data settings the loop cannot run, with one line each."""
    provided = set(obs_keys(specs))
    for stage in method.stages():
        where = f"stage {stage.name!r} of {type(method).__name__}"
        if stage.collects not in COLLECT:
            raise ConfigError(f"{where}: collect={stage.collect!r}; valid: {', '.join(COLLECT)}")
        if stage.search is not None and (stage.search.generations < 1 or stage.search.episodes < 1):
            raise ConfigError(f"{where}: a search needs generations >= 1 and episodes >= 1")
        spec = stage.data if stage.data is not None else method.data_spec()
        if spec.on_policy and stage.kind == "train" and spec.prefill_steps > 0:
            raise ConfigError(f"{where} asks for on-policy data with a prefill of {spec.prefill_steps} "
                              f"env steps; on-policy rollouts come from the current policy: "
                              f"set prefill_steps=0 (or add a stage with collect='random')")
        if spec.on_policy and stage.kind == "offline":
            raise ConfigError(f"{where} trains on on-policy data but collects nothing (env_steps=0)")
        sampler = spec.sampler
        missing = [k for k in getattr(sampler, "needs", ()) if k not in provided]
        if missing:
            raise ConfigError(f"{where}: its sampler {type(sampler).__name__} needs observation "
                              f"entries {', '.join(missing)} that the env does not provide "
                              f"(it provides: {', '.join(sorted(provided))})")


def _strategy(name: str, cfg: DictConfig | None = None):
    """Lightning's strategy for ``run.strategy``. ``ddp`` looks for parameters a backward pass
    left without gradient: methods with several optimizers (manual optimization) run one
    backward per loss, each touching part of the model (tdmpc's policy loss leaves the
    world model out), which plain DDP refuses at its first update. So does ``auto`` where
    Lightning would choose DDP (several devices or nodes, e.g. ``run.devices=2``)."""
    from lightning.pytorch.strategies import DDPStrategy

    if name == "auto" and cfg is not None and (cfg.run.nodes != 1 or str(cfg.run.devices) != "1"):
        probe = L.Trainer(accelerator=cfg.run.accelerator, devices=cfg.run.devices, num_nodes=cfg.run.nodes,
                          strategy="auto", logger=False, enable_checkpointing=False,
                          enable_progress_bar=False, enable_model_summary=False)
        if isinstance(probe.strategy, DDPStrategy):
            name = "ddp"
    if name == "ddp":
        return DDPStrategy(find_unused_parameters=True)
    return name


def make_trainer(cfg: DictConfig, callbacks: list[Callback], logger) -> L.Trainer:
    try:
        return L.Trainer(
            accelerator=cfg.run.accelerator, devices=cfg.run.devices, precision=cfg.run.precision,
            strategy=_strategy(cfg.run.strategy, cfg), num_nodes=cfg.run.nodes, max_epochs=1, logger=logger, callbacks=callbacks,
            enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
            log_every_n_steps=cfg.tracking.log_every, num_sanity_val_steps=0, limit_val_batches=0,
            use_distributed_sampler=False, default_root_dir=cfg.checkpoint.dir,
        )
    except (ValueError, TypeError, RuntimeError, ImportError, MisconfigurationException) as e:
        raise ConfigError(f"invalid Lightning settings in run.* "
                          f"(accelerator/devices/precision/strategy): {e}") from None


def replay_device(cfg: DictConfig, trainer: L.Trainer) -> torch.device:
    return trainer.strategy.root_device if cfg.replay.device == "auto" else torch.device(cfg.replay.device)


# --- the clock -------------------------------------------------------------------------------


class Clock:
    """One clock in env steps for every stage kind: evaluation every ``eval.every`` env steps,
    checkpoints at the first episode end after every ``checkpoint.every`` env steps or
    ``checkpoint.minutes`` minutes (or, with several envs that never end together, one
    episode length later), throughput every 10 s. Every collection step ticks it, every
    update and every search generation too; each tick is also a safe point to stop at
    (:class:`StopRequest`)."""

    def __init__(self, run: Run, throughput_every: float = 10.0):
        self.run = run
        p = run.progress
        self.next_eval = self._next(run.cfg.eval.every)
        self.next_ckpt = self._next(run.cfg.checkpoint.every)
        self.ckpt_seconds = 60.0 * float(run.cfg.checkpoint.minutes)
        self.throughput_every = throughput_every
        self.checkpoint_due = False  # found due by tick, written by settle
        self._mark = (time.monotonic(), p.env_steps, p.updates)

    def _next(self, every: int) -> int | None:
        return (self.run.progress.env_steps // every + 1) * every if every > 0 else None

    def tick(self, trainer: L.Trainer | None = None, *, settle: bool = True) -> None:
        run, p = self.run, self.run.progress
        if process_rank() > 0:  # rank 0 evaluates and checkpoints
            return
        stream = run.stream
        # at the end of a stage's budget the stage's (or the run's final) evaluation comes
        # after its last updates: none here, so no env step gets two
        spent = stream is not None and stream.budget_spent()
        if self.next_eval is not None and p.env_steps >= self.next_eval and not spent:
            # (a stage's end may have evaluated at or after the due step: at the budget's
            # last step, where this tick skipped it, then the next stage's first tick came)
            if run.last_eval_step is None or run.last_eval_step < self.next_eval:
                evaluate_now(run)
            self.next_eval = self._next(run.cfg.eval.every)
        if (self.ckpt_seconds > 0 and time.monotonic() - run.last_checkpoint_time >= self.ckpt_seconds
                and (self.next_ckpt is None or self.next_ckpt > p.env_steps)):
            self.next_ckpt = p.env_steps  # due by time: at the next episode end, as by steps
        if self.next_ckpt is not None and p.env_steps >= self.next_ckpt:
            overdue = p.env_steps >= self.next_ckpt + run.specs.episode_policy_steps * run.specs.action_repeat
            if stream is None or stream.at_episode_boundary or overdue:
                self.checkpoint_due = True
                self.next_ckpt = self._next(run.cfg.checkpoint.every)
        now = time.monotonic()
        t0, s0, u0 = self._mark
        if now - t0 >= self.throughput_every:
            dt = now - t0
            run.tracker.log_metrics({"time/env_steps_per_s": (p.env_steps - s0) / dt,
                                     "time/updates_per_s": (p.updates - u0) / dt}, step=p.env_steps)
            self._mark = (now, p.env_steps, p.updates)
        if settle:
            self.settle(trainer)

    def settle(self, trainer: L.Trainer | None = None) -> None:
        """Write the checkpoint :meth:`tick` found due, then act on a stop asked for. After an
        update, this waits for the update's metrics: Lightning logs them after
        ``on_train_batch_end``, so :class:`Ticks` settles at the next batch's start (before it
        is filled) or at the stage's end, and the checkpoint counts them (see Tracker)."""
        if process_rank() > 0:
            return
        run = self.run
        if self.checkpoint_due:
            self.checkpoint_due = False
            save_checkpoint(run, trainer)
        if run.stop.signum is not None:
            if trainer is not None and trainer.optimizers:  # the states the checkpoint needs
                run.optimizer_states = current_optimizer_states(run, trainer)
            run.stop.check()


class Ticks(Callback):
    """Counts finished updates (Lightning's global_step counts optimizer steps instead) and
    ticks the clock after each."""

    def __init__(self, run: Run, stage: Stage, bar: "ProgressBar"):
        self.run, self.stage, self.bar = run, stage, bar

    def on_train_start(self, trainer, pl_module):
        # Lightning logs every trainer.log_every_n_steps batches counted from its own start:
        # a resumed stage continues the count, so its metrics land at the same env steps
        loop = trainer.fit_loop.epoch_loop
        if hasattr(loop, "_batches_that_stepped"):
            loop._batches_that_stepped = self.run.progress.stage_updates

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        p = self.run.progress
        p.updates += 1
        p.stage_updates += 1
        if self.stage.kind == "offline":
            p.offline_updates += 1
        self.bar.refresh()
        self.run.clock.tick(trainer, settle=False)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.run.clock.settle(trainer)  # before FillBatch collects or draws

    def on_train_end(self, trainer, pl_module):
        self.run.clock.settle(trainer)


class FillBatch(Callback):
    """Collects the rollout an on-policy update trains on, or draws the replay batch of an
    update, right before the update (the streams hand out placeholders)."""

    def __init__(self, run: Run):
        self.run = run

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.run.stream.fill(batch, pl_module.device)


class ProgressBar:
    """A tqdm bar per stage: env steps (collecting stages), updates (offline stages) or
    generations (search stages); last episode return, last eval, updates, speed."""

    UNITS = {"train": "step", "collect": "step", "offline": "upd", "search": "gen"}

    def __init__(self, run: Run, stage: Stage, total: int):
        self.run, self.kind = run, stage.kind
        desc = f"{run.method_name} {run.env_name}" + (f" [{stage.name}]" if stage.name != "train" else "")
        self.desc = desc
        self.bar = tqdm(total=total, initial=self._count(), desc=desc, unit=self.UNITS[self.kind],
                        dynamic_ncols=True, mininterval=1.0, disable=None)
        self._last_post = 0.0

    def _count(self) -> int:
        p = self.run.progress
        return {"offline": p.stage_updates, "search": p.stage_generations}.get(self.kind, p.stage_env_steps)

    def refresh(self, *_args) -> None:
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
            self.bar.n = self._count()
            self.bar.set_postfix(post, refresh=True)
        else:  # not a terminal (a log file, CI): a plain line every 30 s instead of a bar
            fields = " ".join(f"{k}={v}" for k, v in post.items())
            print(f"{self.desc}: {p.env_steps} env steps {fields}", file=sys.stderr, flush=True)

    def close(self):
        self.bar.n = self._count()
        self.bar.close()


# --- evaluation and checkpoints ------------------------------------------------------------


class EvalProgress:
    """Progress of one evaluation: a bar over its policy steps on a terminal, a line per
    episode (its return and time) elsewhere."""

    def __init__(self, run: Run):
        cfg = run.cfg
        self.stop = run.stop
        self.episodes, self.step = cfg.eval.episodes, run.progress.env_steps
        self.bar = tqdm(total=self.episodes * run.specs.episode_policy_steps, leave=False,
                        desc=f"eval at {self.step} env steps", unit="step", dynamic_ncols=True,
                        mininterval=1.0, disable=None)

    def __call__(self, episode: int, steps: int, ret: float | None, seconds: float) -> None:
        if ret is None:  # a policy step of a running episode
            self.bar.update(1)
            self.stop.check()
            return
        if self.bar.disable:
            print(f"eval at {self.step} env steps: episode {episode + 1}/{self.episodes} return "
                  f"{ret:.1f} ({steps} steps, {seconds:.1f} s)", file=sys.stderr, flush=True)
        else:
            self.bar.set_postfix({"episode": f"{episode + 1}/{self.episodes}", "ret": f"{ret:.1f}"})

    def close(self):
        self.bar.close()


def eval_metrics(run: Run):
    """The env family's metrics of an evaluation episode from its last step
    (:meth:`wmlab.envs.EnvFamily.eval_metrics`; a family without any has none)."""
    family_metrics = getattr(run.family, "eval_metrics", None)
    if family_metrics is None:  # (a family written before the hook existed)
        return None
    return lambda td, env=run.eval_env: family_metrics(env, td)


def more_eval_envs(run: Run) -> list:
    """The eval envs besides ``run.eval_env`` that ``eval.envs`` asks for (made once)."""
    from wmlab.envs import split_family

    want = int(run.cfg.eval.envs) - 1
    if len(run.more_eval_envs) < want:
        task = split_family(run.cfg.env.name)[1]
        seed = run.cfg.run.seed + EVAL_SEED_OFFSET
        run.more_eval_envs += [run.family.make(task, run.cfg.env, seed=seed + i)
                               for i in range(len(run.more_eval_envs) + 1, want + 1)]
    return run.more_eval_envs[:want]


def evaluate_now(run: Run) -> float:
    cfg = run.cfg
    policy = run.method.make_policy(explore=False)
    ready_policy(run, policy)
    render = None
    if cfg.eval.video:
        render = lambda env: run.family.render(env, cfg.eval.video_size)  # noqa: E731
    max_steps = run.specs.episode_policy_steps
    progress = EvalProgress(run)
    run.eval_pending = True  # until it completes (a stop in between: the resume evaluates here)
    try:
        result = seeded(lambda: evaluate(run.eval_env, policy, episodes=cfg.eval.episodes,
                                         max_steps=max_steps, seed=cfg.run.seed, render=render,
                                         progress=progress, metrics=eval_metrics(run),
                                         more_envs=more_eval_envs(run)),
                        cfg.run.seed + run.progress.env_steps)
    finally:
        progress.close()
    run.eval_pending = False
    step = run.progress.env_steps
    run.tracker.log_metrics({"eval/episode_return": result.mean, "eval/episode_return_std": result.std,
                             **{f"eval/{k}": v for k, v in result.metrics.items()}}, step=step)
    if result.frames is not None:
        run.tracker.log_video(result.frames, name="eval", step=step)
    batch = eval_video_batch(run)
    if batch is not None:
        with torch.no_grad():
            extra = run.method.eval_videos(batch)
        for name, frames in extra.items():
            run.tracker.log_video(frames, name=name, step=step)
    run.last_eval, run.last_eval_step = result.mean, step
    run.last_eval_updates = (run.progress.updates, run.progress.generations)
    return result.mean


def eval_video_batch(run: Run) -> TensorDictBase | None:
    """What :meth:`Method.eval_videos` reads: a replay sample shaped as the method's
    :meth:`~Method.data_spec` asks, or for on-policy data the latest rollout ``[N, T]``;
    ``None`` while there is neither (nothing collected yet, no complete window stored)."""
    spec = run.data_spec
    if spec.on_policy:
        return getattr(run.stream, "last_rollout", None)
    if len(run.replay) == 0:
        return None
    try:
        return sample(run.replay, spec)
    except RuntimeError:  # no complete window stored yet
        return None


def current_optimizer_states(run: Run, trainer: L.Trainer | None) -> list[dict]:
    if trainer is not None and trainer.optimizers:
        return [o.state_dict() for o in trainer.optimizers]
    return run.optimizer_states


def checkpoint_state(run: Run, trainer: L.Trainer | None) -> dict[str, Any]:
    state = {
        "method": run.method_name,
        "env": run.env_name,
        "plugin": {"dist": run.plugin.dist, "version": run.plugin.version} if run.plugin else None,
        "config": OmegaConf.to_yaml(run.cfg),
        "run_id": run.tracker.run_id if run.tracker else None,
        "module": run.method.state_dict(),
        "optimizers": current_optimizer_states(run, trainer),
        "progress": run.progress.state_dict(),
        "rng": checkpoint.rng_state(),
        "env_rng": env_rng_states(run.env),
        "eval_pending": run.eval_pending,
        # the latest evaluation, so a resumed run evaluates where the run left alone would
        "last_eval": None if run.last_eval_step is None else {
            "return": float(run.last_eval), "step": int(run.last_eval_step),
            "updates": [int(u) for u in run.last_eval_updates]},
        # values logged per metric up to here (flushed first): a resume drops what it logs again
        "metric_counts": getattr(run.tracker, "metric_counts", lambda: None)(),
    }
    run.method.on_save_checkpoint(state)
    return state


def save_checkpoint(run: Run, trainer: L.Trainer | None, *, with_replay: bool | None = None) -> Path:
    with_replay = run.cfg.checkpoint.replay if with_replay is None else with_replay
    name = f"step-{run.progress.env_steps:010d}"
    # what was logged up to this point is stored before the checkpoint exists, so a resume
    # from it replays only steps whose metrics the run may lack (see Tracker)
    run.tracker.flush()
    path = checkpoint.save(run.ckpt_dir, name, checkpoint_state(run, trainer),
                           run.replay if with_replay else None)
    run.last_checkpoint_time = time.monotonic()
    log.info("checkpoint written: %s", path)
    return path


class RestoreOptimizers(Callback):
    """Puts optimizer states back once Lightning has created the optimizers (from a
    checkpoint, or from the previous stage: optimizer state carries over between stages)."""

    def __init__(self, states: list[dict]):
        self.states = states

    def on_train_start(self, trainer, pl_module):
        if len(self.states) != len(trainer.optimizers):
            raise CheckpointError(f"{len(self.states)} optimizer states were saved, the method "
                                  f"has {len(trainer.optimizers)} (configure_optimizers must return "
                                  f"the same optimizers in every stage)")
        for opt, state in zip(trainer.optimizers, self.states):
            opt.load_state_dict(state)
        self.states = []


def _base_envs(env) -> list:
    """The training envs under torchrl's layers: one, or each of a SerialEnv's."""
    from torchrl.envs import SerialEnv, TransformedEnv

    while isinstance(env, TransformedEnv):
        env = env.base_env
    if isinstance(env, SerialEnv):
        if env.is_closed:
            env.start()
        return [e for sub in env._envs for e in _base_envs(sub)]
    return [env]


def env_rng_states(env) -> list | None:
    """Each training env's random state as of before its latest reset (``rng_state()`` of the
    env family's env), so a resume draws the same episodes; ``None`` if an env has none."""
    envs = _base_envs(env)
    if not all(hasattr(e, "rng_state") for e in envs):
        return None
    return [e.rng_state() for e in envs]


def set_env_rng_states(env, states: list | None) -> None:
    envs = _base_envs(env)
    if states is None or len(states) != len(envs):
        return  # (a checkpoint without them, or of another run.envs: the envs keep their seeds)
    for e, state in zip(envs, states):
        e.set_rng_state(state)


def restore_weights(run: Run, ckpt: Path, state: dict[str, Any]) -> None:
    try:
        run.method.load_state_dict(state["module"])
    except (RuntimeError, KeyError) as e:
        raise CheckpointError(f"{ckpt} does not fit this method and env: {e}") from None
    run.method.on_load_checkpoint(state)


def restore(run: Run, ckpt: Path, state: dict[str, Any]) -> None:
    """Weights, counters, RNG, replay and optimizer states from a checkpoint."""
    restore_weights(run, ckpt, state)
    run.progress.load_state_dict(state["progress"])
    checkpoint.set_rng_state(state["rng"])
    set_env_rng_states(run.env, state.get("env_rng"))
    run.eval_pending = bool(state.get("eval_pending", False))
    if state.get("last_eval"):
        last = state["last_eval"]
        run.last_eval, run.last_eval_step = last["return"], last["step"]
        run.last_eval_updates = tuple(last["updates"])
    if run.tracker is not None and hasattr(run.tracker, "resume_from"):
        run.tracker.resume_from(state.get("metric_counts"))
    if not checkpoint.load_replay(ckpt, run.replay, state.get("version", 1)):
        log.warning("%s holds no replay buffer; resuming with an empty one", ckpt)
    run.optimizer_states = state.get("optimizers", [])


# --- the stages ----------------------------------------------------------------------------


def obs_keys(specs: EnvSpecs) -> tuple[str, ...]:
    from wmlab import keys

    return (keys.OBSERVATION, *specs.extra_obs)


#: the autocast dtype of Lightning's mixed precision settings
MIXED_PRECISION = {"bf16-mixed": torch.bfloat16, "bf16": torch.bfloat16,
                   "16-mixed": torch.float16, "16": torch.float16}


def ready_policy(run: Run, policy: Policy) -> Policy:
    """Set what the core tells a policy before it acts: the observation entries it reads,
    and under a mixed ``run.precision`` the autocast dtype its ``act`` runs under (so acting,
    planning included, computes as the updates do)."""
    policy.obs_keys = obs_keys(run.specs)
    policy.autocast = MIXED_PRECISION.get(str(run.cfg.run.precision))
    return policy


def stage_data(run: Run, stage: Stage) -> DataSpec:
    return stage.data if stage.data is not None else run.data_spec


def stage_policy(run: Run, stage: Stage, spec: DataSpec):
    """What collects in ``stage``: random actions, or the method's policy after the prefill."""
    random = RandomPolicy(run.specs)
    if stage.collects == "random":
        return random
    policy = run.method.make_policy(explore=stage.explore)
    ready_policy(run, policy)
    prefill = math.ceil(spec.prefill_steps / run.specs.action_repeat)
    return SwitchPolicy(random, policy, lambda: run.progress.policy_steps < prefill)


def make_collection(run: Run, stage: Stage, spec: DataSpec) -> Collection:
    collection = Collection(env=run.env, policy=stage_policy(run, stage, spec), progress=run.progress,
                            action_repeat=run.specs.action_repeat,
                            replay=None if spec.on_policy else run.replay,
                            row_keys=stored_keys(run.specs),
                            steps=spec.sequence_length if spec.on_policy else 1)
    collection.on_step.append(lambda td: log_episodes(run))
    collection.on_step.extend(run.step_listeners)
    if not spec.on_policy:  # (a rollout is ticked after its update: a checkpoint between would lose it)
        # a checkpoint found due after an update is written before the env moves on (the
        # replay stream collects while Lightning fetches, before the next batch starts)
        collection.before_step.append(lambda: run.clock.settle(run.trainer))
        collection.on_step.append(lambda td: run.clock.tick(run.trainer))
    collection.on_episode.append(lambda ret, length: on_episode(run, ret, length))
    return collection


def stage_budget(run: Run, stage: Stage) -> int:
    return stage.env_steps if stage.env_steps is not None else run.cfg.run.steps


def run_stage(run: Run, stage: Stage) -> None:
    """One stage, by its kind: gradient (``train``/``offline``), ``collect`` or ``search``."""
    run.method.on_stage_start(stage)
    if len(run.method.stages()) > 1:  # make the phases easy to tell apart in MLflow
        run.tracker.set_tag("wmlab.stage", stage.name)
        p = run.progress
        if p.stage_env_steps == p.stage_updates == p.stage_generations == 0:  # begun, not resumed
            run.tracker.log_metrics({"progress/stage": p.stage_index}, step=p.env_steps)
    kind = stage.kind
    total = {"offline": stage.updates or 0,
             "search": stage.search.generations if stage.search else 0}.get(kind, stage_budget(run, stage))
    bar = ProgressBar(run, stage, total)
    try:
        if kind == "search":
            run_search(run, stage, bar)
        elif kind == "collect":
            run_collect(run, stage, bar)
        else:
            run_gradient(run, stage, bar)
    finally:
        bar.close()
        if run.stream is not None:
            run.stream.close()  # (kept: its counters, e.g. collect_seconds, stay readable)


def run_collect(run: Run, stage: Stage, bar: ProgressBar) -> None:
    """A stage that only collects (into the replay) until its env-step budget is spent."""
    collection = make_collection(run, stage, stage_data(run, stage))  # (each step ticks the clock)
    collection.on_step.append(bar.refresh)
    run.stream = CollectStream(collection, run.progress, stage_budget(run, stage))
    run.stream.run()


def run_gradient(run: Run, stage: Stage, bar: ProgressBar) -> None:
    """``Trainer.fit`` over replay batches or on-policy rollouts."""
    from wmlab.tracking import MlflowEnvStepLogger

    spec = stage_data(run, stage)
    budget = stage_budget(run, stage)
    callbacks: list[Callback] = [Ticks(run, stage, bar)]
    if spec.on_policy:
        collection = make_collection(run, stage, spec)
        run.stream = RolloutStream(collection=collection, progress=run.progress, stage_env_steps=budget,
                                   action_repeat=run.specs.action_repeat)
        callbacks.append(FillBatch(run))  # after Ticks: its checkpoint comes before the filling
    else:
        collection = None if stage.collects == "none" else make_collection(run, stage, spec)
        run.stream = ReplayStream(collection=collection, replay=run.replay, spec=spec, progress=run.progress,
                                  stage=stage, stage_env_steps=budget, action_repeat=run.specs.action_repeat,
                                  transform=run.method.replay_transform())
        callbacks.append(FillBatch(run))
    if collection is not None:
        collection.on_step.append(bar.refresh)
    if run.optimizer_states:
        callbacks.append(RestoreOptimizers(run.optimizer_states))
    logger = MlflowEnvStepLogger(run.tracker, step_fn=lambda: run.progress.env_steps)
    trainer = make_trainer(run.cfg, callbacks, logger)
    run.trainer = trainer
    try:
        # (a generator of its own: the loader's seed draw leaves the global RNG alone, so a
        # stage started by a resume consumes the same random numbers as one that went on)
        loader = DataLoader(run.stream, batch_size=None, collate_fn=_as_is, generator=torch.Generator())
        fit_interruptible(trainer, run.method, loader, run.stop)
        run.optimizer_states = current_optimizer_states(run, trainer)
    finally:
        run.trainer = None
    del trainer
    release_cycles()  # not on an interrupt: the process is on its way out (cli.main)


def release_cycles() -> None:
    """Free the Trainers no longer in use (the method stays attached to the last one until
    the next fit). Lightning's Trainer, its loops and the optimizers it wrapped refer to each
    other, so only Python's cyclic collector frees them, and its full pass is rare in a
    process of a million objects: until then the optimizers' moments stay allocated (Dreamer
    from pixels: about 48 MiB per Trainer, measured with ``benchmarks/reuse_memory_rss.py``)."""
    gc.collect()


def run_search(run: Run, stage: Stage, bar: ProgressBar) -> None:
    """Generations of ask -> score (in the real env, or by the method) -> tell."""
    search, p = stage.search, run.progress
    run.stream = None
    while p.stage_generations < search.generations:
        candidates = run.method.ask()
        if search.in_env:
            fitness = torch.tensor([score_in_env(run, c, search.episodes) for c in candidates])
            run.stop.check()
        else:
            fitness = torch.as_tensor(run.method.score(candidates), dtype=torch.float32).reshape(-1)
        extra = run.method.tell(fitness) or {}
        p.generations += 1
        p.stage_generations += 1
        metrics = {"search/best_fitness": float(fitness.max()), "search/mean_fitness": float(fitness.mean()),
                   "search/std_fitness": float(fitness.std()) if fitness.numel() > 1 else 0.0,
                   "search/generation": p.generations}
        metrics |= {f"search/{k}": float(v) for k, v in extra.items()}
        run.tracker.log_metrics(metrics, step=p.env_steps)
        bar.refresh()
        run.clock.tick()


def score_in_env(run: Run, policy, episodes: int) -> float:
    """Mean return of ``policy`` over ``episodes`` episodes in the training envs, ``run.envs``
    at a time; their env steps count like any others."""
    from wmlab.data import num_envs

    ready_policy(run, policy)
    n, returns = num_envs(run.env), []
    while len(returns) < episodes:
        rets, lengths = first_episodes(run.env, policy, max_steps=run.specs.episode_policy_steps, n=n)
        take = min(n, episodes - len(returns))
        returns.extend(rets[:take].tolist())
        steps = int(lengths[:take].sum())
        run.progress.policy_steps += steps
        run.progress.env_steps += steps * run.specs.action_repeat
        run.progress.stage_env_steps += steps * run.specs.action_repeat
        run.progress.episodes += take
        run.stop.check()
    return float(sum(returns) / len(returns))


def first_episodes(env, policy, *, max_steps: int, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Returns and lengths ``[n]`` of one episode in each of the ``n`` envs, run together."""
    from wmlab import keys

    td = env.reset()
    total, lengths = torch.zeros(n), torch.zeros(n, dtype=torch.long)
    alive = torch.ones(n, dtype=torch.bool)
    for _ in range(max_steps):
        td, nxt = env.step_and_maybe_reset(policy(td))
        total += td.get(keys.REWARD).reshape(n, -1).sum(-1).cpu() * alive
        lengths += alive
        alive &= ~td.get(keys.DONE).reshape(n, -1)[:, 0].cpu()
        if not alive.any():
            break
        td = nxt
    return total, lengths


def _as_is(batch):
    """The streams yield finished TensorDict batches: no collation."""
    return batch


def fit_interruptible(trainer: L.Trainer, module, loader, stop: StopRequest | None = None) -> None:
    """``trainer.fit``, turning Lightning's exit on Ctrl-C (or SIGTERM) back into a
    KeyboardInterrupt; Ctrl-C is then handled as before the fit (Lightning ignores it while
    it shuts down)."""
    try:
        trainer.fit(module, train_dataloaders=loader)
    except SystemExit:
        if trainer.interrupted:
            raise KeyboardInterrupt from None
        raise
    finally:
        installed = stop is not None and stop.installed
        signal.signal(signal.SIGINT, stop.handle if installed else signal.default_int_handler)


def on_episode(run: Run, ret: float, length: int) -> None:
    """A finished training episode: kept until the collection step ends (several envs may end
    episodes at the same env step; see :func:`log_episodes`)."""
    run.last_return = ret
    step = run.progress.env_steps
    if run.ended and run.ended[0][0] != step:
        log_episodes(run)
    run.ended.append((step, ret, length))


def log_episodes(run: Run) -> None:
    """Log the episodes that ended at one env step as one value per metric at that step: the
    mean return and length (env steps) over them, and how many ended."""
    if not run.ended:
        return
    step = run.ended[0][0]
    rets = [r for _, r, _ in run.ended]
    lengths = [n for _, _, n in run.ended]
    metrics = {"collect/episode_return": sum(rets) / len(rets),
               "collect/episode_length": sum(lengths) / len(lengths) * run.specs.action_repeat}
    if len(rets) > 1 or num_envs(run.env) > 1:
        metrics["collect/episodes_ended"] = len(rets)
    run.ended.clear()
    run.tracker.log_metrics(metrics, step=step)


def fresh_eval(run: Run) -> bool:
    """An evaluation ran at this env step and nothing changed the policy since."""
    p = run.progress
    return run.last_eval_step == p.env_steps and run.last_eval_updates == (p.updates, p.generations)


def train(run: Run, resume: tuple[Path, dict] | None = None) -> dict[str, Any]:
    """Run every remaining stage, then the final evaluation and checkpoint."""
    cfg = run.cfg
    run.method.progress = run.progress
    probe = make_trainer(cfg, [], False)
    capacity = run.data_spec.capacity or cfg.replay.capacity
    run.replay = make_replay(run.data_spec, capacity, replay_device(cfg, probe), envs=num_envs(run.env))
    if resume is not None:
        restore(run, *resume)
    stages = run.method.stages()
    run.clock = Clock(run)
    try:
        if run.eval_pending and process_rank() == 0:  # interrupted at this step: take it now
            evaluate_now(run)
        return run_stages(run, stages)
    except KeyboardInterrupt:
        if process_rank() == 0 and run.stop.graceful:
            run.stopped_checkpoint = save_checkpoint(run, None)
        raise


def run_stages(run: Run, stages: list[Stage]) -> dict[str, Any]:
    cfg = run.cfg
    while True:  # the last stage stays current, so a finished run can be resumed for longer
        stage = stages[run.progress.stage_index]
        run.progress.stage = stage.name
        run_stage(run, stage)
        if run.progress.stage_index + 1 >= len(stages):
            break
        # a stage that took no eval at its last env step gets one at its end (collect-only
        # and search stages too)
        if (process_rank() == 0 and cfg.eval.every > 0 and run.last_eval_step != run.progress.env_steps):
            evaluate_now(run)
        run.progress.stage_index += 1
        run.progress.stage_env_steps = 0
        run.progress.stage_updates = 0
        run.progress.stage_generations = 0
        run.progress.stage_refill_steps = 0
        run.progress.stage = stages[run.progress.stage_index].name
        if process_rank() == 0 and cfg.checkpoint.every > 0:  # a resume starts the next stage
            save_checkpoint(run, None)
    summary = {"env_steps": run.progress.env_steps, "updates": run.progress.updates,
               "episodes": run.progress.episodes}
    if process_rank() > 0:  # rank 0 evaluates, checkpoints and logs the model
        return summary
    if cfg.eval.final:
        summary["eval_return"] = run.last_eval if fresh_eval(run) else evaluate_now(run)
    final = save_checkpoint(run, None)
    run.tracker.log_artifact(final / checkpoint.STATE, "model")
    run.tracker.flush()
    summary["checkpoint"] = str(final)
    return summary
