"""World Models at the paper's size: the CarRacing and Doom experiments, each result printed
beside the paper's figure.

    python benchmarks/worldmodels_repro.py --experiment carracing      # V + M, in the env
    python benchmarks/worldmodels_repro.py --experiment carracing-v    # V only (no h)
    python benchmarks/worldmodels_repro.py --experiment doom           # in the dream, tau 1.15
    python benchmarks/worldmodels_repro.py --experiment doom --dry-run # the command only

Each runs one ``wmlab fit`` with the experiment's preset (the paper's sizes and budgets:
days of compute; a GPU for V and M, many CPU cores for the CMA-ES rollouts), then
``wmlab eval`` of the final controller over the paper's 100 trials, and prints the mean
and standard deviation of the return beside the paper's. Extra ``key=value`` arguments go
to ``wmlab fit`` (``run.seed=2``, ``run.envs=16``).

Paper figures (Ha & Schmidhuber 2018, Tables 1 and 2), return over 100 random trials:

* CarRacing (v0 in the paper; wmlab runs gymnasium's CarRacing-v3, whose tracks, lap
  completion and termination differ): V + M 906 +- 21; V only 632 +- 251.
* DoomTakeCover, survival time in frames: trained in the dream at tau 1.15, 1092 +- 556
  in the real game (tau 1.00: 868 +- 511; random policy 210 +- 108).
"""

from __future__ import annotations

import argparse
import re
import shlex
import sys

EXPERIMENTS = {
    "carracing": {"env": "gym:CarRacing-v3", "preset": "carracing", "overrides": [],
                  "paper": "906 +- 21 (V + M, 100 trials)"},
    "carracing-v": {"env": "gym:CarRacing-v3", "preset": "carracing",
                    "overrides": ["method.controller_input=z"],
                    "paper": "632 +- 251 (V only, 100 trials)"},
    "doom": {"env": "doom:take-cover", "preset": "doom", "overrides": [],
             "paper": "1092 +- 556 frames (dream, tau 1.15, 100 trials; random 210 +- 108)"},
}


def commands(name: str, extra: list[str]) -> tuple[list[str], list[str]]:
    e = EXPERIMENTS[name]
    fit = ["fit", "--method", "worldmodels", "--env", e["env"], "--preset", e["preset"],
           *e["overrides"], *extra]
    return fit, ["eval", "--episodes", "100"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--experiment", choices=sorted(EXPERIMENTS), required=True)
    parser.add_argument("--dry-run", action="store_true", help="print the commands only")
    args, extra = parser.parse_known_args(argv)
    fit, evaluate = commands(args.experiment, extra)
    paper = EXPERIMENTS[args.experiment]["paper"]
    if args.dry_run:
        print("wmlab " + shlex.join(fit))
        print("wmlab " + shlex.join(evaluate) + " --checkpoint <the run's id>")
        print(f"paper: {paper}")
        return 0
    import mlflow

    from wmlab.cli import main as wmlab
    from wmlab.tracking import tracking_uri

    if wmlab(fit) != 0:
        return 1
    client = mlflow.MlflowClient(tracking_uri(None))
    exp = client.get_experiment_by_name("wmlab")
    run = client.search_runs([exp.experiment_id], order_by=["attributes.start_time DESC"],
                             max_results=1)[0]
    from contextlib import redirect_stdout
    from io import StringIO

    out = StringIO()
    with redirect_stdout(out):
        code = wmlab([*evaluate, "--checkpoint", run.info.run_id])
    print(out.getvalue(), end="")
    if code != 0:
        return code
    found = re.search(r"(-?[\d.]+) \+- ([\d.]+)", out.getvalue())
    result = f"{found.group(1)} +- {found.group(2)}" if found else "see above"
    print(f"{args.experiment}: wmlab {result} over 100 trials | paper {paper}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
