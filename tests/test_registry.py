"""Entry-point discovery: built-ins like third parties, broken and foreign plugins."""

import re
import subprocess
import sys

import pytest

from wmlab import registry
from wmlab.errors import RegistryError

GOOD = """
from dataclasses import dataclass
from wmlab.api import Method

@dataclass
class Cfg:
    x: int = 1

class Plugin(Method):
    Config = Cfg
"""


def test_builtins_are_entry_points():
    assert "tdmpc" in registry.names(registry.METHODS)
    assert {"dmc", "atari", "gym", "goal", "sokoban"} <= set(registry.names(registry.ENVS))
    plugin = registry.info(registry.METHODS, "tdmpc")
    assert plugin.dist == "wmlab" and plugin.value.startswith("wmlab_plugins.")


def test_unknown_name_lists_valid_names():
    with pytest.raises(RegistryError, match=r"unknown method 'tdmcp' \(did you mean tdmpc[,?].*valid: .*tdmpc"):
        registry.load_method("tdmcp")


def test_broken_plugin_is_a_warning_in_the_survey(fake_plugins):
    fake_plugins("broken", "raise ImportError('no module named flux_capacitor')")
    fake_plugins("good", GOOD)
    with pytest.warns(UserWarning, match="broken"):
        rows = {p.name: problem for p, problem in registry.survey(registry.METHODS)}
    assert "flux_capacitor" in rows["broken"]
    assert rows["good"] is None and rows["tdmpc"] is None
    with pytest.raises(RegistryError, match="failed to import"):
        registry.load_method("broken")
    cls, plugin = registry.load_method("good")
    assert plugin.dist == "fake-good" and plugin.version == "0.1"


def test_other_api_version_is_refused(fake_plugins):
    fake_plugins("future", GOOD + "\nPlugin.api_version = '2.0'\n")
    with pytest.raises(RegistryError, match="built for wmlab API 2.0"):
        registry.load_method("future")


def test_not_a_method_is_refused(fake_plugins):
    fake_plugins("notamethod", "class Plugin:\n    api_version = '1.0'\n")
    with pytest.raises(RegistryError, match="not a subclass"):
        registry.load_method("notamethod")


def test_only_the_requested_plugin_is_imported():
    code = ("import sys; from wmlab import registry; registry.names(registry.METHODS); "
            "registry.info(registry.METHODS, 'tdmpc'); "
            "assert not any(m.startswith('wmlab_plugins.') for m in sys.modules), sorted(sys.modules)")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_shadowed_plugin_names_both_distributions(fake_plugins, capsys):
    from wmlab.cli import main

    fake_plugins("tdmpc", GOOD)  # a second distribution declaring the method tdmpc
    message = r"method 'tdmpc' is declared by 2 installed distributions, fake-tdmpc 0.1 .* and wmlab "
    with pytest.raises(RegistryError, match=message):
        registry.load_method("tdmpc")
    assert main(["fit", "--method", "tdmpc", "--env", "cartpole-swingup"]) == 2
    err = capsys.readouterr().err
    assert "fake-tdmpc 0.1" in err and "wmlab" in err and len(err.strip().splitlines()) == 1
    assert main(["list"]) == 0
    assert re.search(r"tdmpc .*WARNING: method 'tdmpc' is declared by 2", capsys.readouterr().out)
    registry.load_method("dreamer")  # the others are untouched
