"""Fast start: ``--help``, ``wmlab list`` and input errors import neither torch, Lightning,
MLflow, mujoco nor a plugin once the plugin index knows the plugins; the index never
rejects what the full composition accepts, and forgets a plugin that changed."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

from wmlab import plugin_index, registry
from wmlab.cli import main
from wmlab.config import compose

HEAVY = ("torch", "lightning", "mlflow", "mujoco", "torchrl", "tensordict", "wmlab_plugins")

PROBE = textwrap.dedent("""
    import json, sys
    from wmlab.cli import main
    try:
        code = main(json.loads(sys.argv[1]))
    except SystemExit as e:  # --help
        code = e.code
    heavy = sorted({m.split(".")[0] for m in sys.modules} & set(json.loads(sys.argv[2])))
    print("PROBE", json.dumps([code, heavy]))
""")


@pytest.fixture(scope="module")
def warm_index():
    """Every built-in plugin loaded once, as any earlier command would have done."""
    assert main(["list"]) == 0


def probe(argv, tmp_path):
    out = subprocess.run([sys.executable, "-c", PROBE, json.dumps(argv), json.dumps(HEAVY)],
                         capture_output=True, text=True, cwd=tmp_path, timeout=300,
                         env={**os.environ, "MUJOCO_GL": "nosuch"})  # and GL is never touched
    code, heavy = json.loads(out.stdout.split("PROBE", 1)[1])
    return code, heavy, out.stderr


@pytest.mark.parametrize("argv, code, message", [
    (["--help"], 0, ""),
    (["list"], 0, ""),
    (["fit", "--method", "nosuch", "--env", "cheetah-run"], 2, "unknown method 'nosuch'"),
    (["fit", "--method", "tdmpc", "--env", "nosuch:task"], 2, "unknown env family 'nosuch'"),
    (["fit", "--method", "tdmpc", "--env", "cheetah-fly"], 2, "did you mean: cheetah-run"),
    (["fit", "--method", "tdmpc", "--env", "atari:pongg"], 2, "did you mean: pong"),
    (["fit", "--method", "tdmpc", "--env", "cheetah-run", "run.stepz=3"], 2, "unknown config key 'run.stepz'"),
    (["fit", "--method", "tdmpc", "--env", "cheetah-run", "run.steps"], 2, "malformed override"),
    (["fit", "--method", "tdmpc", "--env", "cheetah-run", "method.horizn=3"], 2, "unknown config key 'method.horizn'"),
    (["fit", "--method", "tdmpc", "--env", "cheetah-run", "method.horizon=abc"], 2, "bad value for 'method.horizon'"),
    (["fit", "--method", "tdmpc", "--env", "cheetah-run", "env.sticky_actions=0.1"], 2, "unknown config key 'env.sticky_actions'"),
    (["fit", "--method", "tdmpc", "--env", "cheetah-run", "--preset", "nope"], 2, "valid presets: debug"),
    (["config", "--method", "dreamer", "--env", "cheetah-run", "--config", "missing.yaml"], 2, "config file not found"),
    # dreamer learns from pixels on dm_control: a GL backend that cannot load, before any import
    (["fit", "--method", "dreamer", "--env", "cheetah-run"], 2, "MUJOCO_GL=nosuch is not a backend"),
    (["fit", "--method", "tdmpc", "--env", "cheetah-run", "eval.video=true"], 2, "MUJOCO_GL=nosuch"),
])
def test_quick_answers_import_nothing_heavy(argv, code, message, warm_index, tmp_path):
    got, heavy, err = probe(argv, tmp_path)
    assert got == code and heavy == [], (err, heavy)
    assert message in err and "Traceback" not in err
    if code == 2:
        assert len(err.strip().splitlines()) == 1


def test_the_index_accepts_what_compose_accepts(warm_index):
    """For every method and its presets: the index finds no error, and the core sections of
    the config it composes (checked before the plugins are imported) are the real ones."""
    for name in registry.names(registry.METHODS):
        cls, _ = registry.load_method(name)
        env = cls.example_env or "cartpole-swingup"
        for presets in ([], *([p] for p in sorted(cls.presets))):
            args = dict(presets=presets, overrides=["run.steps=1000", "eval.every=500"])
            early = plugin_index.check_input(name, env, **args)
            real = compose(name, cls, env, **args)
            assert early is not None, name
            for section in ("run", "env", "replay", "eval", "checkpoint", "tracking", "method"):
                assert early[section] == real[section], (name, presets, section)


def test_a_changed_plugin_is_imported_again(fake_plugins, tmp_path):
    fake_plugins("fresh", """
        from dataclasses import dataclass
        from wmlab.api import Method

        @dataclass
        class Cfg:
            size: int = 1

        class Plugin(Method):
            Config = Cfg
    """)
    plugin = registry.info(registry.METHODS, "fresh")
    assert plugin_index.lookup(plugin) is None
    registry.load_method("fresh")
    entry = plugin_index.lookup(plugin)
    assert entry is not None and entry["config"] == [["size", "int", 1]]
    source = tmp_path / "site" / "fake_fresh.py"
    os.utime(source, ns=(source.stat().st_atime_ns, source.stat().st_mtime_ns + 10**9))
    assert plugin_index.lookup(plugin) is None  # stale: the next command imports it


def test_an_unreadable_index_is_ignored(warm_index):
    path = plugin_index.index_path()
    saved = path.read_bytes()
    try:
        path.write_text("{not json")
        assert plugin_index.lookup(registry.info(registry.METHODS, "tdmpc")) is None
        registry.load_method("tdmpc")  # writes it again
        assert plugin_index.lookup(registry.info(registry.METHODS, "tdmpc")) is not None
    finally:
        path.write_bytes(saved)
