"""Resident memory and update speed over a long update-only run, ``run.reuse_memory`` on and off.

``run.reuse_memory=true`` keeps freed blocks in the process (no mmap for large blocks, no
heap trimming), so the process's resident memory (RSS) stays near its peak. This script
measures whether it stays *at* a level or keeps growing, and what it buys, on the same
method, task and replay: for each setting, in its own process (the allocator setting is
process-wide), it builds the run, fills the replay with ``--prefill`` env steps of random
actions, then runs ``--updates`` updates through Lightning with no env stepping (as
``benchmarks/fit_throughput.py``'s update-only loop) and prints, every ``--every`` updates,
the RSS now, the peak RSS so far, the memory malloc has handed out and not had back ("in
use": the live tensors and objects; RSS above it is freed memory the process keeps) and
the updates/s of that window.

Usage (defaults: dreamer on walker-walk from pixels, its paper batch, 200 updates; one
process at a time, as each holds about 16 GiB):
    python benchmarks/reuse_memory_rss.py
    python benchmarks/reuse_memory_rss.py --settings true --updates 400 --every 20
    python benchmarks/reuse_memory_rss.py --method dreamerv2 method.batch_size=8
Any further argument is a config override for both settings (``run.threads=1`` is the
default here; pass another to change it).

Measured (December 2026, 2-core Intel Xeon, torch 2.13.0+cpu, dreamer on walker-walk from
pixels, batch 50 x 50, ``--settings true``, before the "in use" column existed): RSS 12.39
GiB after the prefill, then 16.05 after 10 updates, 16.64 after 40, 16.91 after 100 and
17.17 after 130-150 (0.08-0.10 updates/s; the run was stopped at 150 to free memory). It
grows in steps and had not levelled off, which is why ``run.reuse_memory`` stays off by
default.

``--settings false --updates 150`` (December 2026, same task and batch, 1 thread, another
benchmark on the other core; 65 minutes):

    updates  RSS GiB  peak GiB  in use GiB  updates/s
         10    13.25     14.77       11.92      0.038
         50    13.59     15.03       12.11      0.040
        100    13.81     15.28       12.34      0.039
        150    13.97     15.48       12.57      0.041

(12.36 GiB after the prefill; the replay's 1M rows of pixels are 11.8 GiB of it.) Without
the setting the memory in use grew too, about 4.3 MiB per update. That was this script's own
doing: every window of ``--every`` updates builds a Lightning Trainer, and each discarded
Trainer with the Adam optimizers it had wrapped (Dreamer's moments, about 48 MiB) sat in
reference cycles until Python's full collection, rare in a process of some 775,000 objects.
A ``gc.collect()`` after 15 updates in windows of 3 gave back the 144 MiB they had added.
The windows now end with that collection (as ``wmlab fit``'s gradient stages do). Since
then (``--settings true`` and ``false`` side by side, one core each, ``--updates 60
replay.capacity=6000``, so the replay is small):

    updates  true: RSS GiB  peak  in use  updates/s  |  false: RSS GiB  peak  in use  updates/s
         10           4.61  4.61    0.49      0.053  |            1.94  3.26    0.49      0.044
         20           4.72  4.72    0.49      0.055  |            1.94  3.41    0.49      0.046
         30           4.85  4.85    0.49      0.058  |            2.00  3.41    0.49      0.046
         40           4.85  4.85    0.49      0.052  |            1.94  3.46    0.49      0.042
         50           4.85  4.85    0.49      0.052  |            2.01  3.46    0.49      0.042
         60           4.90  4.90    0.49      0.052  |            1.94  3.48    0.49      0.046

(0.94-0.97 GiB after the prefill.) The memory in use is flat in both. With the setting the
resident memory still rises in steps (4.61 -> 4.90 GiB over 50 updates, flat from 30 to 50)
and stays 1.4 GiB above the peak without it: glibc's heap, never trimmed, fragments. That is
why ``run.reuse_memory`` stays off by default; it bought 1.19x here (0.054 against 0.045
updates/s on average), two processes side by side.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import pathlib
import resource
import subprocess
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
os.environ.setdefault("MUJOCO_GL", "egl")


def parse() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--method", default="dreamer")
    ap.add_argument("--env", default="walker-walk")
    ap.add_argument("--preset", action="append", default=[])
    ap.add_argument("--prefill", type=int, default=5000, help="env steps of random prefill")
    ap.add_argument("--updates", type=int, default=200)
    ap.add_argument("--every", type=int, default=10, help="updates between two RSS readings")
    ap.add_argument("--settings", default="false,true",
                    help="run.reuse_memory values, run one after the other (default: false,true)")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("overrides", nargs="*")
    return ap.parse_args()


def rss_gib() -> float:
    """Resident set size of this process now, in GiB."""
    pages = int(pathlib.Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**30


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
                 "uordblks", "fordblks", "keepcost")]


def malloc_in_use_gib() -> float:
    """Bytes glibc's malloc has handed out and not had back (heap and mmap'd blocks), in GiB;
    NaN where mallinfo2 is missing (not glibc, or glibc before 2.33)."""
    try:
        fn = ctypes.CDLL(None).mallinfo2
    except (OSError, AttributeError):
        return float("nan")
    fn.restype = _MallInfo2
    info = fn()
    return (info.uordblks + info.hblkhd) / 2**30


def peak_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB on Linux


def child(args) -> int:
    import fit_throughput as ft

    from wmlab import loop

    loop.quiet_libraries()
    _, _, probe = ft.compose_cfg(args, ["run.threads=1"])
    repeat = probe.env.action_repeat
    extra = ["run.threads=1", f"run.reuse_memory={args.child}",
             *ft.bench_overrides(args.prefill + repeat),
             *ft.prefill_overrides(probe.method, args.prefill, repeat)]
    cls, plugin, cfg = ft.compose_cfg(args, extra)
    run = loop.build(cfg, args.method, method_cls=cls, plugin=plugin)
    with ft.tracked(run, plugin):
        ft.timed_fit(run, warmup=0)
        print(f"run.reuse_memory={args.child}: replay filled, {len(run.replay)} items; "
              f"RSS {rss_gib():.2f} GiB", flush=True)
        print(f"{'updates':>8} {'RSS GiB':>8} {'peak GiB':>9} {'in use GiB':>11} {'updates/s':>10}",
              flush=True)
        done = 0
        while done < args.updates:
            n = min(args.every, args.updates - done)
            speed = ft.update_only_speed(run, n)
            done += n
            print(f"{done:8d} {rss_gib():8.2f} {peak_gib():9.2f} {malloc_in_use_gib():11.2f} {speed:10.3f}",
                  flush=True)
    return 0


def main() -> int:
    args = parse()
    if args.child is not None:
        return child(args)
    settings = [s.strip() for s in args.settings.split(",") if s.strip()]
    bad = [s for s in settings if s not in ("true", "false")]
    if bad:
        print(f"reuse_memory_rss.py: --settings {bad[0]!r} is not valid; valid: true, false",
              file=sys.stderr)
        return 2
    print(f"{args.method} on {args.env}, update-only, {args.updates} updates after "
          f"{args.prefill} env steps of prefill; overrides: {' '.join(args.overrides) or '(none)'}",
          flush=True)
    passed = ["--method", args.method, "--env", args.env, "--prefill", str(args.prefill),
              "--updates", str(args.updates), "--every", str(args.every),
              *[f"--preset={p}" for p in args.preset], *args.overrides]
    for setting in settings:
        start = time.perf_counter()
        cmd = [sys.executable, __file__, "--child", setting, *passed]
        code = subprocess.call(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"})
        print(f"run.reuse_memory={setting}: {time.perf_counter() - start:.0f} s, exit {code}", flush=True)
        if code:
            return code
    return 0


if __name__ == "__main__":
    sys.exit(main())
