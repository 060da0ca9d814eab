"""Collection speed with ``run.envs = 1`` against ``run.envs = N``, in env steps per second.

Steps the core's :class:`wmlab.data.Collection` (the collector, storing every row in the
replay) for a fixed time, once with uniformly random actions (the env's cost) and once with
a method's exploring policy (batched over the envs), for a state env and a pixel env.
Ratios are against ``run.envs = 1`` measured in the same run.

Usage:
    python benchmarks/envs_throughput.py                       # cheetah-run, 1 vs 8 envs
    python benchmarks/envs_throughput.py --envs 1 4 8 --seconds 20 --method dreamer
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("MUJOCO_GL", "egl")


def parse() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--env", default="cheetah-run")
    ap.add_argument("--method", default="tdmpc", help="whose exploring policy acts")
    ap.add_argument("--preset", default="debug", help="the method's preset (network sizes)")
    ap.add_argument("--envs", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--obs", nargs="+", default=["state", "pixels"])
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--threads", type=int, default=1)
    return ap.parse_args()


def speed(args, obs: str, envs: int, random: bool) -> float:
    """Env steps/s of the collection after one warm-up step."""
    from wmlab import loop, registry
    from wmlab.api import DataSpec, Progress, Stage
    from wmlab.config import compose
    from wmlab.data import Collection, make_replay, num_envs, stored_keys

    cls, _ = registry.load_method(args.method)
    cfg = compose(args.method, cls, args.env, presets=[args.preset],
                  overrides=[f"env.obs={obs}", f"run.envs={envs}", f"run.threads={args.threads}"])
    run = loop.build(cfg, args.method, method_cls=cls)
    run.progress = Progress()
    run.method.progress = run.progress
    run.replay = make_replay(run.data_spec, 100_000, "cpu", envs=num_envs(run.env))
    stage = Stage(collect="random" if random else "policy")
    policy = loop.stage_policy(run, stage, DataSpec(batch_size=1, prefill_steps=0))
    collection = Collection(env=run.env, policy=policy, progress=run.progress,
                            action_repeat=run.specs.action_repeat, replay=run.replay,
                            row_keys=stored_keys(run.specs))
    collection.step()
    start, steps0 = time.perf_counter(), run.progress.env_steps
    while time.perf_counter() - start < args.seconds:
        collection.step()
    return (run.progress.env_steps - steps0) / (time.perf_counter() - start)


def main() -> int:
    from wmlab import loop

    args = parse()
    loop.quiet_libraries()
    print(f"collection speed on {args.env}, env steps/s ({args.threads} torch thread(s), "
          f"{args.seconds:.0f} s each; policy: {args.method} --preset {args.preset}, exploring)")
    print(f"{'obs':<7} {'actions':<8} " + " ".join(f"{f'envs={n}':>10}" for n in args.envs)
          + f" {'ratio':>7}")
    for obs in args.obs:
        for random in (True, False):
            figures = [speed(args, obs, n, random) for n in args.envs]
            row = " ".join(f"{f:>10.0f}" for f in figures)
            print(f"{obs:<7} {'random' if random else 'policy':<8} {row} {figures[-1] / figures[0]:>7.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
