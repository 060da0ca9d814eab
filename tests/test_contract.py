"""The plugin contract, checked over every registered method (built-in or installed)."""

import dataclasses
import functools
import inspect

import pytest
import torch

from wmlab import keys, registry
from wmlab.api import API_VERSION, DataSpec, Method, Policy, Stage
from wmlab.config import compose
from wmlab.envs import split_family

METHODS = registry.names(registry.METHODS)
ENV = "cartpole-swingup"


@functools.cache
def env_and_specs(name: str = ENV, obs: str = "state"):
    """An env and its specs, made once per name (``ENV``, or a method's ``example_env``) and
    observation kind (``pixels`` for a method that learns from pixels only)."""
    from wmlab.config import env_config

    family_name, task = split_family(name)
    family, _ = registry.load_env_family(family_name)
    cfg = env_config(name, episode_steps=100, obs=obs)
    env = family.make(task, cfg, seed=0)
    return env, family.specs(env, cfg)


def field_docs(cls) -> dict[str, str]:
    """Field docstrings (the string literal right under each field), inherited ones included
    (a Config may extend another method's, e.g. DreamerV2's extends Dreamer's)."""
    import ast
    import textwrap

    docs = {}
    for klass in reversed([k for k in cls.__mro__ if dataclasses.is_dataclass(k)]):
        body = ast.parse(textwrap.dedent(inspect.getsource(klass))).body[0].body
        for a, b in zip(body, body[1:]):
            if isinstance(a, ast.AnnAssign) and isinstance(b, ast.Expr) and isinstance(b.value, ast.Constant):
                docs[a.target.id] = b.value.value
    return docs


@pytest.mark.parametrize("name", METHODS)
def test_declaration(name):
    cls, plugin = registry.load_method(name)
    assert issubclass(cls, Method)
    assert cls.api_version.split(".")[0] == API_VERSION.split(".")[0]
    assert dataclasses.is_dataclass(cls.Config)
    undocumented = {f.name for f in dataclasses.fields(cls.Config)} - set(field_docs(cls.Config))
    assert not undocumented, f"{name}.Config fields without a docstring: {sorted(undocumented)}"
    assert "debug" in cls.presets, f"{name} has no debug preset"
    assert set(cls.observations) <= {"state", "pixels"} and cls.observations


@pytest.mark.parametrize("name", METHODS)
def test_build_act_and_save(name):
    cls, _ = registry.load_method(name)
    env_name = cls.example_env or ENV  # a method that needs a kind of env names one
    env, specs = env_and_specs(env_name, "state" if "state" in cls.observations else "pixels")
    cfg = compose(name, cls, env_name, presets=["debug"])
    method = cls(cfg.method, specs)
    spec = method.data_spec()
    assert isinstance(spec, DataSpec) and spec.batch_size > 0 and spec.sequence_length >= 1
    assert spec.train_ratio > 0 and spec.prefill_steps >= 0
    stages = method.stages()
    assert stages and all(isinstance(s, Stage) for s in stages)
    for explore in (True, False):
        policy = method.make_policy(explore=explore)
        assert isinstance(policy, Policy)
        td = env.reset()
        for _ in range(3):
            td = policy(td)
            action = td[keys.ACTION]
            assert action.shape == specs.action_shape
            assert torch.all(action >= specs.action_low - 1e-6) and torch.all(action <= specs.action_high + 1e-6)
            td = env.step(td)["next"]
    for name in method.compiled_modules():  # what run.compile compiles (API 1.3)
        assert isinstance(method.get_submodule(name), torch.nn.Module), name
    state = method.state_dict()
    clone = cls(cfg.method, specs)
    clone.load_state_dict(state)
    for k, v in clone.state_dict().items():
        assert torch.equal(v, state[k]), k
