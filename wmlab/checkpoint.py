"""Checkpoints: written atomically, complete enough to resume a run exactly, read safely.

Layout of a run's checkpoint folder (``<checkpoint.dir>/<mlflow run id>/``)::

    latest                 # text: the name of the newest complete checkpoint
    step-000120000/
        manifest.json      # format, version, and the size and SHA-256 of every file below
        state.pt           # weights, optimizers, counters, RNG states, config, names
        replay/            # the replay (wmlab.replay: replay.json and raw array files),
                           # when checkpoint.replay is on

A checkpoint is first written to a hidden temporary folder (every file flushed to disk),
then renamed into place, then ``latest`` is replaced atomically (``os.replace``); only
after that is the previous checkpoint removed. A crash at any moment leaves the previous
checkpoint intact and ``latest`` pointing at a complete one.

Reading never runs code from the files and never changes them:

* ``state.pt`` is read with ``torch.load(weights_only=True)``: tensors, plain Python values
  and numpy arrays of numbers (:data:`SAFE_GLOBALS`, e.g. numpy's RNG state) only. Anything
  else (a pickled object, a crafted payload) is refused with a :class:`CheckpointError`
  before it is built. :func:`save` refuses to write such values in the first place.
* the replay is raw bytes described by JSON (no pickle at all), read with plain reads
  rather than memory maps;
* the sizes of all files are checked against the manifest when a checkpoint is opened,
  the digest of ``state.pt`` before it is unpickled and those of the replay's files while
  they are read. A difference is a :class:`CheckpointError` naming the file.

A folder holding ``state.pt`` alone (the ``model`` artifact of a run in MLflow) needs no
manifest: it is read the same safe way, without a digest.

Format 3 added the manifest and the raw replay files. A format-2 checkpoint (no manifest)
still loads: its ``state.pt`` the same safe way, its replay from its own metadata with
every file's size checked, but without digests. Format 1 checkpoints load for
``wmlab eval`` only (their replay was torchrl's).
"""

from __future__ import annotations

import io
import json
import os
import random
import shutil
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import torch

from wmlab import safeio
from wmlab.errors import CheckpointError

FORMAT = "wmlab-checkpoint"
VERSION = 3
#: format 2 stores the replay as wmlab's episode-indexed rows (wmlab.replay); format 1 held
#: torchrl's TensorDictReplayBuffer dump
REPLAY_SINCE = 2
#: format 3 records every file's size and digest in MANIFEST
MANIFEST_SINCE = 3
STATE = "state.pt"
REPLAY = "replay"
LATEST = "latest"
MANIFEST = "manifest.json"

_NUMERIC = ("bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
            "float16", "float32", "float64", "complex64", "complex128")


def _numpy_globals() -> list:
    try:
        from numpy._core.multiarray import _reconstruct, scalar
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import _reconstruct, scalar
    return [_reconstruct, scalar, np.dtype, np.ndarray, *{type(np.dtype(t)) for t in _NUMERIC}]


#: what ``state.pt`` may hold besides tensors and plain values: numpy arrays and scalars of
#: numbers (an object or string array needs more and is refused)
SAFE_GLOBALS = _numpy_globals()


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


def check_plain(value: Any, where: str = "state") -> None:
    """Raise ``TypeError`` naming the first value in ``value`` that :func:`load` would refuse
    (anything but tensors, plain Python values and numpy arrays or scalars of numbers)."""
    if value is None or isinstance(value, (bool, int, float, complex, str, bytes, torch.Tensor,
                                           torch.Size, torch.dtype, torch.device)):
        return
    if isinstance(value, np.ndarray | np.generic):
        if value.dtype.name not in _NUMERIC:
            raise TypeError(f"{where} is a numpy value of dtype {value.dtype}; a checkpoint holds "
                            f"numbers only")
        return
    if isinstance(value, dict):  # OrderedDict too
        for k, v in value.items():
            check_plain(k, f"a key of {where}")
            check_plain(v, f"{where}[{k!r}]")
        return
    if type(value) in (list, tuple):
        for i, v in enumerate(value):
            check_plain(v, f"{where}[{i}]")
        return
    raise TypeError(f"{where} is a {type(value).__module__}.{type(value).__qualname__}; a checkpoint "
                    f"holds tensors and plain values only (convert it in on_save_checkpoint)")


def save(run_dir: Path, name: str, state: dict[str, Any], replay=None) -> Path:
    """Write ``run_dir/name`` atomically and point ``latest`` at it; returns its path.

    ``TypeError`` (nothing written) if ``state`` holds a value :func:`load` would refuse."""
    state = {"format": FORMAT, "version": VERSION, **state}
    check_plain(state)
    run_dir.mkdir(parents=True, exist_ok=True)
    tmp = run_dir / f".tmp-{name}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        buffer = io.BytesIO()
        torch.save(state, buffer)
        files = {STATE: safeio.write_bytes(tmp / STATE, buffer.getbuffer())}
        del buffer
        if replay is not None:
            written = replay.dumps(tmp / REPLAY)
            files |= {f"{REPLAY}/{rel}": entry for rel, entry in written.items()}
        manifest = {"format": FORMAT, "version": VERSION, "files": files}
        safeio.write_bytes(tmp / MANIFEST, json.dumps(manifest, indent=1, sort_keys=True).encode())
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
    _fsync_dir(run_dir)
    if previous and previous != name and previous != "final":
        shutil.rmtree(run_dir / previous, ignore_errors=True)
    return final


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


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


def read_manifest(ckpt: Path) -> dict[str, Any] | None:
    """The checkpoint's manifest, or ``None`` for a checkpoint written before there was one
    (format 2 or older); :class:`CheckpointError` if it is unreadable or lists a file whose
    size differs from the recorded one."""
    try:
        text = (ckpt / MANIFEST).read_text()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise CheckpointError(f"cannot read {ckpt / MANIFEST}: {e}") from None
    try:
        manifest = json.loads(text)
        files = manifest["files"]
        version = int(manifest["version"])
        if manifest.get("format") != FORMAT or not isinstance(files, dict) or STATE not in files:
            raise ValueError("not a wmlab checkpoint manifest")
    except (ValueError, KeyError, TypeError) as e:
        raise CheckpointError(f"checkpoint {ckpt} is damaged: {MANIFEST} is unreadable ({e})") from None
    if version > VERSION:
        raise CheckpointError(f"{ckpt} was written by a newer wmlab (format {version}); "
                              f"this wmlab reads formats up to {VERSION}")
    for rel, entry in files.items():
        if Path(rel).is_absolute() or ".." in Path(rel).parts:
            raise CheckpointError(f"checkpoint {ckpt} is damaged: {MANIFEST} names {rel!r}")
        try:
            safeio.check_size(ckpt / rel, entry, rel)
        except safeio.DamagedFile as e:
            raise CheckpointError(f"checkpoint {ckpt} is damaged: {e}") from None
    return manifest


def _unpickle(data: bytes, file: Path, map_location) -> Any:
    """``torch.load(weights_only=True)`` with :data:`SAFE_GLOBALS`; a file that needs anything
    else is refused in one line, without building any of it."""
    try:
        with torch.serialization.safe_globals(SAFE_GLOBALS):
            return torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)
    except Exception as e:
        try:
            unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(io.BytesIO(data))
        except Exception:
            unsafe = []
        allowed = {f"{g.__module__}.{g.__qualname__}" for g in SAFE_GLOBALS}
        unsafe = [g for g in unsafe if g not in allowed]
        if unsafe:
            shown = ", ".join(unsafe[:3]) + (", ..." if len(unsafe) > 3 else "")
            raise CheckpointError(f"refusing to load {file}: it holds Python objects, not only tensors "
                                  f"and plain values ({shown}); wmlab never writes those, so the file "
                                  f"was crafted or is not a wmlab checkpoint") from None
        reason = " ".join(str(e).split())[:200]
        raise CheckpointError(f"cannot read checkpoint {file}: {type(e).__name__}: {reason} "
                              f"(the file is damaged or not a wmlab checkpoint)") from None


def load(path: str | Path, map_location: str | torch.device = "cpu") -> tuple[Path, dict[str, Any]]:
    """Read a checkpoint's state safely (see the module docstring); an unreadable, damaged,
    crafted or foreign checkpoint is a :class:`CheckpointError` naming the file.

    ``path`` may be a run's folder that a live run goes on writing: its latest checkpoint is
    read, and if the run replaces it (and removes the old one) while it is being read, the
    new latest one is read instead."""
    for _ in range(MOVED_ON_RETRIES):
        ckpt = resolve(path)
        try:
            return _load(ckpt, map_location)
        except CheckpointError:
            if ckpt == Path(path) or _read_latest(Path(path)) in (None, ckpt.name):
                raise  # (a folder named by the user, or the run's latest itself is bad)
    return _load(resolve(path), map_location)


#: how often :func:`load` follows a run's ``latest`` to a newer checkpoint
MOVED_ON_RETRIES = 5


def _load(ckpt: Path, map_location: str | torch.device) -> tuple[Path, dict[str, Any]]:
    manifest = read_manifest(ckpt)
    file = ckpt / STATE
    try:
        if manifest is not None:
            data = safeio.read_bytes(file, manifest["files"][STATE], STATE)
        else:
            data = file.read_bytes()
    except safeio.DamagedFile as e:
        raise CheckpointError(f"checkpoint {ckpt} is damaged: {e}") from None
    except OSError as e:
        raise CheckpointError(f"cannot read checkpoint {file}: {e}") from None
    state = _unpickle(data, file, map_location)
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{file} is not a wmlab checkpoint")
    version = state.get("version", 0)
    if version > VERSION:
        raise CheckpointError(f"{ckpt} was written by a newer wmlab (format {version}); "
                              f"this wmlab reads formats up to {VERSION}")
    if manifest is None and version >= MANIFEST_SINCE and (ckpt / REPLAY).exists():
        # (a state.pt alone, as the run's ``model`` artifact in MLflow, has no manifest)
        raise CheckpointError(f"checkpoint {ckpt} is damaged: its {MANIFEST} is missing")
    if manifest is not None and int(manifest["version"]) != version:
        raise CheckpointError(f"checkpoint {ckpt} is damaged: {MANIFEST} says format "
                              f"{manifest['version']}, {STATE} format {version}")
    return ckpt, state


def load_replay(ckpt: Path, replay, version: int = VERSION) -> bool:
    """Fill ``replay`` from a checkpoint of format ``version``; False if it holds no replay.
    Every file is checked against what was recorded when it was written."""
    folder = ckpt / REPLAY
    if not folder.exists():
        return False
    if version < REPLAY_SINCE:
        raise CheckpointError(f"{ckpt} holds a replay buffer in an older format (checkpoint format "
                              f"{version}); resume it with the wmlab that wrote it, or evaluate it "
                              f"with `wmlab eval`, which needs no replay")
    if version >= MANIFEST_SINCE:
        manifest = read_manifest(ckpt)
        if manifest is None:
            raise CheckpointError(f"checkpoint {ckpt} is damaged: its {MANIFEST} is missing")
        rel = f"{REPLAY}/{_replay_json()}"
        try:
            if rel not in manifest["files"]:
                raise safeio.DamagedFile(f"{MANIFEST} does not list {rel}")
            safeio.read_bytes(ckpt / rel, manifest["files"][rel], rel)
        except safeio.DamagedFile as e:
            raise CheckpointError(f"checkpoint {ckpt} is damaged: {e}") from None
    try:
        replay.loads(folder)
    except safeio.DamagedFile as e:  # (its messages name files inside the replay folder)
        raise CheckpointError(f"checkpoint {ckpt} is damaged: {REPLAY}/{e}") from None
    except (ValueError, KeyError, TypeError, OSError) as e:
        raise CheckpointError(f"cannot read the replay buffer in {folder}: {type(e).__name__}: {e}") from None
    return True


def _replay_json() -> str:
    from wmlab.replay import REPLAY_JSON

    return REPLAY_JSON
