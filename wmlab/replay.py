"""The replay: stored rows of policy steps, indexed by env and episode.

Rows (one per policy step, see :mod:`wmlab.keys`) live in one preallocated TensorDict on
the replay's device. With ``run.envs = N`` envs the storage is split into ``N`` rings, one
per env, so every episode is a contiguous run of rows in its env's ring and a window of
``L`` rows is a plain index gather (no trajectory search per sample). When a ring is full,
its oldest rows are overwritten.

Beside the rows the replay keeps, on the CPU, which episode every slot belongs to and its
index ``t`` within that episode, and per episode whether it has finished and the ``t`` of
its last stored row. Samplers (:mod:`wmlab.samplers`) use them to draw windows that never
cross an episode start (uniform over all such windows, so an episode weighs by the windows
it holds: a short episode still being collected is not over-sampled), future rows of the
same episode (goal relabelling) and pairs of rows at a distance.

Logical positions: in ring ``e``, position ``0`` is the oldest stored row and
``len(e) - 1`` the newest; :meth:`Replay.slots` maps positions to storage slots.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from tensordict import TensorDict, TensorDictBase

from wmlab import keys, safeio

#: our own trajectory id (a global episode counter), unique across resumes
EPISODE = "episode"

#: the description of a saved replay (see :meth:`Replay.dumps`)
REPLAY_JSON = "replay.json"
REPLAY_FORMAT = "wmlab-replay"
REPLAY_VERSION = 1
ROWS_DIR = "rows"
#: the index of a replay saved by checkpoint format 2 (read, no longer written)
INDEX_FILE = "index.pt"


class Replay:
    """Rows of ``envs`` rings of ``capacity // envs`` slots each, on ``device``."""

    def __init__(self, capacity: int, device: torch.device | str = "cpu", *, envs: int = 1):
        if envs < 1 or capacity < envs:
            raise ValueError(f"replay capacity {capacity} must hold at least one row per env ({envs} envs)")
        self.envs = envs
        self.ring = capacity // envs
        self.capacity = self.ring * envs
        self.device = torch.device(device)
        self.data: TensorDictBase | None = None
        self._leaves: list = []  # (key, storage tensor) of every leaf of ``data``
        # the index lives in numpy arrays (cheap per-row writes); the torch tensors below
        # share their memory (torch ops and torch's RNG for sampling)
        self._np = {"lengths": np.zeros(envs, np.int64), "heads": np.zeros(envs, np.int64),
                    "episode": np.full(self.capacity, -1, np.int64), "t": np.zeros(self.capacity, np.int64),
                    "current": np.full(envs, -1, np.int64), "finished": np.zeros(0, np.bool_),
                    "last_t": np.zeros(0, np.int64)}
        self.next_episode = 0
        self._views()

    def _views(self) -> None:
        for name, array in self._np.items():
            setattr(self, name, torch.from_numpy(array))

    def __len__(self) -> int:
        return int(self.lengths.sum())

    # --- writing ----------------------------------------------------------------------
    def _grow(self, n: int) -> None:
        size = self._np["finished"].size
        if n <= size:
            return
        size = max(n, 2 * size, 1024)
        for name in ("finished", "last_t"):
            old = self._np[name]
            self._np[name] = np.zeros(size, old.dtype)
            self._np[name][:old.size] = old
        self._views()

    def _allocate(self, row: TensorDictBase) -> None:
        self.data = row.expand(self.capacity).clone().zero_().to(self.device)
        self.data.set(EPISODE, torch.zeros(self.capacity, dtype=torch.long, device=self.device))
        self._leaves = [(k, self.data.get(k)) for k in self.data.keys(True, True)]

    def write(self, rows: TensorDictBase, env: torch.Tensor) -> None:
        """Append ``rows`` ``[K]`` (one row each for the distinct envs ``env`` ``[K]``).

        A row whose ``is_init`` is set starts a new episode in its env; a row whose
        ``("next", "done")`` is set marks its episode finished (a final row may follow)."""
        ix = self._np
        env_np = env.reshape(-1).cpu().numpy().astype(np.int64)
        k = env_np.size
        is_init = rows.get(keys.IS_INIT).reshape(k, -1)[:, 0].cpu().numpy() | (ix["current"][env_np] < 0)
        new_ids = self.next_episode + np.cumsum(is_init) - 1
        ids = np.where(is_init, new_ids, ix["current"][env_np])
        newest = env_np * self.ring + (ix["heads"][env_np] - 1) % self.ring
        t = np.where(is_init, 0, ix["t"][newest] + 1)
        self.next_episode += int(is_init.sum())
        self._grow(self.next_episode)
        ix = self._np
        slots = env_np * self.ring + ix["heads"][env_np]
        if self.data is None:
            self._allocate(rows[0])
        index = torch.from_numpy(slots).to(self.device)
        for key, store in self._leaves:
            if key == EPISODE:
                store[index] = torch.from_numpy(ids).to(self.device)
            else:
                store[index] = rows.get(key).to(self.device)
        ix["episode"][slots], ix["t"][slots] = ids, t
        ix["heads"][env_np] = (ix["heads"][env_np] + 1) % self.ring
        ix["lengths"][env_np] = np.minimum(ix["lengths"][env_np] + 1, self.ring)
        ix["current"][env_np] = ids
        ix["last_t"][ids] = t
        done = rows.get(keys.DONE).reshape(k, -1)[:, 0].cpu().numpy()
        ix["finished"][ids[done]] = True

    def close_episodes(self) -> None:
        """End every episode still being written (a resumed run starts new ones): they count
        as finished where they stop."""
        ix = self._np
        ix["finished"][ix["current"][ix["current"] >= 0]] = True
        ix["current"][:] = -1

    # --- positions ----------------------------------------------------------------------
    def _slot(self, env: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        oldest = torch.where(self.lengths[env] < self.ring, torch.zeros_like(env), self.heads[env])
        return env * self.ring + (oldest + pos) % self.ring

    def slots(self, env: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """Storage slots of logical positions ``pos`` (any shape, broadcast with ``env``)."""
        env, pos = torch.broadcast_tensors(env.to(torch.long), pos.to(torch.long))
        return self._slot(env, pos)

    def gather(self, env: torch.Tensor, pos: torch.Tensor) -> TensorDictBase:
        """The rows at ``pos`` of rings ``env``, shaped like ``pos`` (e.g. ``[B, L]``)."""
        slots = self.slots(env, pos)
        return self.data[slots.reshape(-1).to(self.device)].reshape(*slots.shape)

    def episode_bounds(self, env: torch.Tensor, pos: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """First and last stored positions of the episodes holding ``pos``."""
        slot = self.slots(env, pos)
        t = self.t[slot]
        first = torch.clamp(pos - t, min=0)
        last = pos + self.last_t[self.episode[slot]] - t
        return first, last

    def sample_starts(self, batch: int, span: int, *, finished_only: bool = False,
                      max_rounds: int = 1000) -> tuple[torch.Tensor, torch.Tensor]:
        """``(env, pos)`` ``[batch]``: uniform over positions whose ``span`` rows from ``pos``
        on lie in one episode (of a finished episode only, if asked), with torch's RNG."""
        counts = torch.clamp(self.lengths - span + 1, min=0)
        if int(counts.sum()) == 0:
            raise RuntimeError(f"the replay holds no window of {span} rows yet ({len(self)} rows)")
        envs, starts = [], []
        found = 0
        for _ in range(max_rounds):
            n = 2 * batch
            env = torch.multinomial(counts.float(), n, replacement=True)
            pos = (torch.rand(n) * counts[env]).long()
            s0, s1 = self._slot(env, pos), self._slot(env, pos + span - 1)
            ok = (self.episode[s0] == self.episode[s1]) & (self.t[s1] - self.t[s0] == span - 1)
            if finished_only:
                ok &= self.finished[self.episode[s0]]
            envs.append(env[ok])
            starts.append(pos[ok])
            found += int(ok.sum())
            if found >= batch:
                return torch.cat(envs)[:batch], torch.cat(starts)[:batch]
        what = "finished episode" if finished_only else "episode"
        raise RuntimeError(f"no window of {span} rows inside one {what} in the replay ({len(self)} rows)")

    def __getitem__(self, index) -> TensorDictBase:
        """Rows of a single-env replay in the order they were written (oldest first)."""
        if self.envs != 1:
            raise TypeError("index a replay of several envs with gather(env, pos)")
        pos = torch.arange(len(self))[index]
        return self.gather(torch.zeros_like(pos), pos)

    # --- saving -------------------------------------------------------------------------
    def _used_slots(self) -> torch.Tensor:
        return torch.cat([e * self.ring + torch.arange(int(n)) for e, n in enumerate(self.lengths)])

    def dumps(self, path: str | Path) -> dict[str, dict]:
        """Write the index and the stored rows (only the used slots) to a new folder ``path``.

        Every array is one raw file (see :mod:`wmlab.safeio`); ``replay.json`` says which,
        with its dtype, shape, size and SHA-256. Returns ``{file: {"size", "sha256"}}`` of
        every file written, relative to ``path`` (``replay.json`` too), for a checkpoint's
        manifest."""
        path = Path(path)
        (path / "index").mkdir(parents=True)
        files: dict[str, dict] = {}

        def record(rel: str, parts, dtype: torch.dtype, shape) -> dict:
            files[rel] = safeio.write_tensors(path / rel, parts)
            return {"file": rel, "dtype": safeio.dtype_name(dtype), "shape": [int(s) for s in shape],
                    **files[rel]}

        index = {}
        for name, array in self._np.items():
            t = torch.from_numpy(np.ascontiguousarray(array))
            index[name] = record(f"index/{name}.bin", [t], t.dtype, t.shape)
        rows = []
        if self.data is not None and len(self) > 0:
            (path / ROWS_DIR).mkdir()
            counts = [int(n) for n in self.lengths]
            for i, (key, store) in enumerate(self._leaves):
                # the used slots of each ring, ring after ring: contiguous pieces of storage
                parts = (store[e * self.ring:e * self.ring + n] for e, n in enumerate(counts) if n)
                entry = record(f"{ROWS_DIR}/{i:03d}.bin", parts, store.dtype, (len(self), *store.shape[1:]))
                rows.append({"key": list(key) if isinstance(key, tuple) else [key], **entry})
        manifest = {"format": REPLAY_FORMAT, "version": REPLAY_VERSION, "envs": self.envs, "ring": self.ring,
                    "next_episode": int(self.next_episode), "index": index, "rows": rows}
        files[REPLAY_JSON] = safeio.write_bytes(path / REPLAY_JSON, json.dumps(manifest, indent=1).encode())
        return files

    def loads(self, path: str | Path) -> None:
        """Read what :meth:`dumps` wrote (or the index-and-memmap folder of wmlab's checkpoint
        format 2); the replay must have the same envs and capacity. Files are only read, and
        checked: :class:`wmlab.safeio.DamagedFile` names a file whose size or digest differs
        from the recorded one, ``ValueError`` a replay of another shape."""
        path = Path(path)
        if not (path / REPLAY_JSON).exists() and (path / INDEX_FILE).exists():
            return self._loads_format2(path)
        try:
            manifest = json.loads((path / REPLAY_JSON).read_text())
        except FileNotFoundError:
            raise safeio.DamagedFile(f"{REPLAY_JSON} is missing") from None
        except (OSError, ValueError) as e:
            raise safeio.DamagedFile(f"{REPLAY_JSON} is unreadable ({e})") from None
        if manifest.get("format") != REPLAY_FORMAT or int(manifest.get("version", 0)) > REPLAY_VERSION:
            raise ValueError(f"{path} holds no replay this wmlab can read "
                             f"({manifest.get('format')!r} version {manifest.get('version')})")
        self._check_shape(int(manifest["envs"]), int(manifest["ring"]))
        arrays = {}
        for name in self._np:
            entry = manifest["index"][name]
            arrays[name] = torch.empty(entry["shape"], dtype=safeio.parse_dtype(entry["dtype"]))
            with safeio.CheckedReader(path / entry["file"], entry, entry["file"]) as r:
                r.readinto(arrays[name])
        self._set_index({name: t.numpy() for name, t in arrays.items()}, int(manifest["next_episode"]))
        entries = manifest["rows"]
        if entries:
            data = TensorDict({}, batch_size=[self.capacity], device=self.device)
            for entry in entries:
                shape = entry["shape"]
                if shape[0] != len(self):
                    raise ValueError(f"the saved replay holds {shape[0]} rows, its index {len(self)}")
                data.set(tuple(entry["key"]), torch.zeros((self.capacity, *shape[1:]),
                                                          dtype=safeio.parse_dtype(entry["dtype"]),
                                                          device=self.device))
            counts = [int(n) for n in self.lengths]
            for entry in entries:
                store = data.get(tuple(entry["key"]))
                with safeio.CheckedReader(path / entry["file"], entry, entry["file"]) as r:
                    for e, n in enumerate(counts):
                        if n:
                            r.readinto(store[e * self.ring:e * self.ring + n])
            self._use(data)
        self.close_episodes()

    def _check_shape(self, envs: int, ring: int) -> None:
        if (envs, ring) != (self.envs, self.ring):
            raise ValueError(f"the saved replay has {envs} envs x {ring} rows, this run "
                             f"{self.envs} x {self.ring} (keep run.envs and the capacity of the run)")

    def _set_index(self, arrays: dict[str, np.ndarray], next_episode: int) -> None:
        for name in self._np:
            self._np[name] = np.array(arrays[name], dtype=self._np[name].dtype, copy=True)
        self._views()
        self.next_episode = next_episode

    def _use(self, data: TensorDictBase) -> None:
        self.data = data
        self._leaves = [(k, self.data.get(k)) for k in self.data.keys(True, True)]

    def _loads_format2(self, path: Path) -> None:
        """A replay as checkpoint format 2 wrote it: ``index.pt`` (tensors only) and the rows
        as a TensorDict memmap folder (``meta.json`` and one raw ``.memmap`` file per entry),
        read here without a memory map, each file's size checked against its metadata."""
        index = torch.load(path / INDEX_FILE, weights_only=True)
        envs, ring = index["shape"].tolist()
        self._check_shape(envs, ring)
        self._set_index({name: index[name].numpy() for name in self._np}, int(index["next_episode"]))
        rows_dir = path / ROWS_DIR
        if not rows_dir.exists():
            self.close_episodes()
            return
        data = TensorDict({}, batch_size=[self.capacity], device=self.device)
        slots = self._used_slots().to(self.device)

        def walk(folder: Path, prefix: tuple[str, ...]) -> None:
            try:
                meta = json.loads((folder / "meta.json").read_text())
            except (OSError, ValueError) as e:
                raise safeio.DamagedFile(f"{folder.relative_to(path)}/meta.json is unreadable ({e})") from None
            for key, entry in meta.items():
                if not isinstance(entry, dict):
                    continue
                if not key.isidentifier():
                    raise ValueError(f"unexpected entry {key!r} in {folder}")
                if entry.get("type") is not None:
                    walk(folder / key, (*prefix, key))
                    continue
                if "dtype" not in entry or "shape" not in entry:
                    continue
                shape = entry["shape"]
                if shape[0] != len(self):
                    raise ValueError(f"the saved replay holds {shape[0]} rows, its index {len(self)}")
                file = folder / f"{key}.memmap"
                rows = safeio.read_raw(file, shape, safeio.parse_dtype(entry["dtype"]),
                                       str(file.relative_to(path)))
                store = torch.zeros((self.capacity, *shape[1:]), dtype=rows.dtype, device=self.device)
                store[slots] = rows.to(self.device)
                data.set((*prefix, key), store)

        walk(rows_dir, ())
        self._use(data)
        self.close_episodes()
