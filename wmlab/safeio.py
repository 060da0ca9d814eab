"""Checked files for checkpoints: written with their size and SHA-256, read back verified.

Tensors are stored as their raw bytes (C order, the machine's byte order) with their dtype
and shape beside them in JSON, so reading one needs no unpickling at all. Every writer
returns ``{"size": bytes, "sha256": hex digest}`` of what it wrote (computed while
writing, not by reading the file again) and flushes the file to disk; every reader
checks the size before reading and the digest after, and opens files read-only, so a
file is never changed by reading it (a memory map of a short file would silently extend
it with zeros).
"""

from __future__ import annotations

import hashlib
import math
import os
from pathlib import Path
from typing import Any, Mapping

import torch

#: bytes per read or write call
CHUNK = 16 << 20


class DamagedFile(Exception):
    """A file that is missing, or whose size or digest is not the one recorded when it
    was written. The message names the file."""


def _entry(size: int, sha: "hashlib._Hash") -> dict[str, Any]:
    return {"size": int(size), "sha256": sha.hexdigest()}


def _fsync_close(f) -> None:
    f.flush()
    os.fsync(f.fileno())
    f.close()


def write_bytes(path: Path, data: bytes | bytearray | memoryview) -> dict[str, Any]:
    """Write ``data`` to a new file ``path``; returns its size and digest."""
    view = memoryview(data).cast("B")
    sha = hashlib.sha256()
    f = open(path, "xb")
    try:
        for start in range(0, len(view), CHUNK):
            part = view[start:start + CHUNK]
            sha.update(part)
            f.write(part)
    finally:
        _fsync_close(f)
    return _entry(len(view), sha)


def _byte_view(t: torch.Tensor) -> memoryview:
    """The bytes of a contiguous CPU tensor, without a copy."""
    if t.numel() == 0:
        return memoryview(b"")
    return memoryview(t.reshape(-1).view(torch.uint8).numpy()).cast("B")


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def parse_dtype(name: str) -> torch.dtype:
    """``"float32"`` (or ``"torch.float32"``) -> ``torch.float32``; ``ValueError`` for
    anything else."""
    dtype = getattr(torch, str(name).removeprefix("torch."), None)
    if not isinstance(dtype, torch.dtype):
        raise ValueError(f"unknown dtype {name!r}")
    return dtype


def write_tensors(path: Path, parts) -> dict[str, Any]:
    """Write the tensors ``parts`` (an iterable, all of one dtype) one after another to a
    new file ``path``; returns its size and digest. GPU tensors are copied to the host one
    part at a time."""
    sha = hashlib.sha256()
    size = 0
    f = open(path, "xb")
    try:
        for t in parts:
            view = _byte_view(t.detach().to("cpu").contiguous())
            for start in range(0, len(view), CHUNK):
                part = view[start:start + CHUNK]
                sha.update(part)
                f.write(part)
            size += len(view)
    finally:
        _fsync_close(f)
    return _entry(size, sha)


def check_size(path: Path, entry: Mapping[str, Any], name: str) -> None:
    """Raise :class:`DamagedFile` if ``path`` is missing or not ``entry["size"]`` bytes."""
    try:
        size = path.stat().st_size
    except OSError:
        raise DamagedFile(f"{name} is missing") from None
    if size != int(entry["size"]):
        raise DamagedFile(f"{name} holds {size} bytes, {int(entry['size'])} were written")


class CheckedReader:
    """Reads a file written by :func:`write_tensors` (or :func:`write_bytes`) front to back,
    into tensors, and checks its size first and its digest at :meth:`close`."""

    def __init__(self, path: Path, entry: Mapping[str, Any], name: str):
        check_size(path, entry, name)
        self.name, self.entry = name, entry
        self._f = open(path, "rb")
        self._sha = hashlib.sha256()
        self._left = int(entry["size"])

    def readinto(self, out: torch.Tensor) -> None:
        """Fill ``out`` (any device) with its size in bytes from the file."""
        target = out if out.device.type == "cpu" and out.is_contiguous() else torch.empty_like(
            out, device="cpu", memory_format=torch.contiguous_format)
        view = _byte_view(target)
        if len(view) > self._left:
            raise DamagedFile(f"{self.name} is shorter than its tensors")
        done = 0
        while done < len(view):
            n = self._f.readinto(view[done:done + CHUNK])
            if not n:
                raise DamagedFile(f"{self.name} ended early")
            self._sha.update(view[done:done + n])
            done += n
        self._left -= done
        if target is not out:
            out.copy_(target)

    def read(self) -> bytes:
        """The rest of the file."""
        data = self._f.read(self._left)
        self._sha.update(data)
        self._left -= len(data)
        return data

    def close(self) -> None:
        """Close the file; :class:`DamagedFile` unless all of it was read and its digest is
        the recorded one."""
        f, self._f = self._f, None
        if f is None:
            return
        f.close()
        if self._left != 0:
            raise DamagedFile(f"{self.name} holds more than its tensors")
        if self._sha.hexdigest() != self.entry["sha256"]:
            raise DamagedFile(f"{self.name} does not hold what was written (SHA-256 differs)")

    def __enter__(self) -> "CheckedReader":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        elif self._f is not None:
            self._f.close()
            self._f = None


def read_bytes(path: Path, entry: Mapping[str, Any], name: str) -> bytes:
    """The whole file, verified against ``entry``."""
    with CheckedReader(path, entry, name) as r:
        return r.read()


def tensor_nbytes(shape, dtype: torch.dtype) -> int:
    itemsize = torch.empty((), dtype=dtype).element_size()
    return math.prod(int(s) for s in shape) * itemsize


def read_raw(path: Path, shape, dtype: torch.dtype, name: str) -> torch.Tensor:
    """A tensor from a raw file of exactly its size, with no recorded digest (checkpoints
    written before digests were recorded)."""
    out = torch.empty(tuple(int(s) for s in shape), dtype=dtype)
    check_size(path, {"size": tensor_nbytes(shape, dtype)}, name)
    view = _byte_view(out)
    with open(path, "rb") as f:
        done = 0
        while done < len(view):
            n = f.readinto(view[done:done + CHUNK])
            if not n:
                raise DamagedFile(f"{name} ended early")
            done += n
    return out
