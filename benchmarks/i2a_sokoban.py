"""I2A against its two baselines on generated Sokoban rooms, with the same budget and seeds.

The comparison of Weber et al. 2017 (arXiv 1707.06203, Sec. 4.1, Figure 4) at a small scale:
for each seed, ``wmlab fit --method i2a`` with ``method.agent`` set to

* ``i2a``: the standard model-free agent trains for ``--standard`` env steps, collects
  ``--model-data`` env steps for the env model, which trains offline and is frozen; then the
  imagination-augmented agent trains for the rest of the budget;
* ``model_free``: the standard model-free agent, the whole budget;
* ``copy_model``: the I2A architecture with an env model that returns its input (the
  control that shows what the env model brings), the whole budget.

Every agent gets ``--steps`` env steps in all: I2A's budget includes the env steps of its
pretraining and of the env model's data (the paper counts them the same way), and its
evaluations before its own stage are the standard agent's. Prints the solved rate
(``eval/solved_rate``, ``--episodes`` sampled episodes per evaluation) of the three against
env steps, mean ± std over seeds, beside a uniformly random policy's (``--random-episodes``
levels per seed, the evaluation levels first). The paper: I2A 87% on sokoban:10x10-4 after
1e9 steps, the model-free baselines under 60%.

Runs go ``--jobs`` at a time, one torch thread each (see ``variant_runs.py`` for where their
stores and logs are); a finished run is reused, so a table can grow by seeds.

Usage:
    python benchmarks/i2a_sokoban.py                               # sokoban:7x7-2, seeds 1-3
    python benchmarks/i2a_sokoban.py --env sokoban:5x5-1 --steps 300000 --standard 20000 \\
        --model-data 20000 --model-updates 2000 --every 40000
    python benchmarks/i2a_sokoban.py method.lr=3e-4                # any override, every run
"""

from __future__ import annotations

import argparse
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from variant_runs import cell, eval_histories, print_wall_times, random_policy_eval, run_all  # noqa: E402

AGENTS = ("i2a", "model_free", "copy_model")


def parse() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--env", default="sokoban:7x7-2")
    ap.add_argument("--preset", default="cpu", help="i2a preset every run starts from (default cpu)")
    ap.add_argument("--seeds", type=lambda v: [int(x) for x in v.split(",")], default=[1, 2, 3],
                    help="comma-separated run seeds (default 1,2,3)")
    ap.add_argument("--steps", type=int, default=1_000_000, help="env steps of every agent, all stages")
    ap.add_argument("--standard", type=int, default=50_000, help="I2A: env steps of the standard agent")
    ap.add_argument("--model-data", type=int, default=50_000, help="I2A: env steps of env-model data")
    ap.add_argument("--model-updates", type=int, default=3000, help="I2A: env-model updates")
    ap.add_argument("--every", type=int, default=100_000, help="env steps between evaluations")
    ap.add_argument("--episodes", type=int, default=100, help="episodes of every evaluation")
    ap.add_argument("--random-episodes", type=int, default=500,
                    help="episodes of the random policy per seed (its solved rate is noisy)")
    ap.add_argument("--jobs", type=int, default=2, help="runs at a time")
    ap.add_argument("--out", type=pathlib.Path, default=pathlib.Path("benchmark-runs/i2a-sokoban"))
    ap.add_argument("overrides", nargs="*", help="config overrides given to every run")
    args = ap.parse_args()
    if args.standard + args.model_data >= args.steps:
        ap.error(f"--standard + --model-data ({args.standard + args.model_data}) must be below "
                 f"--steps ({args.steps}): I2A's own stage needs env steps too")
    return args


def fit_args(args, agent: str) -> list[str]:
    own = args.steps
    extra = []
    if agent == "i2a":
        own = args.steps - args.standard - args.model_data
        extra = [f"method.standard_steps={args.standard}", f"method.model_data_steps={args.model_data}",
                 f"method.model_updates={args.model_updates}"]
    return ["--method", "i2a", "--env", args.env, "--preset", args.preset, f"method.agent={agent}",
            f"run.steps={own}", f"eval.every={args.every}", f"eval.episodes={args.episodes}",
            *extra, *args.overrides]


def random_solved_rate(args, seed: int) -> float:
    """Solved rate of uniformly random actions on ``--random-episodes`` levels, the first
    ones those a run of ``seed`` evaluates on."""
    from wmlab.evaluation import seeded

    result = seeded(lambda: random_policy_eval("i2a", args.env, args.preset, args.overrides, seed=seed,
                                               episodes=args.random_episodes), seed)
    return result.metrics["solved_rate"]


def main() -> None:
    args = parse()
    args.out.mkdir(parents=True, exist_ok=True)
    jobs = [(a, s) for s in args.seeds for a in AGENTS]
    print(f"{args.env}, preset {args.preset}: {len(jobs)} runs of {args.steps} env steps "
          f"(I2A: {args.standard} standard + {args.model_data} model data + the rest its own), "
          f"{args.jobs} at a time (logs in {args.out}/)", flush=True)
    seconds = run_all(args.out, jobs, lambda variant: fit_args(args, variant), args.jobs)

    random = [random_solved_rate(args, s) for s in args.seeds]
    solved = {job: eval_histories(args.out, *job, ["solved_rate"])["solved_rate"] for job in jobs}
    steps = sorted({t for c in solved.values() for t in c})
    print(f"\n{args.env}: solved rate (mean ± std over {len(args.seeds)} seed(s): "
          f"{' '.join(map(str, args.seeds))}; {args.episodes} sampled episodes per evaluation)")
    print("| env steps | I2A | model-free | copy model |")
    print("|---:|---:|---:|---:|")
    print(f"| random policy ({args.random_episodes} levels per seed) | {cell(random, '.0%')} | "
          f"{cell(random, '.0%')} | {cell(random, '.0%')} |")
    for t in steps:
        row = [str(t)] + [cell([solved[(a, s)][t] for s in args.seeds if t in solved[(a, s)]], ".0%")
                          for a in AGENTS]
        print("| " + " | ".join(row) + " |")
    print_wall_times(seconds, AGENTS, args.seeds)


if __name__ == "__main__":
    main()
