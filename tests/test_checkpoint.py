"""Checkpoints are read safely: no code runs from them, nothing in them changes, damage is
named."""

import hashlib
import json
import os
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from tensordict import TensorDict

from wmlab import checkpoint, keys
from wmlab.cli import main
from wmlab.errors import CheckpointError
from wmlab.replay import Replay


def rows(n: int, start: int = 0) -> TensorDict:
    t = torch.arange(start, start + n, dtype=torch.float32)
    return TensorDict({keys.OBSERVATION: t[:, None].expand(n, 3).clone(), keys.ACTION: -t[:, None],
                       keys.IS_INIT: (t == start)[:, None], keys.REWARD: t[:, None] / 10,
                       keys.DONE: torch.zeros(n, 1, dtype=torch.bool),
                       keys.TERMINATED: torch.zeros(n, 1, dtype=torch.bool),
                       keys.TRUNCATED: torch.zeros(n, 1, dtype=torch.bool),
                       "pixels": torch.randint(0, 255, (n, 1, 4, 4), dtype=torch.uint8)}, batch_size=[n])


def filled_replay(envs: int = 2) -> Replay:
    replay = Replay(40, "cpu", envs=envs)
    for i in range(13):  # ring 0 gets 13 rows, ring 1 eight
        replay.write(rows(1, i), torch.tensor([0]))
        if i < 8 and envs > 1:
            replay.write(rows(1, 100 + i), torch.tensor([1]))
    return replay


def state() -> dict:
    return {"method": "fake", "env": "nowhere", "config": "run: {}\n", "progress": {"env_steps": 12},
            "module": {"w": torch.randn(3, 2)}, "optimizers": [{"state": {}, "param_groups": [{"lr": 0.1}]}],
            "rng": checkpoint.rng_state()}


def digests(folder: Path) -> dict[str, tuple[int, str]]:
    return {str(p.relative_to(folder)): (p.stat().st_size, hashlib.sha256(p.read_bytes()).hexdigest())
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_round_trip_reads_without_changing_anything(tmp_path):
    replay = filled_replay()
    saved = checkpoint.save(tmp_path / "run", "step-12", state(), replay)
    manifest = json.loads((saved / "manifest.json").read_text())
    assert manifest["version"] == checkpoint.VERSION
    listed = set(manifest["files"])
    on_disk = {str(p.relative_to(saved)) for p in saved.rglob("*") if p.is_file()} - {"manifest.json"}
    assert listed == on_disk and not any(name.endswith((".pkl", ".pickle")) for name in on_disk)
    before = digests(saved)
    ckpt, loaded = checkpoint.load(tmp_path / "run")
    assert ckpt == saved and loaded["module"]["w"].shape == (3, 2)
    assert loaded["progress"] == {"env_steps": 12}
    again = Replay(40, "cpu", envs=2)
    assert checkpoint.load_replay(ckpt, again, loaded["version"])
    for key in replay.data.keys(True, True):
        for env in (0, 1):
            pos = torch.arange(int(replay.lengths[env]))
            assert torch.equal(again.gather(torch.full_like(pos, env), pos).get(key),
                               replay.gather(torch.full_like(pos, env), pos).get(key))
    assert again.next_episode == replay.next_episode
    assert digests(saved) == before  # reading changed nothing
    checkpoint.set_rng_state(loaded["rng"])  # numpy's RNG state came back as numpy values


def test_crafted_pickle_is_refused_and_never_runs(tmp_path, capsys):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    ckpt = tmp_path / "evil"
    ckpt.mkdir()
    torch.save({"format": checkpoint.FORMAT, "version": checkpoint.VERSION, "x": Payload()}, ckpt / "state.pt")
    data = (ckpt / "state.pt").read_bytes()
    # a manifest that matches, as a forger would write it
    (ckpt / "manifest.json").write_text(json.dumps({
        "format": checkpoint.FORMAT, "version": checkpoint.VERSION,
        "files": {"state.pt": {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}}}))
    assert main(["eval", "--checkpoint", str(ckpt)]) == 2
    err = capsys.readouterr().err
    assert "refusing to load" in err and "system" in err and len(err.strip().splitlines()) == 1
    assert main(["fit", "--resume", str(ckpt)]) == 2
    (ckpt / "manifest.json").unlink()  # the same without a manifest (as format 2 was written)
    with pytest.raises(CheckpointError, match="refusing to load"):
        checkpoint.load(ckpt)
    assert not marker.exists()


def test_truncated_replay_file_is_named_and_left_as_it_is(tmp_path, capsys):
    saved = checkpoint.save(tmp_path / "run", "step-12", state(), filled_replay())
    victim = saved / "replay" / "rows" / "000.bin"
    victim.write_bytes(victim.read_bytes()[:-7])
    before = digests(saved)
    with pytest.raises(CheckpointError, match=r"damaged: replay/rows/000.bin holds \d+ bytes, \d+ were written"):
        checkpoint.load(saved)
    assert main(["eval", "--checkpoint", str(saved)]) == 2
    err = capsys.readouterr().err
    assert "replay/rows/000.bin" in err and len(err.strip().splitlines()) == 1
    # the replay's own reader refuses it too (e.g. a checkpoint whose manifest was lost)
    with pytest.raises(CheckpointError, match="replay/rows/000.bin"):
        checkpoint.load_replay(saved, Replay(40, "cpu", envs=2))
    assert digests(saved) == before  # not zero-filled back to its size


def test_changed_bytes_are_found_by_their_digest(tmp_path):
    saved = checkpoint.save(tmp_path / "run", "step-12", state(), filled_replay())
    replay_file = saved / "replay" / "rows" / "001.bin"
    data = bytearray(replay_file.read_bytes())
    data[0] ^= 0xFF
    replay_file.write_bytes(bytes(data))
    _, loaded = checkpoint.load(saved)  # the state itself is intact
    with pytest.raises(CheckpointError, match="replay/rows/001.bin does not hold what was written"):
        checkpoint.load_replay(saved, Replay(40, "cpu", envs=2), loaded["version"])
    state_file = saved / "state.pt"
    data = bytearray(state_file.read_bytes())
    data[len(data) // 2] ^= 0x01
    state_file.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="state.pt does not hold what was written"):
        checkpoint.load(saved)
    (saved / "manifest.json").unlink()
    with pytest.raises(CheckpointError, match="manifest.json is missing"):
        checkpoint.load(saved)


def test_a_state_alone_loads(tmp_path):
    """As the run's ``model`` artifact in MLflow holds it: state.pt without manifest or replay."""
    saved = checkpoint.save(tmp_path / "run", "step-12", state(), filled_replay())
    model = tmp_path / "model"
    model.mkdir()
    (model / "state.pt").write_bytes((saved / "state.pt").read_bytes())
    _, loaded = checkpoint.load(model / "state.pt")
    assert loaded["progress"] == {"env_steps": 12}


def test_save_refuses_what_load_would_refuse(tmp_path):
    class Opaque:
        pass

    bad = state() | {"extra": {"obj": Opaque()}}
    with pytest.raises(TypeError, match=r"state\['extra'\]\['obj'\] is a .*Opaque"):
        checkpoint.save(tmp_path / "run", "step-1", bad)
    assert not any((tmp_path / "run").glob("step-*"))
    fine = state() | {"extra": {"np": np.arange(3), "gen": np.random.default_rng(0).bit_generator.state,
                                "py": random.getstate(), "x": np.float32(2.5)}}
    saved = checkpoint.save(tmp_path / "run", "step-1", fine)
    _, loaded = checkpoint.load(saved)
    assert loaded["extra"]["np"].tolist() == [0, 1, 2] and loaded["extra"]["x"] == 2.5


def test_format_2_checkpoint_still_loads(tmp_path):
    """Written as wmlab's checkpoint format 2 did: no manifest, the replay as ``index.pt`` and
    a TensorDict memmap folder."""
    replay = filled_replay()
    ckpt = tmp_path / "old"
    (ckpt / "replay").mkdir(parents=True)
    torch.save({"format": checkpoint.FORMAT, "version": 2, **state()}, ckpt / "state.pt")
    index = {name: torch.from_numpy(a.copy()) for name, a in replay._np.items()}
    index |= {"next_episode": torch.tensor(replay.next_episode), "shape": torch.tensor([2, 20])}
    torch.save(index, ckpt / "replay" / "index.pt")
    replay.data[replay._used_slots()].memmap(ckpt / "replay" / "rows")
    before = digests(ckpt)
    _, loaded = checkpoint.load(ckpt)
    again = Replay(40, "cpu", envs=2)
    assert checkpoint.load_replay(ckpt, again, loaded["version"])
    pos = torch.arange(8)
    assert torch.equal(again.gather(torch.ones_like(pos), pos).get("pixels"),
                       replay.gather(torch.ones_like(pos), pos).get("pixels"))
    assert digests(ckpt) == before
    obs = ckpt / "replay" / "rows" / "observation.memmap"
    obs.write_bytes(obs.read_bytes()[:10])
    with pytest.raises(CheckpointError, match="replay/rows/observation.memmap holds 10 bytes"):
        checkpoint.load_replay(ckpt, Replay(40, "cpu", envs=2), 2)
    assert obs.stat().st_size == 10


def test_a_run_folder_read_while_the_run_replaces_its_checkpoint_gives_the_new_one(tmp_path, monkeypatch):
    """`wmlab eval --checkpoint RUN_FOLDER` beside a live run: the run may write its next
    checkpoint and remove the one being read; the reader then reads the new latest one."""
    run = tmp_path / "run"
    checkpoint.save(run, "step-12", state(), filled_replay())
    original, calls = checkpoint.read_manifest, []

    def run_moves_on(ckpt):
        calls.append(ckpt.name)
        if len(calls) == 1:  # the run saves step-24 (removing step-12) mid-read
            checkpoint.save(run, "step-24", state() | {"progress": {"env_steps": 24}}, filled_replay())
        return original(ckpt)

    monkeypatch.setattr(checkpoint, "read_manifest", run_moves_on)
    ckpt, loaded = checkpoint.load(run)
    assert calls == ["step-12", "step-24"] and not (run / "step-12").exists()
    assert ckpt.name == "step-24" and loaded["progress"] == {"env_steps": 24}
    # a damaged latest checkpoint is still named, not read around
    monkeypatch.setattr(checkpoint, "read_manifest", original)
    (run / "step-24" / "manifest.json").unlink()
    with pytest.raises(CheckpointError, match="step-24 is damaged: its manifest.json is missing"):
        checkpoint.load(run)
