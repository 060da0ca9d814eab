"""Shared fixtures: every test runs with a private MLflow store and checkpoint folder."""

import os
import sys
import textwrap
from pathlib import Path

import pytest

os.environ.setdefault("MUJOCO_GL", "egl")
if os.environ.get("PYTEST_XDIST_WORKER"):  # parallel workers: one torch thread each
    os.environ["OMP_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)


@pytest.fixture(scope="session", autouse=True)
def _private_plugin_index(tmp_path_factory):
    """The plugin index (wmlab.plugin_index) of this test session, not the user's."""
    saved = os.environ.get("WMLAB_CACHE_DIR")
    os.environ["WMLAB_CACHE_DIR"] = str(tmp_path_factory.mktemp("wmlab-cache"))
    yield
    if saved is None:
        os.environ.pop("WMLAB_CACHE_DIR", None)
    else:
        os.environ["WMLAB_CACHE_DIR"] = saved


def pytest_collection_modifyitems(config, items):
    """Learning checks (minutes each) first: with the README's one-test-at-a-time parallel
    scheduling the long runs start at once and the short tests fill in around them."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture(autouse=True)
def _isolated_cwd(tmp_path, monkeypatch):
    """Run in a temporary folder so ./mlflow and ./checkpoints never touch the repository."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    yield


@pytest.fixture
def fake_plugins(tmp_path, monkeypatch):
    """Install throw-away entry points: ``fake_plugins(name, source, group=...)``."""
    root = tmp_path / "site"
    root.mkdir()
    monkeypatch.syspath_prepend(str(root))

    def add(name: str, source: str, group: str = "wmlab.methods", obj: str = "Plugin") -> None:
        module = f"fake_{name}"
        (root / f"{module}.py").write_text(textwrap.dedent(source))
        info = root / f"fake_{name}-0.1.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: fake-{name}\nVersion: 0.1\n")
        (info / "entry_points.txt").write_text(f"[{group}]\n{name} = {module}:{obj}\n")
        sys.modules.pop(module, None)

    return add
