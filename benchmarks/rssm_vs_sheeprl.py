"""Throughput of wmlab's Dreamer and DreamerV2 beside sheeprl's, on the same machine in one run.

For each method (wmlab ``dreamer`` against sheeprl ``dreamer_v1``, ``dreamerv2`` against
``dreamer_v2``) both libraries train on the same dm_control task, one after the other, each
in its own process, with the same torch threads (``OMP_NUM_THREADS`` exported and wmlab's
``run.threads``), observations, action repeat, batch shape, network sizes, random prefill
and replay ratio. The sizes, batch shape and replay ratio are those of the wmlab plugin's
defaults (the papers'); sheeprl gets them as hydra overrides (printed with ``-v``). Printed:

  * **updates/s**: gradient updates per second of training time, in steady state: the first
    ``--warmup`` updates after the prefill are left out and the next ``--updates`` are timed.
    Training time is the loop's wall time minus the time spent acting (policy and env step),
    each library measured by its own timers: wmlab's ``ReplayStream.collect_seconds``,
    sheeprl's ``Time/env_interaction_time`` (as ``Time/sps_env_interaction``). It covers
    sampling the batch, the update and the loop's bookkeeping. sheeprl's own
    ``Time/sps_train`` (sampling and update only) is printed beside it.
  * **env steps/s** of the whole training loop (acting, storing, training, logging) at the
    replay ratio, over the same window: env steps (frames: policy steps x action repeat)
    divided by wall time.
  * **peak memory**: maximum resident set size of each process (``wait4``), and on a GPU
    peak allocated memory.
  * **GFLOP per update** of matrix products (``torch.utils.flop_counter.FlopCounterMode``
    over each library's first update, a warm-up one, forward and backward; not with
    ``--compile``), the GFLOP/s that gives over training time, and this machine's float32
    matrix-product rate at the update's typical size (``sgemm_rate``): the time wmlab's
    products alone would take at that rate bounds the ratio any implementation of the same
    arithmetic could reach against sheeprl's measured update.

How the window is found. wmlab: the script builds the run through wmlab's API
(``benchmarks/fit_throughput.py``), and a step listener marks the time, env steps, updates
and collect time at the first env step after ``warmup`` updates and after ``warmup +
updates``. sheeprl: ``sheeprl.cli.run`` runs in a process of sheeprl's own environment
(the one of ``--sheeprl-python``), unchanged but for a wrapper around ``build_agent`` that
counts parameters; it logs to TensorBoard every ``1 / ratio`` policy steps (one update per
log), and the window runs from the first log with ``warmup`` updates done
(``Params/replay_ratio`` x policy steps) to the first with ``warmup + updates``, timed by the
logs' wall clock. sheeprl's pretraining burst is off (``algo.per_rank_pretrain_steps=0``;
wmlab has none); both fill the replay with ``--prefill`` env steps of random actions first.

Differences that remain (read the numbers with them in mind):
  * sheeprl renders pixels with dm_control's default settings (shadows, 4x multisampling)
    at every simulator frame; wmlab renders once per policy step with shadows,
    reflections and multisampling off. This is in "env steps/s", not in "updates/s".
  * The parameter counts, printed for both, are equal: sheeprl's MLP encoder for state
    vectors has ``mlp_layers`` linear layers, wmlab's ``state_layers`` hidden layers plus an
    output layer, so sheeprl's encoder gets ``state_layers + 1``. sheeprl's DreamerV2 adds a
    weight decay of 1e-6 that wmlab's does not (no measurable cost).
  * DreamerV2's batch is its paper's, 16 x 50 (``--batch 50`` gives 50 x 50 to both).
  * sheeprl stores its replay in memory-mapped files, wmlab in a torchrl
    ``LazyTensorStorage`` in memory; both capacities are the run's length.

Usage (defaults: both methods, walker-walk, pixels, 20 timed updates after 3, as many
threads as cores; on a machine shared with other jobs pass ``--threads 1``):
    python benchmarks/rssm_vs_sheeprl.py --sheeprl-python /work/sheeprl-venv/bin/python
    python benchmarks/rssm_vs_sheeprl.py --sheeprl-python ... --obs state --updates 30
    python benchmarks/rssm_vs_sheeprl.py --methods dreamer --env cheetah-run --device cuda
    python benchmarks/rssm_vs_sheeprl.py --sheeprl-python ... --precision bf16-mixed  # both in bf16
    python benchmarks/rssm_vs_sheeprl.py --sheeprl-python ... --compile default  # wmlab compiled
Without ``--sheeprl-python`` (or with one that cannot import sheeprl) only wmlab runs.
``--device cuda`` gives wmlab ``run.accelerator=gpu`` and sheeprl ``fabric.accelerator=cuda``
(results below).
sheeprl is installed in a virtual environment of its own, e.g.
    python3 -m venv /work/sheeprl-venv && /work/sheeprl-venv/bin/pip install torch==2.13.0 &&
    /work/sheeprl-venv/bin/pip install "sheeprl[dmc,mlflow]==0.8.4" "mujoco<4" \\
        dm_control==1.0.50 torch==2.13.0

Results (November 2026; 2 CPU cores shared with other jobs, load average 2-3 during the
runs; torch 2.13.0+cpu, sheeprl 0.8.4; walker-walk, action repeat 2, ``--threads 1``,
prefill 1000 env steps, 3 warm-up and 20 timed updates; equal parameter counts):
    --obs state (about 11 minutes)
    method     updates/s  sheeprl  ratio   env steps/s  sheeprl  ratio   peak RSS MiB  sheeprl
    dreamer        0.141    0.159   0.89          1.40     1.59   0.88           2209     2367
    dreamerv2      0.200    0.201   0.99          1.99     2.00   0.99           2231     2135
    --obs pixels (about 35 minutes)
    dreamer        0.044    0.043   1.02          0.44     0.42   1.03           3573     3647
    dreamerv2      0.056    0.059   0.96          0.56     0.58   0.98           2861     2803
December 2026, 2-core Intel Xeon with AMX, ``--threads 1``, ``--precision`` for both
(pixels with ``--updates 10 --warmup 2``), after wmlab's conv change (channels-last, the
decoder's 1x1 transposed convolution as a matrix product; ``benchmarks/conv_throughput.py``):
    updates/s       wmlab  sheeprl  ratio
    state  float32     dreamer 0.169 0.164 1.03, dreamerv2 0.231 0.210 1.10
    state  bf16-mixed  dreamer 0.515 0.512 1.00, dreamerv2 0.469 0.474 0.99
    pixels float32     dreamer 0.068 0.048 1.42, dreamerv2 0.094 0.068 1.38
    pixels bf16-mixed  dreamer 0.106 0.066 1.60, dreamerv2 0.184 0.103 1.79
    (pixels bf16-mixed just before the conv change: dreamer 1.12, dreamerv2 0.95)
Later in December 2026, wmlab with ``run.reuse_memory=true`` (the script sets it): sheeprl as it
ships, and with ``--sheeprl-reuse-memory`` (the same allocator setting); two benchmarks at a
time, one process per core:
    updates/s       wmlab  sheeprl  ratio  |  with --sheeprl-reuse-memory
    state  float32     dreamer 0.276 0.214 1.29, dreamerv2 0.307 0.284 1.08  |  1.03, 1.01
    state  bf16-mixed  dreamer 0.639 0.529 1.21, dreamerv2 0.586 0.535 1.10  |  -
    pixels float32     dreamer 0.097 0.055 1.76, dreamerv2 0.135 0.087 1.56  |  1.24, 1.25
    pixels bf16-mixed  dreamer 0.213 0.079 2.70, dreamerv2 0.274 0.137 2.00  |  1.96, 1.81
Still later in December 2026, after categorical draws by inverse CDF, the actor's loss on
the outputs imagination kept, and Dreamer's shared critic pass (``method.shared_critic``,
then on by default, now off); ``--obs state``, float32, sheeprl as it ships, one other job
on the second core, two runs about 40 minutes apart (sheeprl's Dreamer ran 0.121 and 0.158
updates/s in them: the machine's speed swung):
    updates/s                  wmlab  sheeprl  ratio
    eager             dreamer  0.158  0.121  1.31,  dreamerv2 0.191 0.147 1.30
    --compile default dreamer  0.172  0.158  1.09,  dreamerv2 0.260 0.176 1.48
The same changes, ``--obs pixels --threads 1`` (defaults: 3 warm-up, 20 timed updates),
float32, one other job on the second core (the machine slower than for the pixel rows above):
    updates/s                  wmlab  sheeprl  ratio
    eager             dreamer  0.055  0.030  1.86,  dreamerv2 0.074 0.055 1.34
After ``RSSM.observe`` ran the prior's head once over the sequence, ``--obs state --threads 1``,
float32, sheeprl as it ships (the code before the change, run meanwhile on the other core:
dreamer 0.162, dreamerv2 0.228):
    updates/s                  wmlab  sheeprl  ratio
    eager             dreamer  0.164  0.132  1.24,  dreamerv2 0.253 0.205 1.23
    --compile default dreamer  0.177  0.138  1.28,  dreamerv2 0.284 0.193 1.47  (next call)
Later (the 2-core machine now an AMD EPYC; same software), the FLOP counts added, ``--obs state
--threads 1 --updates 10``, float32, eager, sheeprl as it ships, the second core idle; three
calls, the third printing the bound:
    GFLOP of matrix products per update: dreamer wmlab 375.9, sheeprl 371.8 (0.99x);
    dreamerv2 wmlab 263.1, sheeprl 320.8 (1.22x: wmlab's DreamerV2 does less arithmetic)
    updates/s                  wmlab  sheeprl  ratio
    call 1            dreamer  0.189  0.151  1.25,  dreamerv2 0.270 0.197 1.37
    call 3            dreamer  0.173  0.163  1.06,  dreamerv2 0.290 0.198 1.46
    call 2 (--methods dreamerv2 --compile default): 0.252 against 0.197, 1.28 (slower than eager)
    call 3's bound: matrix products here 86.3 GFLOP/s at Dreamer's [2500, 400] x [400, 400] and
    83.5 at DreamerV2's [800, 400] x [400, 400]; wmlab's products alone would take 4.35 s and
    3.15 s per update, so no implementation of the same FLOPs passes 1.41x (dreamer) or 1.60x
    (dreamerv2) sheeprl's update in that call
wmlab's update ran at 65-76 GFLOP/s of training time (sheeprl's 56-64): 83% of a profiled
update's time is ``mm``/``addmm``. The same arithmetic done 1.5x faster than sheeprl's is out
of reach for Dreamer from states on this CPU (sheeprl already computes no gradient of weights
it does not update, so its arithmetic is wmlab's); sheeprl's speed moved by 8% between calls
1 and 3, which is the ratios' noise.
On a GPU (December 2026): one NVIDIA H200, 16 CPU cores idle but for the run, torch
2.11.0+cu130, sheeprl 0.8.4, ``--device cuda --threads 4``, float32 (TF32 off for both),
defaults otherwise (walker-walk, 1000 env steps of prefill, 3 warm-up and 20 timed updates);
dm_control rendered through EGL on the GPU (64x64: 5 ms a frame):
    updates/s        wmlab  sheeprl  ratio   env steps/s  sheeprl  ratio   peak GPU MiB  sheeprl
    pixels dreamer   5.926  3.754    1.58         51.74    30.39   1.70           2026    19226
    pixels dreamerv2 4.764  4.022    1.18         41.88    33.15   1.26           1550    13342
    state  dreamer   7.000  4.597    1.52         62.43    43.00   1.45              -        -
    (state dreamerv2: not measured, the run's time ran out)
    A second session, ``--methods dreamerv2 --compile reduce-overhead``: wmlab's worker did not
    reach its timed window in 180 s; the GPU sat idle while torch compiled (no figures).
A third session (same machine and software), after ``RSSM.observe`` ran the prior's head once
over the sequence (a fifth fewer tensor operations per DreamerV2 update), each line one
script call, the calls minutes apart:
    updates/s                        wmlab  sheeprl  ratio   env steps/s  sheeprl  ratio
    pixels dreamer                   7.894    3.885   2.03         64.96    31.69   2.05
    pixels dreamerv2                 5.050    3.118   1.62         43.17    25.24   1.71
    state  dreamerv2                 5.216    3.333   1.56         46.17    31.06   1.49
    pixels dreamerv2, wmlab alone:
      before (ec16bde), eager        3.833        -      -         33.79
      after, eager                   4.779        -      -         40.98   (1.25x before)
      after, --compile reduce-overhead, --warmup 5
                                     4.524        -      -         39.35   (0.95x eager)
    The compiled worker took 118 s, against 35-48 s eager: compiling fit in the warm-up this
    time, and CUDA graphs of the separate modules did not pay: what is left between them (the
    loop, sampling, the losses, the optimizers) still launches kernel by kernel.
    Peak GPU allocated MiB: wmlab 1549 / 2025 (pixels dreamerv2 / dreamer), sheeprl 13342 /
    19226; states dreamerv2 914 and 1225.
The GPU was busy 10-33% of the time while either library trained (``nvidia-smi dmon``'s SM
column, one-second samples over the timed windows; in the third session 19-30% for wmlab's
DreamerV2 from pixels, 13-23% for sheeprl's): at these batch sizes an update is bound
by kernel launches and the host, not by the GPU's arithmetic; the 23-36 s of each process
went mostly to start-up and the prefill. wmlab's update is 0.17 s from pixels against 10-18 s
on one CPU core (rows above). Peak GPU memory is torch's peak allocated in each process.
November 2026 (above), acting alone (policy and env step, env steps/s): state wmlab 540 /
399, sheeprl 834 / 597; pixels wmlab 216 / 142, sheeprl 32 / 29 (its default rendering).
With 2 threads per process on the same loaded machine the figures were dominated by the
scheduler, not the libraries (one thread of an op descheduled stalls the other): a wmlab
dreamer update from states took 20.6 s against 7.1 s with 1 thread; use ``--threads 1`` on
a shared machine.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("MUJOCO_GL", "egl")

HERE = os.path.dirname(os.path.abspath(__file__))
#: wmlab method -> sheeprl algorithm
SHEEPRL_ALGO = {"dreamer": "dreamer_v1", "dreamerv2": "dreamer_v2"}
#: sheeprl's TensorBoard tags the script reads
TAGS = ("Params/replay_ratio", "Time/sps_train", "Time/sps_env_interaction")


def parse() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sheeprl-python", default=None,
                    help="python of a virtual environment with sheeprl installed (absent: wmlab only)")
    ap.add_argument("--methods", nargs="+", default=["dreamer", "dreamerv2"], choices=sorted(SHEEPRL_ALGO))
    ap.add_argument("--env", default="walker-walk", help="dm_control domain-task")
    ap.add_argument("--obs", default="pixels", choices=["pixels", "state"])
    ap.add_argument("--updates", type=int, default=20, help="steady-state updates timed")
    ap.add_argument("--warmup", type=int, default=3, help="updates after the prefill left out of the timing")
    ap.add_argument("--prefill", type=int, default=1000, help="env steps of random actions before training")
    ap.add_argument("--batch", type=int, default=None,
                    help="sequences per batch for both (default: the method's, the paper's)")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads of each process")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--precision", default="32-true",
                    help="precision of both: wmlab's run.precision and sheeprl's fabric.precision "
                         "(32-true, bf16-mixed, 16-mixed)")
    ap.add_argument("--sheeprl-reuse-memory", action="store_true",
                    help="give sheeprl's process the allocator setting wmlab's run.reuse_memory makes "
                         "(glibc: no mmap of large blocks, no trimming; wmlab.memory) through glibc's "
                         "environment variables; by default each library runs as it ships")
    ap.add_argument("--compile", default="off", metavar="MODE",
                    help="wmlab's run.compile (torch.compile of its networks; default, "
                         "max-autotune, ...); sheeprl runs as it ships. Default off")
    ap.add_argument("-v", "--verbose", action="store_true", help="print the sheeprl command lines")
    ap.add_argument("--worker", choices=["wmlab", "sheeprl"], help=argparse.SUPPRESS)
    ap.add_argument("--job", help=argparse.SUPPRESS)
    return ap.parse_args()


# --- shared arithmetic ------------------------------------------------------------------------


def run_length(prefill: int, repeat: int, ratio: float, warmup: int, updates: int) -> tuple[int, int]:
    """(prefill policy steps, total policy steps) of a run that does more than ``warmup +
    updates`` updates, with env steps after the last timed one."""
    prefill_policy = math.ceil(prefill / repeat)
    return prefill_policy, prefill_policy + math.ceil((warmup + updates + 1) / ratio) + 2


def count_first_call(owner, name: str, out: dict):
    """Replace ``owner.<name>`` by a wrapper that counts the matrix-product FLOPs of its first
    call (forward and backward, torch's ``FlopCounterMode``) into ``out["gflop"]``; later
    calls go straight through. The first update is a warm-up one, outside the timed window."""
    from torch.utils.flop_counter import FlopCounterMode

    inner = getattr(owner, name)

    def wrapper(*args, **kwargs):
        if "gflop" in out:
            return inner(*args, **kwargs)
        counter = FlopCounterMode(display=False)
        with counter:
            result = inner(*args, **kwargs)
        out["gflop"] = counter.get_total_flops() / 1e9
        return result

    setattr(owner, name, wrapper)


# --- wmlab ------------------------------------------------------------------------------------


def wmlab_namespace(job: dict) -> argparse.Namespace:
    overrides = [f"env.obs={job['obs']}", f"run.threads={job['threads']}", f"run.seed={job['seed']}",
                 f"run.accelerator={'gpu' if job['device'] == 'cuda' else 'cpu'}",
                 f"run.precision={job.get('precision', '32-true')}", "run.reuse_memory=true"]
    if job.get("batch"):
        overrides.append(f"method.batch_size={job['batch']}")
    if job.get("compile", "off") != "off":
        overrides.append(f"run.compile={job['compile']}")
    return argparse.Namespace(method=job["method"], env=job["env"], preset=[], overrides=overrides)


def wmlab_method_config(job: dict) -> dict:
    """The method's resolved config and the env's action repeat (as the worker will see them)."""
    from fit_throughput import compose_cfg
    from omegaconf import OmegaConf

    _, _, cfg = compose_cfg(wmlab_namespace(job), [])
    return {"method": OmegaConf.to_container(cfg.method, resolve=True),
            "action_repeat": cfg.env.action_repeat}


def wmlab_worker(job: dict) -> dict:
    import torch
    from fit_throughput import bench_overrides, compose_cfg, prefill_overrides, timed_fit, tracked

    from wmlab import loop

    loop.quiet_libraries()
    ns = wmlab_namespace(job)
    _, _, probe = compose_cfg(ns, [])
    repeat, ratio = probe.env.action_repeat, probe.method.train_ratio
    _, total_policy = run_length(job["prefill"], repeat, ratio, job["warmup"], job["updates"])
    extra = (bench_overrides(total_policy * repeat) + prefill_overrides(probe.method, job["prefill"], repeat)
             + [f"replay.capacity={total_policy + 10}"])
    cls, plugin, cfg = compose_cfg(ns, extra)
    run = loop.build(cfg, job["method"], method_cls=cls, plugin=plugin)
    m = run.method
    params = {name: sum(p.numel() for p in part.parameters())
              for name, part in (("world_model", m.world_model), ("actor", m.actor), ("critic", m.value))}
    flops: dict = {}
    if job["warmup"] > 0 and job.get("compile", "off") == "off":
        count_first_call(m, "training_step", flops)
    with tracked(run, plugin):
        w = timed_fit(run, warmup=job["warmup"], updates=job["updates"])
    out = {"seconds": w.seconds, "env_steps": w.env_steps, "updates": w.updates,
           "acting_seconds": w.collect_seconds, "params": params, "threads": torch.get_num_threads(),
           "batch": [run.data_spec.batch_size, run.data_spec.sequence_length], "ratio": ratio,
           "repeat": repeat, **flops}
    if torch.cuda.is_available():
        out["gpu_peak_mib"] = torch.cuda.max_memory_allocated() / 2**20
    return out


# --- sheeprl ----------------------------------------------------------------------------------


def sheeprl_overrides(job: dict, m: dict, repeat: int) -> list[str]:
    """Hydra overrides that give sheeprl the wmlab method's task, sizes and schedule."""
    algo = SHEEPRL_ALGO[job["method"]]
    domain, task = job["env"].split(":")[-1].split("-", 1)
    prefill_policy, total_policy = run_length(job["prefill"], repeat, m["train_ratio"], job["warmup"],
                                              job["updates"])
    wm = "algo.world_model"
    o = [f"exp={algo}", "env=dmc", f"env.wrapper.domain_name={domain}", f"env.wrapper.task_name={task}",
         f"env.action_repeat={repeat}", "env.num_envs=1", "env.sync_env=True", "env.capture_video=False",
         f"seed={job['seed']}", f"num_threads={job['threads']}", f"fabric.accelerator={job['device']}",
         f"fabric.precision={job.get('precision', '32-true')}",
         "float32_matmul_precision=highest",  # wmlab trains in plain float32 (no TF32) too
         # schedule: random prefill, then a steady ratio with no pretraining burst
         f"algo.total_steps={total_policy}", f"algo.learning_starts={prefill_policy}",
         "algo.per_rank_pretrain_steps=0", f"algo.replay_ratio={m['train_ratio']}",
         f"algo.per_rank_batch_size={m['batch_size']}",
         f"algo.per_rank_sequence_length={m['sequence_length']}",
         f"algo.horizon={m['horizon']}",
         # sizes
         f"algo.dense_units={m['units']}", f"{wm}.recurrent_model.recurrent_state_size={m['deter']}",
         f"{wm}.transition_model.hidden_size={m['hidden']}",
         f"{wm}.representation_model.hidden_size={m['hidden']}",
         f"{wm}.stochastic_size={m['stoch']}", f"{wm}.encoder.cnn_channels_multiplier={m['cnn_depth']}",
         f"{wm}.encoder.mlp_layers={m['state_layers'] + 1}",  # no output layer in sheeprl's encoder
         f"{wm}.observation_model.mlp_layers={m['state_layers']}",
         f"{wm}.reward_model.mlp_layers={m['reward_layers']}", f"{wm}.use_continues={m['continue_head']}",
         f"{wm}.discount_model.mlp_layers={m['continue_layers']}",
         f"algo.actor.mlp_layers={m['actor_layers']}", f"algo.critic.mlp_layers={m['value_layers']}",
         # one log (and one update) every 1 / ratio policy steps; nothing else written
         f"metric.log_every={max(1, round(1 / m['train_ratio']))}", "algo.run_test=False",
         "checkpoint.save_last=False", "checkpoint.every=0", "buffer.checkpoint=False",
         f"buffer.size={total_policy + 10}"]
    if algo == "dreamer_v2":
        o += [f"{wm}.discrete_size={m['discrete']}",
              f"algo.critic.per_rank_target_network_update_freq={m['slow_target_update']}"]
    if job["obs"] == "state":
        o += ["env.wrapper.from_pixels=False", "env.wrapper.from_vectors=True", "algo.cnn_keys.encoder=[]",
              "algo.cnn_keys.decoder=[]", "algo.mlp_keys.encoder=[state]", "algo.mlp_keys.decoder=[state]"]
    else:
        o += ["env.wrapper.from_pixels=True", "env.wrapper.from_vectors=False", "algo.cnn_keys.encoder=[rgb]",
              "algo.cnn_keys.decoder=[rgb]", "algo.mlp_keys.encoder=[]", "algo.mlp_keys.decoder=[]"]
    return o


def sheeprl_worker(job: dict) -> dict:
    """Runs in sheeprl's environment: sheeprl's CLI in this process, then its TensorBoard logs."""
    import glob
    import importlib

    import torch

    os.chdir(job["dir"])
    import sheeprl.cli

    algo = SHEEPRL_ALGO[job["method"]]
    module = importlib.import_module(f"sheeprl.algos.{algo}.{algo}")
    params: dict[str, int] = {}
    build_agent = module.build_agent

    def counting_build_agent(*args, **kwargs):
        built = build_agent(*args, **kwargs)
        for name, part in zip(("world_model", "actor", "critic"), built[:3]):
            params[name] = sum(p.numel() for p in part.parameters())
        return built

    module.build_agent = counting_build_agent
    flops: dict = {}
    if job["warmup"] > 0:
        count_first_call(module, "train", flops)
    sys.argv = ["sheeprl", *job["overrides"]]
    try:
        sheeprl.cli.run()
    except SystemExit as e:
        if e.code not in (0, None):
            raise
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    (events,) = {os.path.dirname(f) for f in glob.glob("**/events.out.tfevents.*", recursive=True)}
    acc = EventAccumulator(events, size_guidance={"scalars": 0})
    acc.Reload()
    out = {"series": {tag: [(e.step, e.wall_time, e.value) for e in acc.Scalars(tag)] for tag in TAGS},
           "params": params, "threads": torch.get_num_threads(), **flops}
    if torch.cuda.is_available():
        out["gpu_peak_mib"] = torch.cuda.max_memory_allocated() / 2**20
    return out


def sheeprl_window(res: dict, repeat: int, warmup: int, updates: int) -> dict:
    """The steady-state window of a sheeprl run from its logged series."""
    rr = {s: (t, v) for s, t, v in res["series"]["Params/replay_ratio"]}
    train = {s: v for s, _, v in res["series"]["Time/sps_train"]}
    acting = {s: v for s, _, v in res["series"]["Time/sps_env_interaction"]}
    steps = sorted(rr)
    done = {s: round(rr[s][1] * s) for s in steps}  # cumulative updates (one env, one process)
    start = next(s for s in steps if done[s] >= warmup)
    end = next((s for s in steps if done[s] >= done[start] + updates), None)
    if end is None:
        raise RuntimeError(f"sheeprl logged {done[steps[-1]]} updates, fewer than {warmup} + {updates}")
    inside = [s for s in steps if start < s <= end]
    prev = dict(zip(inside, [start, *inside[:-1]]))
    acting_s = sum((s - prev[s]) * repeat / acting[s] for s in inside)
    train_s = sum((done[s] - done[prev[s]]) / train[s] for s in inside if s in train)
    return {"seconds": rr[end][0] - rr[start][0], "env_steps": (end - start) * repeat,
            "updates": done[end] - done[start], "acting_seconds": acting_s, "sps_train_seconds": train_s}


# --- orchestration ----------------------------------------------------------------------------


def launch(python: str, job: dict, log_path: str, threads: int,
           extra_env: dict | None = None) -> tuple[dict | None, float]:
    """Run a worker; returns (its result or None, its peak RSS in MiB)."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(job, f)
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads),
               PYTHONPATH=os.pathsep.join([HERE, *filter(None, [os.environ.get("PYTHONPATH")])]),
               **(extra_env or {}))
    with open(log_path, "w") as log:
        cmd = [python, os.path.abspath(__file__), "--worker", job["worker"], "--job", f.name]
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    rss = usage.ru_maxrss / 1024
    if proc.returncode != 0:
        with open(log_path) as log:
            tail = log.read()[-3000:]
        print(f"  {job['worker']} {job['method']} failed (exit {proc.returncode}); "
              f"end of {log_path}:\n{tail}", flush=True)
        return None, rss
    with open(job["out"]) as f:
        return json.load(f), rss


def sheeprl_usable(python: str | None) -> str | None:
    """None if sheeprl can run, else why not."""
    if not python:
        return "no --sheeprl-python given"
    if not (os.path.isfile(python) and os.access(python, os.X_OK)):
        return f"{python} is not an executable"
    probe = subprocess.run([python, "-c", "import sheeprl, tensorboard; print(sheeprl.__version__)"],
                           capture_output=True, text=True)
    if probe.returncode != 0:
        return f"{python} cannot import sheeprl and tensorboard: {probe.stderr.strip().splitlines()[-1:]}"
    return None


def rates(w: dict) -> dict:
    train_s = w["seconds"] - w["acting_seconds"]
    return {"ups": w["updates"] / train_s, "sps": w["env_steps"] / w["seconds"],
            "s_per_update": train_s / w["updates"], "acting_sps": w["env_steps"] / w["acting_seconds"]}


def fmt_ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}" if a and b else "-"


def fmt(x: float | None, spec: str) -> str:
    """``format(x, spec)``, or a dash as wide (``spec`` like ``9.3f``)."""
    return format(x, spec) if x is not None else "-".rjust(int(spec.split(".")[0] or 0))


def sgemm_rate(rows: int, units: int, threads: int, device: str) -> float:
    """GFLOP/s of float32 matrix products of this machine at an update's typical sizes: ``[rows,
    units] x [units, units]`` in the three layouts of a linear layer (forward, the input's and the
    weight's gradients), the best of three rounds each; the harmonic mean of the three."""
    import torch

    torch.set_num_threads(threads)
    dev = torch.device("cuda" if device == "cuda" else "cpu")
    x, w, g = (torch.randn(rows, units, device=dev), torch.randn(units, units, device=dev),
               torch.randn(rows, units, device=dev))
    times = []
    for product in (lambda: x @ w.t(), lambda: g @ w, lambda: g.t() @ x):
        best = math.inf
        for _ in range(3):
            product()
            if dev.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            for _ in range(5):
                product()
            if dev.type == "cuda":
                torch.cuda.synchronize()
            best = min(best, (time.perf_counter() - t0) / 5)
        times.append(best)
    return 2 * rows * units * units * 3 / sum(times) / 1e9


def main() -> int:
    args = parse()
    if args.worker:
        with open(args.job) as f:
            job = json.load(f)
        result = (wmlab_worker if args.worker == "wmlab" else sheeprl_worker)(job)
        with open(job["out"], "w") as f:
            json.dump(result, f)
        return 0
    from wmlab import memory  # (the orchestrating process runs in wmlab's environment)

    skip = sheeprl_usable(args.sheeprl_python)
    if skip:
        print(f"sheeprl skipped: {skip}", flush=True)
    work = tempfile.mkdtemp(prefix="rssm_vs_sheeprl-")
    base = {"env": args.env, "obs": args.obs, "updates": args.updates, "warmup": args.warmup,
            "prefill": args.prefill, "batch": args.batch, "threads": args.threads, "device": args.device,
            "seed": args.seed, "precision": args.precision, "compile": args.compile}
    print(f"{args.env} from {args.obs}, {args.threads} torch threads per process, device {args.device}, "
          f"precision {args.precision}, wmlab run.reuse_memory=true run.compile={args.compile}, "
          f"sheeprl's allocator "
          f"{'set the same' if args.sheeprl_reuse_memory else 'as it ships'}, "
          f"{args.prefill} env steps of prefill, {args.warmup} warm-up updates, {args.updates} timed; "
          f"logs in {work}", flush=True)
    rows = []
    for method in args.methods:
        info = wmlab_method_config({**base, "method": method})
        m, repeat = info["method"], info["action_repeat"]
        print(f"\n{method}: batch {m['batch_size']}x{m['sequence_length']}, train ratio {m['train_ratio']} "
              f"updates per policy step, action repeat {repeat}", flush=True)
        row = {"method": method, "shape": (m["batch_size"], m["sequence_length"], m["units"])}
        for side in ("wmlab", "sheeprl"):
            if side == "sheeprl" and skip:
                continue
            job = {**base, "method": method, "worker": side,
                   "out": os.path.join(work, f"{method}-{side}.json")}
            python = sys.executable
            if side == "sheeprl":
                job["dir"] = os.path.join(work, f"{method}-sheeprl")
                os.makedirs(job["dir"])
                job["overrides"] = sheeprl_overrides(job, m, repeat)
                python = args.sheeprl_python
                if args.verbose:
                    print("  sheeprl " + " ".join(job["overrides"]), flush=True)
            load0, t0 = os.getloadavg()[0], time.monotonic()
            same = side == "sheeprl" and args.sheeprl_reuse_memory
            res, rss = launch(python, job, os.path.join(work, f"{method}-{side}.log"), args.threads,
                              memory.ENVIRONMENT if same else None)
            load1 = os.getloadavg()[0]
            if res is None:
                continue
            window = res if side == "wmlab" else sheeprl_window(res, repeat, args.warmup, args.updates)
            r = rates(window) | {"rss": rss, "gpu": res.get("gpu_peak_mib"), "params": res["params"],
                                 "gflop": res.get("gflop")}
            if side == "sheeprl":
                r["own_ups"] = window["updates"] / window["sps_train_seconds"]
            row[side] = r
            p = res["params"]
            print(f"  {side:8s} {r['ups']:.3f} updates/s ({r['s_per_update']:.2f} s per update"
                  + (f"; its Time/sps_train {r['own_ups']:.3f}" if side == "sheeprl" else "")
                  + f"), {r['sps']:.2f} env steps/s (acting alone {r['acting_sps']:.0f}/s), "
                  f"{window['updates']} updates over {window['env_steps']} env steps, "
                  f"peak RSS {rss:.0f} MiB, torch threads {res['threads']}, params wm/actor/critic "
                  + "/".join(f"{p.get(k, 0) / 1e6:.2f}M" for k in ("world_model", "actor", "critic"))
                  + (f"; {r['gflop']:.1f} GFLOP of matrix products per update, {r['gflop'] * r['ups']:.1f} "
                     f"GFLOP/s of training time" if r["gflop"] else "")
                  + f"; {time.monotonic() - t0:.0f} s, load {load0:.1f} -> {load1:.1f}", flush=True)
        rows.append(row)

    print(f"\n{args.env} from {args.obs}, {args.threads} threads, {args.device} "
          f"(ratios wmlab / sheeprl; load average now {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")
    head = (f"{'method':10s} {'updates/s':>9s} {'sheeprl':>8s} {'ratio':>6s}   {'env steps/s':>11s} "
            f"{'sheeprl':>8s} {'ratio':>6s}   {'peak RSS MiB':>12s} {'sheeprl':>8s}")
    print(head)
    for row in rows:
        w, s = row.get("wmlab", {}), row.get("sheeprl", {})
        print(f"{row['method']:10s} {fmt(w.get('ups'), '9.3f')} {fmt(s.get('ups'), '8.3f')} "
              f"{fmt_ratio(w.get('ups'), s.get('ups')):>6s}   {fmt(w.get('sps'), '11.2f')} "
              f"{fmt(s.get('sps'), '8.2f')} {fmt_ratio(w.get('sps'), s.get('sps')):>6s}   "
              f"{fmt(w.get('rss'), '12.0f')} {fmt(s.get('rss'), '8.0f')}")
        if w.get("gflop") and s.get("gflop"):
            print(f"{'':10s} GFLOP per update (matrix products): wmlab {w['gflop']:.1f}, sheeprl "
                  f"{s['gflop']:.1f} (sheeprl / wmlab {s['gflop'] / w['gflop']:.2f}); GFLOP/s of training "
                  f"time: wmlab {w['gflop'] * w['ups']:.1f}, sheeprl {s['gflop'] * s['ups']:.1f}")
            b, t, units = row["shape"]
            rate = sgemm_rate(b * t, units, args.threads, args.device)
            floor = w["gflop"] / rate  # wmlab's matrix products alone at that rate, s per update
            print(f"{'':10s} float32 matrix products here: {rate:.1f} GFLOP/s ([{b * t}, {units}] x "
                  f"[{units}, {units}], three layouts); wmlab's alone would take {floor:.2f} s per update, "
                  f"so with these FLOPs no implementation passes {s['s_per_update'] / floor:.2f}x sheeprl")
        if w.get("gpu") or s.get("gpu"):
            print(f"{'':10s} peak GPU allocated MiB: wmlab {fmt(w.get('gpu'), '.0f')}, "
                  f"sheeprl {fmt(s.get('gpu'), '.0f')}")
    if all("wmlab" in r and ("sheeprl" in r or skip) for r in rows):
        shutil.rmtree(work, ignore_errors=True)  # keep the logs of a failed run
    return 0


if __name__ == "__main__":
    sys.exit(main())
