"""Evaluation speed with one eval env against ``--envs`` eval envs side by side
(``eval.envs``), for one method's deterministic policy, measured in the same run.

Builds the method as ``wmlab fit`` would (untrained weights: the cost of acting does not
depend on them), then evaluates ``--episodes`` episodes with ``eval.envs=1`` and with
``eval.envs=K``, each ``--repeats`` times, and prints policy steps/s and episodes/s of both
and their ratio. Episodes of an untrained policy mostly run to the time limit, so both
settings step about the same number of policy steps.

Usage:
    python benchmarks/eval_throughput.py                                  # i2a on sokoban:7x7-2
    python benchmarks/eval_throughput.py --method tdmpc --env cartpole-swingup --preset debug --envs 8
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("MUJOCO_GL", "egl")


def parse() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--method", default="i2a")
    ap.add_argument("--env", default="sokoban:7x7-2")
    ap.add_argument("--preset", default="cpu")
    ap.add_argument("--envs", type=int, default=16, help="eval envs side by side (K)")
    ap.add_argument("--episodes", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("overrides", nargs="*", help="config overrides")
    return ap.parse_args()


def main() -> None:
    import torch

    from wmlab import loop
    from wmlab import registry
    from wmlab.config import compose
    from wmlab.evaluation import evaluate, seeded

    args = parse()
    torch.set_num_threads(args.threads)
    cls, _ = registry.load_method(args.method)
    figures = {}
    for k in (1, args.envs):
        cfg = compose(args.method, cls, args.env, presets=[args.preset],
                      overrides=[*args.overrides, f"eval.envs={k}", f"run.threads={args.threads}"])
        run = loop.build(cfg, args.method)
        policy = run.method.make_policy(explore=False)
        loop.ready_policy(run, policy)
        more = loop.more_eval_envs(run)
        best = None
        for _ in range(args.repeats):
            start = time.perf_counter()
            result = seeded(lambda: evaluate(run.eval_env, policy, episodes=args.episodes,
                                             max_steps=run.specs.episode_policy_steps, seed=1,
                                             metrics=loop.eval_metrics(run), more_envs=more), 1)
            seconds = time.perf_counter() - start
            best = seconds if best is None else min(best, seconds)
        figures[k] = (sum(result.lengths) / best, args.episodes / best)
        print(f"eval.envs={k}: {figures[k][0]:.0f} policy steps/s, {figures[k][1]:.2f} episodes/s "
              f"({args.episodes} episodes, best of {args.repeats}: {best:.1f} s)", flush=True)
    ratio = figures[args.envs][0] / figures[1][0]
    print(f"{args.method} on {args.env}, {args.threads} torch thread(s): eval.envs={args.envs} steps "
          f"{ratio:.2f}x as many policy steps/s as eval.envs=1")


if __name__ == "__main__":
    main()
