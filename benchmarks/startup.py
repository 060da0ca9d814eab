"""How long ``wmlab`` takes to answer: ``--help``, ``wmlab list`` and one-line input errors.

Each command runs as its own process (as a user types it), ``--repeat`` times; the table
shows the median and the fastest wall-clock time in seconds. By default the plugin index
(wmlab.plugin_index) is warm, as after any earlier command: one ``wmlab list`` runs first.
``--cold`` gives every run an empty index instead (the first command after installing or
changing a plugin). ``--wmlab`` times another installation (e.g. another checkout's
virtual environment), which makes before/after comparisons:

    python benchmarks/startup.py
    python benchmarks/startup.py --cold --repeat 1
    python benchmarks/startup.py --wmlab /path/to/other/.venv/bin/wmlab
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

COMMANDS = [
    ("help", ["--help"]),
    ("list", ["list"]),
    ("unknown method", ["fit", "--method", "nosuch", "--env", "cheetah-run"]),
    ("unknown env", ["fit", "--method", "tdmpc", "--env", "cheetah-fly"]),
    ("unknown core key", ["fit", "--method", "tdmpc", "--env", "cheetah-run", "run.stepz=3"]),
    ("unknown method key", ["fit", "--method", "tdmpc", "--env", "cheetah-run", "method.horizn=3"]),
    ("bad value", ["fit", "--method", "tdmpc", "--env", "cheetah-run", "method.horizon=abc"]),
    ("unknown preset", ["fit", "--method", "tdmpc", "--env", "cheetah-run", "--preset", "nope"]),
]


def parse() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--wmlab", default=str(Path(sys.executable).with_name("wmlab")),
                    help="the wmlab executable to time (default: this environment's)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--cold", action="store_true", help="an empty plugin index for every run")
    return ap.parse_args()


def timed(exe: str, argv: list[str], env: dict[str, str], cwd: str) -> tuple[float, int]:
    start = time.perf_counter()
    proc = subprocess.run([exe, *argv], env=env, cwd=cwd, capture_output=True, text=True)
    return time.perf_counter() - start, proc.returncode


def main() -> None:
    args = parse()
    base_env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    with tempfile.TemporaryDirectory(prefix="wmlab-startup-") as cwd:
        if not args.cold:
            timed(args.wmlab, ["list"], base_env, cwd)  # the index as any earlier command leaves it
        print(f"{args.wmlab} ({'empty' if args.cold else 'warm'} plugin index, {args.repeat} runs each, "
              f"{os.cpu_count()} CPUs)")
        print(f"{'command':<20} {'exit':>4} {'median s':>9} {'min s':>7}")
        for label, argv in COMMANDS:
            times, code = [], None
            for _ in range(args.repeat):
                env = dict(base_env)
                if args.cold:
                    env["WMLAB_CACHE_DIR"] = tempfile.mkdtemp(prefix="index-", dir=cwd)
                seconds, code = timed(args.wmlab, argv, env, cwd)
                times.append(seconds)
            print(f"{label:<20} {code:>4} {statistics.median(times):>9.2f} {min(times):>7.2f}")


if __name__ == "__main__":
    main()
