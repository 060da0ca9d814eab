"""World Models: the time of one M update, its LSTM unrolled by the fused kernel over the
pieces between episode starts (``MDNRNN.unroll``, what training runs) against stepping the
LSTM one row at a time (how M was trained before), in the same run on the same batch.

    python benchmarks/worldmodels_m_update.py                  # the cpu and doom presets' sizes
    python benchmarks/worldmodels_m_update.py --presets cpu --updates 50
    python benchmarks/worldmodels_m_update.py --device cuda

Each update is M's whole step at the preset's sizes (``rnn_batch`` x ``rnn_sequence`` rows,
``rnn_hidden`` units, ``z_dim``, a done head): the unroll, the mixture and done heads, the
loss, backward and Adam. Episodes start every 150-450 rows (Doom's episodes under random
play), so a window holds 0-4 starts where M's state is zeroed. Printed: milliseconds per
update, best of ``--repeats`` rounds of ``--updates`` each, and the ratio.

Measured (December 2026, 2-core Intel Xeon, one torch thread; the same figures by an
earlier form of this script):
    preset  rows      stepped ms  fused ms  ratio
    cpu     32 x 100       102.0      57.4   1.78
    doom    100 x 500    13315     10700     1.24
On a GPU (December 2026, one NVIDIA H200, torch 2.11.0+cu130, ``--device cuda --updates 5
--repeats 2``):
    preset  rows      stepped ms  fused ms  ratio
    cpu     32 x 100        78.2      11.7   6.68
    doom    100 x 500      377.4      65.2   5.79
so an M update at the paper's Doom sizes takes 65 ms there against 10.7 s on one CPU core.
At the Doom sizes the mixture head's maths is a larger share of the update. Two other
layouts were slower there: one padded batch of all pieces (2.4 times the rows) and PyTorch's
packed sequences (155 s an update on the CPU).
"""

from __future__ import annotations

import argparse
import time

import torch

from wmlab.api import EnvSpecs
from wmlab.config import compose
from wmlab_plugins.worldmodels import WorldModels
from wmlab_plugins.worldmodels.networks import mdn_loss

ENV = "doom:take-cover"


def episode_starts(batch: int, rows: int, generator: torch.Generator) -> torch.Tensor:
    """``[batch, rows]`` flags: an episode starts every 150-450 rows, the first one anywhere."""
    starts = torch.zeros(batch, rows, dtype=torch.bool)
    for b in range(batch):
        t = int(torch.randint(0, 300, (1,), generator=generator))
        while t < rows:
            starts[b, t] = True
            t += int(torch.randint(150, 450, (1,), generator=generator))
    return starts


def stepped(rnn, z: torch.Tensor, action: torch.Tensor, reset: torch.Tensor) -> torch.Tensor:
    """M's outputs ``[B, T, H]`` by stepping its LSTM one row at a time, zeroing the state at
    each episode start."""
    state, out = rnn.initial_state(z.shape[0], z.device), []
    for t in range(z.shape[1]):
        if t > 0:
            keep = (~reset[:, t]).to(z.dtype).unsqueeze(-1)
            state = (state[0] * keep, state[1] * keep)
        state = rnn.step(z[:, t], action[:, t], state)
        out.append(state[0])
    return torch.stack(out, 1)


def measure(preset: str, updates: int, repeats: int, device: torch.device) -> dict[str, float]:
    cfg = compose("worldmodels", WorldModels, ENV, presets=[preset], overrides=[]).method
    specs = EnvSpecs(name=ENV, obs_kind="pixels", obs_shape=(3, 64, 64), action_shape=(3,),
                     action_low=torch.zeros(3), action_high=torch.ones(3), action_repeat=1,
                     episode_policy_steps=2100, discrete=True)
    rnn = WorldModels(cfg, specs).rnn.to(device)
    g = torch.Generator().manual_seed(0)
    batch, rows = cfg.rnn_batch, cfg.rnn_sequence
    reset = episode_starts(batch, rows, g).to(device)
    z = torch.randn(batch, rows, cfg.z_dim, generator=g).to(device)
    action = torch.nn.functional.one_hot(torch.randint(3, (batch, rows), generator=g), 3).float().to(device)
    done = torch.zeros(batch, rows, device=device)
    opt = torch.optim.Adam(rnn.parameters(), cfg.rnn_lr)
    print(f"{preset}: {batch} x {rows} rows, LSTM {cfg.rnn_hidden}, z {cfg.z_dim}, "
          f"{int(reset[:, 1:].sum())} episode starts inside the windows", flush=True)

    def update(unroll) -> None:
        h = unroll(z[:, :-1], action[:, :-1], reset[:, :-1])
        mix, done_logit = rnn.heads(h)
        loss = mdn_loss(mix, z[:, 1:], done_logit, done[:, :-1], cfg.done_weight, mask=~reset[:, 1:])["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()

    ways = {"stepped": lambda *a: stepped(rnn, *a), "fused": rnn.unroll}
    best = {name: float("inf") for name in ways}
    for r in range(repeats):
        for name, unroll in ways.items():
            update(unroll)  # warm-up (allocator, kernels)
            start = time.perf_counter()
            for _ in range(updates):
                update(unroll)
            best[name] = min(best[name], (time.perf_counter() - start) / updates * 1e3)
            print(f"  round {r + 1}/{repeats} {name}: {best[name]:.1f} ms (best so far)", flush=True)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--presets", nargs="+", default=["cpu", "doom"], choices=["cpu", "doom", "carracing"])
    ap.add_argument("--updates", type=int, default=None, help="timed updates a round (default: 30 cpu, 2 others)")
    ap.add_argument("--repeats", type=int, default=3, help="rounds; the best is printed")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    for preset in args.presets:
        updates = args.updates or (30 if preset == "cpu" else 2)
        best = measure(preset, updates, args.repeats, torch.device(args.device))
        rows.append((preset, best["stepped"], best["fused"]))
    print(f"\n{'preset':8}{'stepped ms':>12}{'fused ms':>10}{'ratio':>7}")
    for preset, slow, fast in rows:
        print(f"{preset:8}{slow:12.1f}{fast:10.1f}{slow / fast:7.2f}")


if __name__ == "__main__":
    main()
