"""RAC over PPO against plain PPO on gridworld:turf (reversibility-aware RL, Grinsztajn et al.
2021, Sec. 5.3): cells of grass ruined per episode, success rate and return.

For each seed, ``wmlab fit --method reversibility --env gridworld:turf --preset turf`` with
``method.mode=rac`` (random episodes, psi, phi, then PPO with the filter) and with
``method.mode=none`` (PPO alone), both with ``--steps`` env steps of PPO (RAC's random
episodes come on top, ``method.random_steps``). Prints the final evaluation of both (``--episodes``
episodes; mean ± std over seeds) beside a uniformly random policy's.

Each run logs into its own MLflow store under ``--out`` (``<out>/<variant>-seed<N>/mlflow``),
its console output in ``<out>/<variant>-seed<N>.log``; ``--jobs`` runs at a time, one torch
thread each.

Usage:
    python benchmarks/reversibility_turf.py                       # seeds 1-3, 100k PPO steps
    python benchmarks/reversibility_turf.py --seeds 1 --steps 40000 method.random_steps=20000
"""

from __future__ import annotations

import argparse
import pathlib
import sys

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from variant_runs import cell, eval_histories, run_all  # noqa: E402

VARIANTS = {"rac": "method.mode=rac", "ppo": "method.mode=none"}
METRICS = ("irreversible", "success_rate", "episode_return")


def parse() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=lambda v: [int(x) for x in v.split(",")], default=[1, 2, 3])
    ap.add_argument("--steps", type=int, default=100_000, help="env steps of PPO in every run")
    ap.add_argument("--episodes", type=int, default=20, help="episodes of every evaluation")
    ap.add_argument("--jobs", type=int, default=2, help="runs at a time")
    ap.add_argument("--out", type=pathlib.Path, default=pathlib.Path("benchmark-runs/reversibility-turf"))
    ap.add_argument("overrides", nargs="*", help="config overrides given to every run")
    return ap.parse_args()


def fit_args(args, variant: str) -> list[str]:
    return ["--method", "reversibility", "--env", "gridworld:turf", "--preset", "turf", VARIANTS[variant],
            f"run.steps={args.steps}", f"eval.every={args.steps}", f"eval.episodes={args.episodes}",
            *args.overrides]


def final(args, variant: str, seed: int) -> dict[str, float]:
    """The last evaluation's metrics of a finished run."""
    curves = eval_histories(args.out, variant, seed, METRICS)
    return {m: curves[m][max(curves[m])] for m in METRICS}


def main() -> None:
    from wmlab.envs.gridworld import random_policy

    args = parse()
    args.out.mkdir(parents=True, exist_ok=True)
    jobs = [(v, s) for s in args.seeds for v in VARIANTS]
    print(f"gridworld:turf: {len(jobs)} runs of {args.steps} PPO env steps, {args.jobs} at a time "
          f"(logs in {args.out}/)", flush=True)
    seconds = run_all(args.out, jobs, lambda variant: fit_args(args, variant), args.jobs, reuse=False)
    ruined, success, ret = random_policy(1000)
    print(f"\ngridworld:turf after {args.steps} PPO env steps: final eval ({args.episodes} episodes; "
          f"mean ± std over seeds {','.join(map(str, args.seeds))})")
    print("| agent | ruined cells per episode | success rate | return | wall time per run |")
    print("|---|---:|---:|---:|---:|")
    print(f"| uniformly random (1000 episodes) | {ruined:.1f} | {success:.0%} | {ret:.2f} | |")
    for variant, name in (("rac", "RAC + PPO"), ("ppo", "PPO")):
        got = [final(args, variant, s) for s in args.seeds]
        wall = np.mean([seconds[(variant, s)] for s in args.seeds])
        print(f"| {name} | {cell([g['irreversible'] for g in got], '.1f')} | "
              f"{cell([g['success_rate'] for g in got], '.0%')} | "
              f"{cell([g['episode_return'] for g in got], '.2f')} | {wall:.0f} s |")


if __name__ == "__main__":
    main()
