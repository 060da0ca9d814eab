"""Throughput of `wmlab fit` for one method, with baselines measured in the same run.

Prints, for the method at its paper settings (or a preset):
  * env steps/s of the whole `wmlab fit` loop, and as a ratio of the raw env's
    random-action speed (the ceiling set by the simulator);
  * updates/s of the whole loop, and as a ratio of the same updates run by Lightning
    on a filled replay with no env stepping (the ceiling set by the maths);
  * planning latency: ms per call of the exploring policy at batch 1, at the full
    planning horizon;
  * peak memory: resident set size of the process and, on a GPU, peak allocated;
  * with ``--compile MODE``: the update-only speed and the planning latency again after
    ``run.compile=MODE`` compiles the same model in place (same weights, same replay), the
    ratios to eager, and how long the first, compiling calls took;
  * with ``--precision MODE``: the update-only speed and the planning latency again with
    ``run.precision=MODE`` (e.g. ``bf16-mixed``; same weights, same replay, measured before
    any compiling), and the ratios to the run's own precision.

Usage (defaults: tdmpc on cheetah-run from states, 3000 env steps after prefill):
    python benchmarks/fit_throughput.py
    python benchmarks/fit_throughput.py --method tdmpc --env walker-walk --steps 5000
    python benchmarks/fit_throughput.py --preset debug          # a quick check
    python benchmarks/fit_throughput.py run.accelerator=gpu      # any config override
    python benchmarks/fit_throughput.py --compile default        # eager against compiled
    python benchmarks/fit_throughput.py --precision bf16-mixed   # float32 against bf16 autocast
"""

from __future__ import annotations

import argparse
import contextlib
import os
import pathlib
import resource
import sys
import tempfile
import time
import traceback
from typing import NamedTuple

os.environ.setdefault("MUJOCO_GL", "egl")


def parse() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--method", default="tdmpc")
    ap.add_argument("--env", default="cheetah-run")
    ap.add_argument("--preset", action="append", default=[])
    ap.add_argument("--steps", type=int, default=3000, help="env steps measured after prefill")
    ap.add_argument("--prefill", type=int, default=1000, help="env steps of random prefill")
    ap.add_argument("--compile", default="off", metavar="MODE",
                    help="also measure the update-only loop and the planning latency with "
                         "run.compile=MODE (default, reduce-overhead, max-autotune)")
    ap.add_argument("--precision", default=None, metavar="MODE",
                    help="also measure the update-only loop and the planning latency with "
                         "run.precision=MODE (bf16-mixed, 16-mixed)")
    ap.add_argument("overrides", nargs="*")
    return ap.parse_args()


def compose_cfg(args, extra: list[str]):
    from wmlab import registry
    from wmlab.config import compose

    cls, plugin = registry.load_method(args.method)
    return cls, plugin, compose(args.method, cls, args.env, presets=args.preset,
                                overrides=[*args.overrides, *extra])


def raw_env_speed(run, seconds: float = 3.0) -> float:
    """Policy steps/s of the env alone with random actions, as env steps/s."""
    env = run.env
    td = env.reset()
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        td = env.step(td.set("action", env.action_spec.rand()))["next"]
        if td["done"].any():
            td = env.reset()
        n += 1
    return n * run.specs.action_repeat / (time.perf_counter() - start)


def planning_latency(run, calls: int = 30) -> float:
    """ms per exploring-policy call at batch 1 once every schedule has reached its end."""
    from wmlab.loop import ready_policy

    policy = ready_policy(run, run.method.make_policy(explore=True))
    run.method.progress.env_steps = 10**9
    td = run.env.reset()
    policy(td.clone())  # warm-up
    start = time.perf_counter()
    for _ in range(calls):
        policy(td.clone())
    run.method.progress.env_steps = 0
    return (time.perf_counter() - start) / calls * 1000


def peak_memory() -> str:
    import torch

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB -> MiB on Linux
    out = f"peak RSS {rss:.0f} MiB"
    if torch.cuda.is_available():
        out += f", peak GPU allocated {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB"
    return out


class Window(NamedTuple):
    """What happened between two env steps of the real loop."""

    seconds: float
    env_steps: int
    updates: int
    collect_seconds: float
    """Of ``seconds``, the time spent inside the collector (policy and env step)."""


def timed_fit(run, warmup: int = 1, updates: int | None = None) -> Window:
    """Run the real loop (single-stage methods); the window opens at the first env step
    after ``warmup`` updates and closes at the first env step after ``warmup + updates``
    updates (``None``: when the loop returns, final checkpoint included)."""
    from wmlab import loop

    marks = {}

    def now():
        p = run.progress
        return (time.perf_counter(), p.env_steps, p.updates, run.stream.collect_seconds)

    def mark(td) -> None:
        p = run.progress
        if "start" not in marks and p.updates >= warmup:
            marks["start"] = now()
        if "end" not in marks and updates is not None and p.updates >= warmup + updates:
            marks["end"] = now()

    run.step_listeners.append(mark)
    loop.train(run)
    if "end" not in marks:
        if updates is not None:
            raise RuntimeError(f"the run ended after {run.progress.updates} updates, "
                               f"before {warmup} + {updates}: raise run.steps")
        marks["end"] = now()
    (t0, s0, u0, c0), (t1, s1, u1, c1) = marks["start"], marks["end"]
    return Window(t1 - t0, s1 - s0, u1 - u0, c1 - c0)


def prefill_overrides(method_cfg, prefill: int, repeat: int) -> list[str]:
    """``method.<field>=...`` putting ``prefill`` env steps of random actions into the
    config field the method uses (if any): ``prefill``/``prefill_steps`` count env steps,
    ``seed_steps`` policy steps."""
    out = []
    for field in ("seed_steps", "prefill_steps", "prefill"):
        if field in method_cfg:
            value = prefill // repeat if field == "seed_steps" else prefill
            out.append(f"method.{field}={value}")
    return out


def bench_overrides(total_steps: int) -> list[str]:
    """A run of ``total_steps`` env steps with no evaluation, no periodic checkpoint and a
    throwaway MLflow store."""
    return [f"run.steps={total_steps}", "eval.every=0", "eval.final=false", "checkpoint.every=0",
            "checkpoint.replay=false", f"tracking.uri=sqlite:///{tempfile.mkdtemp()}/bench.db"]


@contextlib.contextmanager
def tracked(run, plugin):
    """The run with a tracker and a throwaway checkpoint folder, as ``wmlab fit`` has them."""
    from wmlab.tracking import Tracker

    cfg = run.cfg
    with Tracker.start(cfg, method=run.method_name, env=run.env_name, seed=cfg.run.seed,
                       plugin_dist=plugin.dist, plugin_version=plugin.version) as tracker:
        run.tracker = tracker
        run.ckpt_dir = pathlib.Path(tempfile.mkdtemp())
        yield run


def update_only_speed(run, updates: int) -> float:
    """Updates/s through Lightning on the filled replay with no env stepping."""
    from torch.utils.data import DataLoader

    from wmlab import loop
    from wmlab.api import Stage
    from wmlab.data import ReplayStream

    stage = Stage(name="bench", env_steps=0, updates=updates)
    run.progress.stage_updates = 0
    stream = ReplayStream(collection=None, replay=run.replay, spec=run.data_spec, progress=run.progress,
                          stage=stage, stage_env_steps=0, action_repeat=run.specs.action_repeat)
    run.stream = stream
    bar = loop.ProgressBar(run, stage, updates)
    trainer = loop.make_trainer(run.cfg, [loop.Ticks(run, stage, bar), loop.FillBatch(run)], False)
    start = time.perf_counter()
    trainer.fit(run.method, DataLoader(stream, batch_size=None, collate_fn=loop._as_is))
    speed = updates / (time.perf_counter() - start)
    del trainer
    loop.release_cycles()  # this window's Trainer and optimizers, before the next window's
    return speed


def compiled_speeds(run, mode: str, updates: int) -> tuple[float, float, float]:
    """Compile the run's model in place (``run.compile=mode``), warm it up, and return the
    seconds the warm-up (compiling) calls took, the update-only speed and the planning
    latency of the compiled model."""
    from wmlab import loop

    loop.compile_method(run.method, mode)
    start = time.perf_counter()
    update_only_speed(run, 3)
    planning_latency(run, calls=2)
    warm = time.perf_counter() - start
    return warm, update_only_speed(run, updates), planning_latency(run)


def check_precision(mode: str) -> None:
    from wmlab.config import PRECISIONS
    from wmlab.errors import ConfigError

    if mode not in PRECISIONS:
        raise ConfigError(f"--precision {mode!r} is not valid; valid: {', '.join(PRECISIONS)}")


def precision_speeds(run, mode: str, updates: int) -> tuple[float, float]:
    """The update-only speed and the planning latency of the same model and replay with
    ``run.precision=mode`` (Lightning's autocast in the updates, the core's around acting;
    ``main`` has checked ``mode``)."""
    from omegaconf import OmegaConf

    own = run.cfg
    run.cfg = OmegaConf.merge(own, {"run": {"precision": mode}})
    try:
        update_only_speed(run, 3)  # (warm-up)
        return update_only_speed(run, updates), planning_latency(run)
    finally:
        run.cfg = own


@contextlib.contextmanager
def reported(what: str):
    """Run one optional measurement; if it fails, print its traceback and one line saying
    so, and go on to the next."""
    try:
        yield
    except Exception as e:  # noqa: BLE001 (a benchmark reports what failed and goes on)
        traceback.print_exc()
        first = (str(e).strip().splitlines() or [""])[0]
        print(f"{what}: failed ({type(e).__name__}: {first}); the figures above stand", flush=True)


def main() -> int:
    import torch

    from wmlab import loop
    from wmlab.errors import ConfigError

    args = parse()
    try:  # bad --compile/--precision: one line now, not after the measured run
        loop.check_compile(args.compile)
        if args.precision:
            check_precision(args.precision)
    except ConfigError as e:
        print(f"fit_throughput: error: {e}", file=sys.stderr)
        return 2
    loop.quiet_libraries()
    probe_cls, _, probe = compose_cfg(args, [])
    repeat = probe.env.action_repeat
    total = args.prefill + args.steps
    extra = bench_overrides(total) + prefill_overrides(probe.method, args.prefill, repeat)
    cls, plugin, cfg = compose_cfg(args, extra)
    run = loop.build(cfg, args.method, method_cls=cls, plugin=plugin)
    print(f"wmlab fit throughput: {args.method} on {args.env} ({cfg.env.obs}), "
          f"device {run.cfg.run.accelerator}, torch threads {torch.get_num_threads()}, "
          f"{total} env steps ({args.prefill} prefill)")
    raw = raw_env_speed(run)
    with tracked(run, plugin):
        seconds, steps, updates, _ = timed_fit(run)
        run.method.to(loop.replay_device(cfg, loop.make_trainer(cfg, [], False)))
        latency = planning_latency(run)
        measured = max(20, min(200, updates))  # updates of each update-only measurement
        ceiling = update_only_speed(run, measured)
        sps, ups = steps / seconds, updates / seconds
        print(f"env steps/s      {sps:10.1f}   ({sps / raw:.3f} x raw env with random actions: {raw:.0f}/s)")
        print(f"updates/s        {ups:10.2f}   ({ups / ceiling:.3f} x update-only loop: {ceiling:.2f}/s)")
        print(f"planning latency {latency:10.2f} ms per policy call (batch 1)", flush=True)
        # each further figure is printed once measured; one that fails leaves the others
        if args.precision:
            with reported(f"run.precision={args.precision}"):
                p_ceiling, p_latency = precision_speeds(run, args.precision, measured)
                print(f"run.precision={args.precision} (against {cfg.run.precision}):")
                print(f"  update-only loop {p_ceiling:10.3g} updates/s  ({p_ceiling / ceiling:.2f} x: "
                      f"{ceiling:.3g}/s)")
                print(f"  planning latency {p_latency:10.2f} ms per call  ({latency / p_latency:.2f} x as "
                      f"fast: {latency:.2f} ms)", flush=True)
        if args.compile != "off":
            with reported(f"run.compile={args.compile}"):
                warm, c_ceiling, c_latency = compiled_speeds(run, args.compile, measured)
                print(f"run.compile={args.compile}: first calls took {warm:.1f} s "
                      f"({loop.COMPILE_PROGRESS.summary()}); then")
                print(f"  update-only loop {c_ceiling:10.3g} updates/s  ({c_ceiling / ceiling:.2f} x eager: "
                      f"{ceiling:.3g}/s)")
                print(f"  planning latency {c_latency:10.2f} ms per call  ({latency / c_latency:.2f} x as "
                      f"fast as eager: {latency:.2f} ms)", flush=True)
    print(peak_memory())
    return 0


if __name__ == "__main__":
    sys.exit(main())
