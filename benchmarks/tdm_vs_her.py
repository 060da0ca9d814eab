"""TDM against its DDPG + HER baseline on one goal task, with the same budget and seeds.

The comparison of Pong et al. 2018 (arXiv 1802.09081, Figure 2) at a small scale: for each
seed, ``wmlab fit --method tdm`` and ``wmlab fit --method tdm method.variant=her`` with the
same preset and budget, evaluated every ``--every`` env steps over ``--episodes`` episodes.
Prints the eval final distance to the goal (mean and std over seeds) and the success rate
of both against env steps, beside a uniformly random policy's on the same eval episodes.

Each run logs into its own MLflow store under ``--out`` (``<out>/<variant>-seed<N>/mlflow``;
``MLFLOW_TRACKING_URI=sqlite:///<that folder>/mlflow.db wmlab ui`` shows it), with its
console output in ``<out>/<variant>-seed<N>.log``. Runs go ``--jobs`` at a time, one torch
thread each. A run whose store already holds a finished run is not run again (so a table
can grow by seeds: run ``--seeds 4,5`` with the same ``--out``, then ``--seeds 1,2,3,4,5``).

Usage:
    python benchmarks/tdm_vs_her.py                                  # goal:reacher, seeds 1-3
    python benchmarks/tdm_vs_her.py --seeds 1,2,3,4,5 --steps 20000
    python benchmarks/tdm_vs_her.py --env goal:pusher --preset tdm-goal-pusher-small --steps 60000
    python benchmarks/tdm_vs_her.py method.hidden=300             # any config override, both runs
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from variant_runs import cell, eval_histories, print_wall_times, random_policy_eval, run_all  # noqa: E402

os.environ.setdefault("MUJOCO_GL", "egl")

VARIANTS = ("tdm", "her")


def parse() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--env", default="goal:reacher")
    ap.add_argument("--preset", default="tdm-goal-reacher-small")
    ap.add_argument("--seeds", type=lambda v: [int(x) for x in v.split(",")], default=[1, 2, 3],
                    help="comma-separated run seeds (default 1,2,3)")
    ap.add_argument("--steps", type=int, default=10_000, help="env steps of every run")
    ap.add_argument("--every", type=int, default=1000, help="env steps between evaluations")
    ap.add_argument("--episodes", type=int, default=20, help="episodes of every evaluation")
    ap.add_argument("--jobs", type=int, default=2, help="runs at a time")
    ap.add_argument("--out", type=pathlib.Path, default=pathlib.Path("benchmark-runs/tdm-vs-her"))
    ap.add_argument("overrides", nargs="*", help="config overrides given to every run")
    return ap.parse_args()


def fit_args(args, variant: str) -> list[str]:
    return ["--method", "tdm", "--env", args.env, "--preset", args.preset, f"method.variant={variant}",
            f"run.steps={args.steps}", f"eval.every={args.every}", f"eval.episodes={args.episodes}",
            *args.overrides]


def random_policy(args, seed: int) -> tuple[float, float]:
    """Final distance and success rate of uniformly random actions on the eval episodes a
    run of ``seed`` evaluates on."""
    result = random_policy_eval("tdm", args.env, args.preset, args.overrides, seed=seed, episodes=args.episodes)
    return result.metrics["final_distance"], result.metrics["success_rate"]


def main() -> None:
    args = parse()
    args.out.mkdir(parents=True, exist_ok=True)
    jobs = [(v, s) for s in args.seeds for v in VARIANTS]
    print(f"{args.env}, preset {args.preset}: {len(jobs)} runs of {args.steps} env steps, "
          f"{args.jobs} at a time (logs in {args.out}/)", flush=True)
    seconds = run_all(args.out, jobs, lambda variant: fit_args(args, variant), args.jobs)

    random = [random_policy(args, s) for s in args.seeds]
    data = {job: eval_histories(args.out, *job, ('final_distance', 'success_rate')) for job in jobs}
    steps = sorted({t for c in data.values() for t in c["final_distance"]})
    n = len(args.seeds)
    print(f"\n{args.env}: eval final distance to the goal (mean ± std over {n} seed(s): "
          f"{' '.join(map(str, args.seeds))}; {args.episodes} episodes each) and success rate")
    print("| env steps | TDM distance | TDM success | HER distance | HER success |")
    print("|---:|---:|---:|---:|---:|")
    rd, rs = [r[0] for r in random], [r[1] for r in random]
    print(f"| random policy | {cell(rd, '.3f')} | {cell(rs, '.0%')} | {cell(rd, '.3f')} | {cell(rs, '.0%')} |")
    for t in steps:
        row = [f"{t}"]
        for v in VARIANTS:
            for metric, fmt in (("final_distance", ".3f"), ("success_rate", ".0%")):
                row.append(cell([data[(v, s)][metric][t] for s in args.seeds
                                 if t in data[(v, s)][metric]], fmt))
        print("| " + " | ".join(row) + " |")
    print_wall_times(seconds, VARIANTS, args.seeds)


if __name__ == "__main__":
    main()
