"""Helpers for tests of sequence methods (PlaNet, Dreamer, ...): random replay-shaped batches
and one Lightning epoch over given batches."""

import lightning as L
import torch
from tensordict import TensorDict
from torch.utils.data import DataLoader, IterableDataset

from wmlab import keys
from wmlab.api import EnvSpecs


def fake_specs(kind: str, low: float = -1.0, high: float = 1.0, *, action_dim: int = 2,
               discrete: bool = False) -> EnvSpecs:
    """Specs of a made-up env: 64x64 pixels or a 5-dim state, ``action_dim`` actions in
    ``[low, high]`` (``discrete``: one-hot vectors over ``action_dim`` choices), action
    repeat 2, episodes of 50 policy steps."""
    shape = (3, 64, 64) if kind == "pixels" else (5,)
    if discrete:
        low, high = 0.0, 1.0
    return EnvSpecs(name="fake-task", obs_kind=kind, obs_shape=shape, action_shape=(action_dim,),
                    action_low=torch.full((action_dim,), low), action_high=torch.full((action_dim,), high),
                    action_repeat=2, episode_policy_steps=50, discrete=discrete)


def random_sequence_batch(specs: EnvSpecs, B: int, T: int, *, terminated: bool = False) -> TensorDict:
    """A ``[B, T]`` batch as the replay samples it: uint8 images or float vectors, actions
    within the bounds (or random one-hot), random rewards, no episode start inside; ``terminated`` ends every
    sequence with a termination."""
    if specs.obs_kind == "pixels":
        obs = torch.randint(0, 256, (B, T, *specs.obs_shape), dtype=torch.uint8)
    else:
        obs = torch.randn(B, T, *specs.obs_shape)
    low, high = specs.action_low, specs.action_high
    if specs.discrete:
        n = specs.action_dim
        action = torch.nn.functional.one_hot(torch.randint(n, (B, T)), n).float()
    else:
        action = low + torch.rand(B, T, *specs.action_shape) * (high - low)
    term = torch.zeros(B, T, 1, dtype=torch.bool)
    term[:, -1] = terminated
    return TensorDict({
        keys.OBSERVATION: obs,
        keys.ACTION: action,
        keys.IS_INIT: torch.zeros(B, T, 1, dtype=torch.bool),
        keys.REWARD: torch.randn(B, T, 1),
        keys.TERMINATED: term,
    }, batch_size=[B, T])


def fit_once(method: L.LightningModule, batches) -> L.Trainer:
    """One ``Trainer.fit`` epoch of ``method`` over ``batches`` on the CPU, logging every step."""
    class Stream(IterableDataset):
        def __iter__(self):
            yield from batches

    trainer = L.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, accelerator="cpu", log_every_n_steps=1)
    trainer.fit(method, DataLoader(Stream(), batch_size=None, collate_fn=lambda x: x))
    return trainer
