"""Config composition: layering order, typed validation, clear errors."""

from dataclasses import dataclass

import pytest
from omegaconf import OmegaConf

from wmlab.api import Method
from wmlab.config import compose, flatten, parse_overrides
from wmlab.errors import ConfigError


@dataclass
class ToyConfig:
    lr: float = 1e-3
    """learning rate"""
    horizon: int = 5
    """planning horizon"""


class Toy(Method):
    Config = ToyConfig
    presets = {"debug": {"method": {"horizon": 2}, "run": {"steps": 123}}}
    env_presets = {"cartpole-*": {"env": {"action_repeat": 8}}}


def test_defaults_and_env_name():
    cfg = compose("toy", Toy, "cheetah-run")
    assert cfg.env.name == "cheetah-run"
    assert cfg.method.lr == 1e-3 and cfg.run.seed == 1


def test_layer_order(tmp_path):
    f = tmp_path / "exp.yaml"
    f.write_text("method: {horizon: 7}\nrun: {steps: 999}\n")
    cfg = compose("toy", Toy, "cartpole-swingup", presets=["debug"], files=[f],
                  overrides=["run.steps=5"])
    assert cfg.env.action_repeat == 8  # the method's env preset
    assert cfg.method.horizon == 7  # file over preset
    assert cfg.run.steps == 5  # override over file
    assert cfg.eval.episodes == 1  # the core's debug preset (configs/presets/debug.yaml)


def test_typed_values_are_converted_and_checked():
    cfg = compose("toy", Toy, "cheetah-run", overrides=["method.lr=3e-4", "method.horizon=3"])
    assert cfg.method.lr == pytest.approx(3e-4) and cfg.method.horizon == 3
    with pytest.raises(ConfigError, match="method.horizon"):
        compose("toy", Toy, "cheetah-run", overrides=["method.horizon=three"])


def test_unknown_key_is_named_with_valid_keys():
    with pytest.raises(ConfigError, match=r"method\.horizn.*method\.horizon"):
        compose("toy", Toy, "cheetah-run", overrides=["method.horizn=3"])
    with pytest.raises(ConfigError, match="unknown config key"):
        compose("toy", Toy, "cheetah-run", overrides=["nosuch.key=1"])


@pytest.mark.parametrize("bad", ["run.steps", "=3", "run..steps=3", "run.steps 3"])
def test_malformed_override(bad):
    with pytest.raises(ConfigError, match="malformed override"):
        parse_overrides([bad])


def test_unknown_preset_lists_valid():
    with pytest.raises(ConfigError, match="valid presets: debug"):
        compose("toy", Toy, "cheetah-run", presets=["huge"])
    with pytest.raises(ConfigError, match="valid presets: debug.*; a YAML file of your own goes with --config FILE"):
        compose("toy", Toy, "cheetah-run", presets=["my/exp.yaml"])


def test_method_and_env_in_a_preset_name_stand_for_the_runs():
    """One sweep over several methods gives each its own preset."""
    from wmlab import registry

    with pytest.raises(ConfigError, match="unknown preset 'toy-cheetah-run-small'"):
        compose("toy", Toy, "cheetah-run", presets=["{method}-{env}-small"])
    cls, _ = registry.load_method("tdmpc")
    cfg = compose("tdmpc", cls, "cartpole-swingup", presets=["{method}-cartpole-swingup-small"])
    assert cfg.method.mlp_dim == 128  # configs/experiments/tdmpc-cartpole-swingup-small.yaml


def test_bad_file(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("run: [1, 2\n")
    with pytest.raises(ConfigError, match="cannot read"):
        compose("toy", Toy, "cheetah-run", files=[f])
    with pytest.raises(ConfigError, match="not found"):
        compose("toy", Toy, "cheetah-run", files=[tmp_path / "missing.yaml"])


def test_frozen_and_validated():
    cfg = compose("toy", Toy, "cheetah-run")
    with pytest.raises(Exception):
        cfg.run.steps = 3
    with pytest.raises(ConfigError, match="toy learns from state, not env.obs=pixels; set env.obs=state"):
        compose("toy", Toy, "cheetah-run", overrides=["env.obs=pixels"])  # Toy learns from states only
    with pytest.raises(ConfigError, match="run.steps must be positive"):
        compose("toy", Toy, "cheetah-run", overrides=["run.steps=0"])


@pytest.mark.parametrize("override, message", [
    ("run.seed=-5", "run.seed must be between 0 and 2147483647, got -5"),
    ("run.seed=4294967296", "run.seed must be between 0 and 2147483647"),
    ("run.threads=-1", "run.threads must be >= 0 (0: torch's default), got -1"),
    ("eval.every=-1", "eval.every must be >= 0"),
    ("checkpoint.every=-5", "checkpoint.every must be >= 0"),
    ("checkpoint.minutes=-0.5", "checkpoint.minutes must be >= 0"),
    ("tracking.log_every=-1", "tracking.log_every must be >= 0"),
    ("run.compile=nosuch", "run.compile=nosuch; valid: off, default, reduce-overhead, max-autotune"),
    ("method.horizon=${run.nosuch}", "bad value for 'method.horizon': Interpolation key 'run.nosuch' not found"),
    ("method.horizon=${run.name}", "bad value for 'method.horizon'"),
    ("run=5", "'run' is a section, not a value (from command-line override); set its keys, e.g. "
              "run.KEY=VALUE; valid keys: run.seed, run.steps"),
    ("method=3", "'method' is a section, not a value"),
])
def test_nonsense_values_are_named_with_what_is_valid(override, message):
    with pytest.raises(ConfigError) as e:
        compose("toy", Toy, "cheetah-run", overrides=[override])
    assert message in str(e.value)


def test_a_file_giving_a_section_a_value(tmp_path):
    f = tmp_path / "exp.yaml"
    f.write_text("run: 5\n")
    with pytest.raises(ConfigError, match=r"'run' is a section, not a value \(from .*exp.yaml\)"):
        compose("toy", Toy, "cheetah-run", files=[f])


def test_interpolations_that_resolve_are_kept():
    cfg = compose("toy", Toy, "cheetah-run", overrides=["method.horizon=${run.seed}"])
    assert cfg.method.horizon == 1


def test_base_config_then_overrides():
    saved = compose("toy", Toy, "cheetah-run", overrides=["method.horizon=9", "run.steps=50"])
    cfg = compose("toy", Toy, "cheetah-run", base=OmegaConf.create(OmegaConf.to_yaml(saved)),
                  overrides=["run.steps=100"])
    assert cfg.method.horizon == 9 and cfg.run.steps == 100


def test_a_key_added_after_a_checkpoint_keeps_its_default_not_the_env_preset():
    """An old run resumes as it was: the env presets' value for a key its saved config lacks
    (a key added since) would change it."""
    saved = OmegaConf.to_container(compose("toy", Toy, "cartpole-swingup"))
    assert saved["env"]["action_repeat"] == 8  # (from the env preset)
    del saved["env"]["action_repeat"]  # as if the key had not existed then
    cfg = compose("toy", Toy, "cartpole-swingup", base=OmegaConf.create(saved))
    assert cfg.env.action_repeat == compose("toy", Toy, "cheetah-run").env.action_repeat != 8
    assert compose("toy", Toy, "cartpole-swingup").env.action_repeat == 8


def test_flatten():
    flat = flatten(compose("toy", Toy, "cheetah-run"))
    assert flat["method.lr"] == 1e-3 and flat["env.name"] == "cheetah-run"


def test_method_env_presets_without_a_family_match_dm_control_only():
    from wmlab.config import env_pattern_matches

    assert env_pattern_matches("cheetah-run", "*") and env_pattern_matches("dmc:cheetah-run", "cheetah-*")
    assert not env_pattern_matches("atari:pong", "*") and env_pattern_matches("atari:pong", "atari:*")
    assert not env_pattern_matches("cheetah-run", "atari:*")


# --- the env section: core keys plus the family's own ------------------------------------

FAMILY_WITHOUT_CONFIG = """
from wmlab.envs import EnvFamily

class Plugin(EnvFamily):
    def tasks(self):
        return ["one"]
"""

FAMILY_WITH_CONFIG = """
from dataclasses import dataclass
from wmlab.envs import EnvFamily

@dataclass
class Settings:
    level: int = 3
    \"\"\"difficulty\"\"\"

class Plugin(EnvFamily):
    Config = Settings
"""


def test_env_section_holds_the_family_keys_only():
    dmc = compose("toy", Toy, "cheetah-run", overrides=["env.camera=2"]).env
    assert dmc.camera == 2 and dmc.fast_render is True
    assert "sticky_actions" not in dmc and "noop_max" not in dmc
    atari = compose("toy", Toy, "atari:pong", overrides=["env.obs=state", "env.sticky_actions=0"]).env
    assert atari.sticky_actions == 0.0 and atari.noop_max == 30 and "camera" not in atari
    core = ("name", "obs", "action_repeat", "episode_steps", "image_size", "grayscale")
    assert list(dmc)[:len(core)] == list(core) and list(atari)[:len(core)] == list(core)


def test_another_family_key_is_an_error_naming_the_valid_keys():
    with pytest.raises(ConfigError) as err:
        compose("toy", Toy, "cheetah-run", overrides=["env.sticky_actions=0"])
    msg = str(err.value)
    assert "'env.sticky_actions'" in msg and "env.camera" in msg and "env.action_repeat" in msg
    assert "dmc family" in msg and "\n" not in msg
    with pytest.raises(ConfigError, match="'env.camera'.*env.sticky_actions"):
        compose("toy", Toy, "atari:pong", overrides=["env.obs=state", "env.camera=1"])


def test_unknown_family_is_one_line():
    from wmlab.errors import RegistryError

    with pytest.raises(RegistryError) as err:
        compose("toy", Toy, "atri:pong")
    msg = str(err.value)
    assert "unknown env family 'atri'" in msg and "atari" in msg and "\n" not in msg


def test_third_party_family_with_and_without_config(fake_plugins):
    fake_plugins("plain", FAMILY_WITHOUT_CONFIG, group="wmlab.envs")
    fake_plugins("levels", FAMILY_WITH_CONFIG, group="wmlab.envs")
    plain = compose("toy", Toy, "plain:one").env
    assert set(plain) == {"name", "obs", "action_repeat", "episode_steps", "image_size", "grayscale"}
    levels = compose("toy", Toy, "levels:x", overrides=["env.level=5"]).env
    assert levels.level == 5 and "camera" not in levels
    with pytest.raises(ConfigError, match="env.level"):
        compose("toy", Toy, "plain:one", overrides=["env.level=5"])


def test_family_config_must_not_redefine_core_keys(fake_plugins):
    from wmlab.errors import RegistryError

    fake_plugins("clash", FAMILY_WITH_CONFIG.replace("level: int = 3", "obs: str = 'x'"),
                 group="wmlab.envs")
    with pytest.raises(RegistryError, match="redefines core env keys obs"):
        compose("toy", Toy, "clash:x")


def test_family_settings_fall_back_to_defaults():
    from wmlab.config import EnvConfig, env_config
    from wmlab.envs.dmc import DMControl

    family = DMControl()
    assert family.settings(EnvConfig(name="cheetah-run")).camera == 0
    assert family.settings(env_config("cheetah-run", camera=2)).camera == 2


def test_checkpoint_saved_with_every_family_key_still_resumes():
    """A config saved when the env section held dm_control's and Atari's keys together."""
    saved = OmegaConf.to_container(compose("toy", Toy, "cheetah-run", overrides=["env.camera=1"]))
    saved["env"].update(sticky_actions=0.25, full_action_space=True, noop_max=30,
                        terminal_on_life_loss=False)
    cfg = compose("toy", Toy, "cheetah-run", base=OmegaConf.create(saved))
    assert cfg.env.camera == 1 and "sticky_actions" not in cfg.env


def test_wmlab_config_shows_the_family_keys(capsys):
    from wmlab.cli import main

    assert main(["config", "--method", "tdmpc", "--env", "cheetah-run"]) == 0
    out = capsys.readouterr().out
    assert "camera: 0" in out and "fast_render: true" in out and "sticky_actions" not in out
    assert main(["config", "--method", "tdmpc", "--env", "cheetah-run", "env.noop_max=3"]) == 2
    err = capsys.readouterr().err.strip()
    assert "'env.noop_max'" in err and "env.camera" in err and len(err.splitlines()) == 1


def test_every_experiment_preset_composes_for_the_command_its_header_gives():
    """Each file in configs/experiments names its command (``# Use: wmlab fit --method M --env E
    --preset P``); that command's config composes, with every key the file sets taking its value
    (so no file sets a key its method or the core has dropped or renamed)."""
    import pathlib
    import re

    from wmlab import registry

    files = sorted((pathlib.Path(__file__).parents[1] / "configs" / "experiments").glob("*.yaml"))
    assert files
    for f in files:
        use = re.search(r"^# Use: wmlab fit --method (\S+) --env (\S+) --preset (\S+)$", f.read_text(), re.M)
        assert use, f"{f.name}: no '# Use: wmlab fit --method M --env E --preset P' line"
        method, env, preset = use.groups()
        assert preset == f.stem, f.name
        composed = flatten(compose(method, registry.load_method(method)[0], env, presets=[preset]))
        for key, value in flatten(OmegaConf.load(f)).items():
            assert composed.get(key) == value, (f.name, key)
