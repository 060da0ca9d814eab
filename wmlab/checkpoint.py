"""Checkpoints: written atomically, complete enough to resume a run exactly.

Layout of a run's checkpoint folder (``<checkpoint.dir>/<mlflow run id>/``)::

    latest                 # text: the name of the newest complete checkpoint
    step-000120000/
        state.pt           # weights, optimizers, counters, RNG states, config, names
        replay/            # the replay buffer (torchrl dumps), when checkpoint.replay is on

A checkpoint is first written to a hidden temporary folder, then renamed into place,
then ``latest`` is replaced atomically (``os.replace``); only after that is the
previous checkpoint removed. A crash at any moment leaves the previous checkpoint
intact and ``latest`` pointing at a complete one.
"""

from __future__ import annotations

import os
import random
import shutil
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import torch

from wmlab.errors import CheckpointError

FORMAT = "wmlab-checkpoint"
VERSION = 2
#: format 2 stores the replay as wmlab's episode-indexed rows (wmlab.replay); format 1 held
#: torchrl's TensorDictReplayBuffer dump
REPLAY_SINCE = 2
STATE = "state.pt"
REPLAY = "replay"
LATEST = "latest"


def rng_state() -> dict[str, Any]:
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save(run_dir: Path, name: str, state: dict[str, Any], replay=None) -> Path:
    """Write ``run_dir/name`` atomically and point ``latest`` at it; returns its path."""
    run_dir.mkdir(parents=True, exist_ok=True)
    tmp = run_dir / f".tmp-{name}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        torch.save({"format": FORMAT, "version": VERSION, **state}, tmp / STATE)
        if replay is not None:
            replay.dumps(tmp / REPLAY)
        final = run_dir / name
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    previous = _read_latest(run_dir)
    pointer = run_dir / f".{LATEST}-{uuid.uuid4().hex[:8]}"
    pointer.write_text(name + "\n")
    os.replace(pointer, run_dir / LATEST)
    if previous and previous != name and previous != "final":
        shutil.rmtree(run_dir / previous, ignore_errors=True)
    return final


def _read_latest(run_dir: Path) -> str | None:
    try:
        return (run_dir / LATEST).read_text().strip() or None
    except OSError:
        return None


def resolve(path: str | Path) -> Path:
    """A checkpoint folder, a ``state.pt`` inside one, or a run's folder (its latest)."""
    p = Path(path)
    if p.is_file() and p.name == STATE:
        p = p.parent
    if (p / STATE).is_file():
        return p
    latest = _read_latest(p)
    if latest and (p / latest / STATE).is_file():
        return p / latest
    if not p.exists():
        raise CheckpointError(f"no checkpoint at {p}: the path does not exist; give a checkpoint "
                              f"folder (holding {STATE}), a run's checkpoint folder, or an MLflow run id")
    raise CheckpointError(f"no checkpoint at {p}: expected a folder holding {STATE} "
                          f"or a '{LATEST}' file naming one")


def load(path: str | Path, map_location: str | torch.device = "cpu") -> tuple[Path, dict[str, Any]]:
    """Read a checkpoint's state; an unreadable or foreign file is a CheckpointError."""
    ckpt = resolve(path)
    try:
        state = torch.load(ckpt / STATE, map_location=map_location, weights_only=False)
    except Exception as e:
        raise CheckpointError(f"cannot read checkpoint {ckpt / STATE}: {type(e).__name__}: {e} "
                              f"(the file is damaged or not a wmlab checkpoint)") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{ckpt / STATE} is not a wmlab checkpoint")
    if state.get("version", 0) > VERSION:
        raise CheckpointError(f"{ckpt} was written by a newer wmlab (format {state['version']}); "
                              f"this wmlab reads format {VERSION}")
    return ckpt, state


def load_replay(ckpt: Path, replay, version: int = VERSION) -> bool:
    """Fill ``replay`` from a checkpoint of format ``version``; False if it holds no replay."""
    folder = ckpt / REPLAY
    if not folder.exists():
        return False
    if version < REPLAY_SINCE:
        raise CheckpointError(f"{ckpt} holds a replay buffer in an older format (checkpoint format "
                              f"{version}); resume it with the wmlab that wrote it, or evaluate it "
                              f"with `wmlab eval`, which needs no replay")
    try:
        replay.loads(folder)
    except Exception as e:
        raise CheckpointError(f"cannot read the replay buffer in {folder}: {type(e).__name__}: {e}") from None
    return True
