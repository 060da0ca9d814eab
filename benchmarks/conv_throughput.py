"""Speed of wmlab's conv encoder and decoder against the same maths in torch's plain layers.

wmlab's ``ConvEncoder`` and ``ConvDecoder`` (``wmlab/nets/conv.py``; Dreamer, DreamerV2,
PlaNet, Plan2Explore and World Models' V use them) run their convolutions on channels-last
tensors and the decoder's first transposed convolution, which reads a single pixel, as a
matrix product. The reference is what the authors' code and sheeprl do: channels-first
tensors through ``nn.Conv2d`` and ``nn.ConvTranspose2d``. Both use the same modules and
weights in the same run; the script checks that their outputs agree, then times a forward
and backward pass of the encoder on ``--batch`` images and the decoder on as many feature
vectors, in float32 and under bfloat16 autocast (``run.precision=bf16-mixed``), and prints
seconds per pass and the ratio.

Usage (defaults: DreamerV2's batch of 16 x 50 images, depth 48, ELU, 1 thread):
    python benchmarks/conv_throughput.py
    python benchmarks/conv_throughput.py --batch 2500 --depth 32 --act relu   # Dreamer's

Measured on a 2-core Intel Xeon with AMX, torch 2.13.0+cpu, 1 thread, December 2026
(defaults): float32 plain 8.59 s, wmlab 5.73 s (1.50x); bf16-mixed plain 6.34 s, wmlab
2.51 s (2.53x); largest output difference 5e-7. Where the plain path's time went (float32,
800 images): the first transposed convolution, 1536 channels at 1x1 to 192 at 5x5, ran at
12 GFLOP/s (2.4 s forward and backward) against ~140 GFLOP/s for a matrix product of the
same size; the encoder's convolutions ran at 21-81 GFLOP/s channels-first and about 1.3x
faster channels-last.
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import nn


def parse() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=800, help="images per pass")
    ap.add_argument("--depth", type=int, default=48, help="cnn depth (DreamerV2 48, Dreamer 32)")
    ap.add_argument("--act", default="elu")
    ap.add_argument("--feat", type=int, default=1624, help="decoder input size (DreamerV2: 600 + 1024)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=2, help="timed passes after one warm-up")
    return ap.parse_args()


def plain(enc, dec, obs: torch.Tensor, feat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The same modules through torch's plain channels-first path."""
    e = enc.convs(obs).reshape(obs.shape[0], -1)
    x = dec.linear(feat).reshape(-1, 32 * dec.depth, 1, 1)
    x = dec.deconvs[1:](nn.ConvTranspose2d.forward(dec.deconvs[0], x))
    return e, x


def ours(enc, dec, obs: torch.Tensor, feat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return enc(obs), dec(feat)


def seconds(fn, enc, dec, obs, feat, repeats: int, bf16: bool) -> float:
    def one():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            e, x = fn(enc, dec, obs, feat)
            loss = e.float().square().mean() + x.float().square().mean()
        loss.backward()

    one()
    start = time.perf_counter()
    for _ in range(repeats):
        one()
    return (time.perf_counter() - start) / repeats


def main() -> None:
    from wmlab.nets import ConvDecoder, ConvEncoder

    args = parse()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    enc = ConvEncoder(depth=args.depth, act=args.act)
    dec = ConvDecoder(args.feat, depth=args.depth, act=args.act)
    obs, feat = torch.rand(args.batch, 3, 64, 64) - 0.5, torch.randn(args.batch, args.feat)
    with torch.no_grad():
        gap = max((a - b).abs().max().item() for a, b in zip(ours(enc, dec, obs, feat), plain(enc, dec, obs, feat)))
    print(f"encoder + decoder, forward and backward, {args.batch} images, depth {args.depth}, {args.act}, "
          f"{torch.get_num_threads()} thread(s); largest output difference {gap:.1e}")
    for bf16 in (False, True):
        a = seconds(plain, enc, dec, obs, feat, args.repeats, bf16)
        b = seconds(ours, enc, dec, obs, feat, args.repeats, bf16)
        print(f"{'bf16-mixed' if bf16 else 'float32':10s}  plain layers {a:7.2f} s   wmlab {b:7.2f} s   "
              f"ratio {a / b:.2f}x", flush=True)


if __name__ == "__main__":
    main()
