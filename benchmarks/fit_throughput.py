"""Throughput of `wmlab fit` for one method, with baselines measured in the same run.

Prints, for the method at its paper settings (or a preset):
  * env steps/s of the whole `wmlab fit` loop, and as a ratio of the raw env's
    random-action speed (the ceiling set by the simulator);
  * updates/s of the whole loop, and as a ratio of the same updates run by Lightning
    on a filled replay with no env stepping (the ceiling set by the maths);
  * planning latency: ms per call of the exploring policy at batch 1, at the full
    planning horizon;
  * peak memory: resident set size of the process and, on a GPU, peak allocated.

Usage (defaults: tdmpc on cheetah-run from states, 3000 env steps after prefill):
    python benchmarks/fit_throughput.py
    python benchmarks/fit_throughput.py --method tdmpc --env walker-walk --steps 5000
    python benchmarks/fit_throughput.py --preset debug          # a quick check
    python benchmarks/fit_throughput.py run.accelerator=gpu      # any config override
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time

os.environ.setdefault("MUJOCO_GL", "egl")


def parse() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--method", default="tdmpc")
    ap.add_argument("--env", default="cheetah-run")
    ap.add_argument("--preset", action="append", default=[])
    ap.add_argument("--steps", type=int, default=3000, help="env steps measured after prefill")
    ap.add_argument("--prefill", type=int, default=1000, help="env steps of random prefill")
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
    policy = run.method.make_policy(explore=True)
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


def timed_fit(run) -> tuple[float, int, int]:
    """Run the real loop; returns (seconds, env steps, updates) counted from the first update."""
    from wmlab import loop

    marks = {}

    def mark(td) -> None:
        p = run.progress
        if "start" not in marks and p.updates > 0:
            marks["start"] = (time.perf_counter(), p.env_steps, p.updates)

    run.step_listeners.append(mark)
    loop.train(run)
    t0, s0, u0 = marks["start"]
    return time.perf_counter() - t0, run.progress.env_steps - s0, run.progress.updates - u0


def update_only_speed(run, updates: int) -> float:
    """Updates/s through Lightning on the filled replay with no env stepping."""
    from torch.utils.data import DataLoader

    from wmlab import loop
    from wmlab.api import Stage
    from wmlab.data import ReplayStream

    stage = Stage(name="bench", env_steps=0, updates=updates)
    run.progress.stage_updates = 0
    stream = ReplayStream(env=run.env, method=run.method, spec=run.data_spec, replay=run.replay,
                          progress=run.progress, stage=stage, stage_env_steps=0,
                          action_repeat=run.specs.action_repeat)
    trainer = loop.make_trainer(run.cfg, [loop.Counters(run, stage)], False)
    start = time.perf_counter()
    trainer.fit(run.method, DataLoader(stream, batch_size=None, collate_fn=loop._as_is))
    return updates / (time.perf_counter() - start)


def main() -> int:
    import torch

    from wmlab import loop
    from wmlab.tracking import Tracker

    args = parse()
    loop.quiet_libraries()
    probe_cls, _, probe = compose_cfg(args, [])
    repeat = probe.env.action_repeat
    total = args.prefill + args.steps
    extra = [f"run.steps={total}", "eval.every=0", "eval.final=false", "checkpoint.every=0",
             "checkpoint.replay=false", f"tracking.uri=sqlite:///{tempfile.mkdtemp()}/bench.db"]
    # prefill is the method's; express it through the config field the method uses, if any
    for field in ("seed_steps", "prefill_steps"):
        if field in probe.method:
            value = args.prefill // repeat if field == "seed_steps" else args.prefill
            extra.append(f"method.{field}={value}")
    cls, plugin, cfg = compose_cfg(args, extra)
    run = loop.build(cfg, args.method, method_cls=cls, plugin=plugin)
    print(f"wmlab fit throughput: {args.method} on {args.env} ({cfg.env.obs}), "
          f"device {run.cfg.run.accelerator}, torch threads {torch.get_num_threads()}, "
          f"{total} env steps ({args.prefill} prefill)")
    raw = raw_env_speed(run)
    with Tracker.start(cfg, method=args.method, env=args.env, seed=cfg.run.seed,
                       plugin_dist=plugin.dist, plugin_version=plugin.version) as tracker:
        run.tracker = tracker
        run.ckpt_dir = __import__("pathlib").Path(tempfile.mkdtemp())
        seconds, steps, updates = timed_fit(run)
        run.method.to(loop.replay_device(cfg, loop.make_trainer(cfg, [], False)))
        latency = planning_latency(run)
        ceiling = update_only_speed(run, max(20, min(200, updates)))
    sps, ups = steps / seconds, updates / seconds
    print(f"env steps/s      {sps:10.1f}   ({sps / raw:.3f} x raw env with random actions: {raw:.0f}/s)")
    print(f"updates/s        {ups:10.2f}   ({ups / ceiling:.3f} x update-only loop: {ceiling:.2f}/s)")
    print(f"planning latency {latency:10.2f} ms per policy call (batch 1)")
    print(peak_memory())
    return 0


if __name__ == "__main__":
    sys.exit(main())
