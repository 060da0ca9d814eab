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
    with pytest.raises(ConfigError, match="env.obs"):
        compose("toy", Toy, "cheetah-run", overrides=["env.obs=pixels"])  # Toy learns from states only
    with pytest.raises(ConfigError, match="run.steps must be positive"):
        compose("toy", Toy, "cheetah-run", overrides=["run.steps=0"])


def test_base_config_then_overrides():
    saved = compose("toy", Toy, "cheetah-run", overrides=["method.horizon=9", "run.steps=50"])
    cfg = compose("toy", Toy, "cheetah-run", base=OmegaConf.create(OmegaConf.to_yaml(saved)),
                  overrides=["run.steps=100"])
    assert cfg.method.horizon == 9 and cfg.run.steps == 100


def test_flatten():
    flat = flatten(compose("toy", Toy, "cheetah-run"))
    assert flat["method.lr"] == 1e-3 and flat["env.name"] == "cheetah-run"


def test_method_env_presets_without_a_family_match_dm_control_only():
    from wmlab.config import env_pattern_matches

    assert env_pattern_matches("cheetah-run", "*") and env_pattern_matches("dmc:cheetah-run", "cheetah-*")
    assert not env_pattern_matches("atari:pong", "*") and env_pattern_matches("atari:pong", "atari:*")
    assert not env_pattern_matches("cheetah-run", "atari:*")
