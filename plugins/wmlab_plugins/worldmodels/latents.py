"""M's batches with V's latents instead of frames (``cache_latents``).

V is frozen from M's stage on, so V's mean and log-variance of a stored frame do not change
while M trains: each stored frame is encoded once, the first time a batch draws it, and kept
by its replay slot. A batch then carries the latents of its rows (``LATENT_STATS``) and no
frames, and M draws z from them afresh each batch, as the authors' ``series.py`` stores every
frame's mean and log-variance once and their M samples z from them.

A slot's entry is valid while the slot holds the row it was encoded from (the replay's
episode id and step ``t``, which no later row repeats), so rows a later collection
overwrites are encoded again; :meth:`LatentStore.clear` forgets everything (V changed).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
from tensordict import TensorDictBase

from wmlab import keys
from wmlab.replay import Replay
from wmlab.samplers import Sampler

#: a batch entry ``[B, L, 2, Z]``: V's mean (``[..., 0, :]``) and log-variance of each row's frame
LATENT_STATS = "latent_stats"
#: frames encoded at a time when the store fills in
ENCODE_CHUNK = 256

Encode = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


class LatentStore:
    """V's mean and log-variance of the replay's frames by slot, filled as batches need them.

    ``encode(frames [N, 3, 64, 64] uint8) -> (mean, logvar) [N, Z]`` is V's encoder; the
    store keeps its outputs where they come back (V's device)."""

    def __init__(self, encode: Encode):
        self.encode = encode
        self.stats: torch.Tensor | None = None  # [capacity, 2, Z]
        self.key = torch.empty(0, 2, dtype=torch.long)  # [capacity, (episode, t)]; -1: empty
        self.encoded = 0  # frames encoded since the last clear (for tests and progress)

    def clear(self) -> None:
        """Forget every entry (V may have changed)."""
        self.key.fill_(-1)
        self.encoded = 0

    def lookup(self, replay: Replay, slots: torch.Tensor) -> torch.Tensor:
        """``[N, 2, Z]`` for replay slots ``[N]``, encoding the frames not stored yet."""
        slots = slots.reshape(-1).cpu()
        if self.key.shape[0] != replay.capacity:
            self.key = torch.full((replay.capacity, 2), -1, dtype=torch.long)
            self.stats = None
        row_key = torch.stack([replay.episode[slots], replay.t[slots]], -1)
        missing = slots[(self.key[slots] != row_key).any(-1)].unique()
        frames = replay.data.get(keys.OBSERVATION)
        for part in missing.split(ENCODE_CHUNK) if missing.numel() else ():
            with torch.no_grad():
                mean, logvar = self.encode(frames[part.to(frames.device)])
            if self.stats is None:
                self.stats = mean.new_zeros(replay.capacity, 2, mean.shape[-1])
            self.stats[part.to(self.stats.device)] = torch.stack([mean, logvar], 1)
            self.key[part] = torch.stack([replay.episode[part], replay.t[part]], -1)
        self.encoded += missing.numel()
        return self.stats[slots.to(self.stats.device)]


@dataclass(frozen=True)
class WithLatents(Sampler):
    """``inner``'s windows (a :class:`~wmlab.samplers.Spans` or
    :class:`~wmlab.samplers.Windows`, same draws) with ``LATENT_STATS`` from ``store`` in place
    of the frames: every other stored entry as ``inner`` gives it."""

    inner: Sampler
    store: LatentStore = field(compare=False, repr=False)

    @property
    def needs(self) -> tuple[str, ...]:  # type: ignore[override]
        return self.inner.needs

    def sample(self, replay: Replay, batch_size: int) -> TensorDictBase:
        env, pos = self.inner.positions(replay, batch_size)
        slots = replay.slots(env, pos)  # [B, L]
        rows = replay.data.exclude(keys.OBSERVATION)[slots.reshape(-1).to(replay.device)]
        stats = self.store.lookup(replay, slots)
        rows.set(LATENT_STATS, stats.to(rows.device))
        return rows.reshape(*slots.shape)
