"""``run.compile``: torch.compile of the submodules a method names, in place."""

import pytest
import torch

from wmlab import loop, registry
from wmlab.cli import main
from wmlab.config import compose
from wmlab.errors import ConfigError

from test_contract import env_and_specs


def tdmpc():
    cls, _ = registry.load_method("tdmpc")
    cfg = compose("tdmpc", cls, "cartpole-swingup", presets=["debug"])
    return cls(cfg.method, env_and_specs()[1])


def test_a_bad_mode_is_one_line(capsys):
    argv = ["fit", "--method", "tdmpc", "--env", "cartpole-swingup", "--preset", "debug", "run.compile=fast"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["wmlab: error: run.compile=fast; valid: off, default, reduce-overhead, max-autotune"]


def test_no_cxx_compiler_is_a_config_error(monkeypatch):
    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.setattr(loop.shutil, "which", lambda name: None)
    loop.check_compile("off")  # eager needs no compiler
    with pytest.raises(ConfigError, match="needs a C.. compiler.*install g\\+\\+, or set run.compile=off"):
        loop.check_compile("default")


def test_the_named_modules_compile_in_place_and_compute_what_eager_does(capsys):
    method = tdmpc()
    keys = list(method.state_dict())
    names = loop.compile_method(method, "default")
    assert names == method.compiled_modules() and "model._dynamics" in names
    assert "9 modules of TDMPC compile at their first calls" in capsys.readouterr().err
    assert list(method.state_dict()) == keys  # checkpoints are those of an eager run
    # the 9 share forwards of few classes: their graphs must fit dynamo's cache, not overflow
    # into eager (8 per shared forward by default)
    assert torch._dynamo.config.recompile_limit >= 8 * len(names)
    for name in names:
        assert "forward" in vars(method.get_submodule(name)), name
    dynamics = method.get_submodule("model._dynamics")
    x = torch.randn(4, dynamics[0].in_features)
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    compiled = dynamics(x)
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == 1  # it did compile
    torch.testing.assert_close(compiled, type(dynamics).forward(dynamics, x))  # as eager


def test_a_method_naming_nothing_runs_eager_and_a_wrong_name_is_a_config_error(capsys):
    method = tdmpc()
    method.compiled_modules = lambda: []
    assert loop.compile_method(method, "default") == []
    assert "TDMPC names no modules to compile (Method.compiled_modules); it runs eager" in capsys.readouterr().err
    method.compiled_modules = lambda: ["model._nosuch"]
    with pytest.raises(ConfigError, match="names 'model._nosuch', which is not a submodule of TDMPC"):
        loop.compile_method(method, "default")
    assert loop.compile_method(method, "off") == []  # off looks at nothing


def test_compiling_says_so_and_counts_its_graphs(capsys, monkeypatch):
    """Compiling runs inside the first calls (minutes on a GPU) with no other output: a graph
    starting to compile ``every`` seconds after the last line gets one, and the counts total
    the graphs and seconds for the run's last line; the next run counts from zero."""
    method = tdmpc()
    progress = loop.COMPILE_PROGRESS
    monkeypatch.setattr(progress, "every", 0.0)
    torch._dynamo.reset()  # (which also drops dynamo's compile callbacks: compile_method adds them)
    loop.compile_method(method, "default")
    capsys.readouterr()
    dynamics = method.get_submodule("model._dynamics")
    dynamics(torch.randn(4, dynamics[0].in_features))
    lines = [line for line in capsys.readouterr().err.splitlines() if "run.compile: compiling" in line]
    assert lines[0].startswith("wmlab: run.compile: compiling graph "), lines
    assert lines[0].endswith("(0 compiled so far, 0 s)"), lines
    graphs = progress.graphs
    assert graphs >= 1 and progress.seconds > 0
    assert progress.summary() == f"{graphs} graphs compiled in {progress.seconds:.0f} s"
    monkeypatch.setattr(progress, "every", 1e9)  # a line at most every `every` seconds
    with torch.no_grad():  # another grad mode: another graph
        dynamics(torch.randn(4, dynamics[0].in_features))
    assert progress.graphs > graphs
    assert "run.compile: compiling" not in capsys.readouterr().err
    loop.compile_method(tdmpc(), "default")
    assert progress.graphs == 0 and progress.seconds == 0.0


def test_a_compiled_dreamer_trains():
    """Dreamer's actor and critic losses go backward twice through the critic's one compiled
    pass (retain_graph), which a compiled backward donating its buffers refuses."""
    from sequence_helpers import fit_once
    from test_dreamer import make_method, random_batch

    method = make_method("state", ["method.shared_critic=true"])
    loop.compile_method(method, "default")
    before = [p.detach().clone() for p in method.value.parameters()]
    fit_once(method, [random_batch(method) for _ in range(2)])
    assert any(not torch.equal(a, b) for a, b in zip(before, method.value.parameters()))


@pytest.mark.parametrize("mode", ["reduce-overhead", "max-autotune"])
def test_cuda_graph_modes_copy_outputs_out_of_the_graphs_memory(monkeypatch, mode):
    """A CUDA graph rewrites its outputs at the next replay: what leaves a compiled module in
    a CUDA-graph mode is a copy (on the GPU; here the CPU stands in), still differentiable."""
    returned = []

    def fake_compile(fn, mode=None):
        def run(*args, **kwargs):
            returned.append(fn(*args, **kwargs))
            return returned[-1]
        return run

    monkeypatch.setattr(loop.torch, "compile", fake_compile)
    monkeypatch.setattr(loop, "_GRAPH_DEVICES", ("cpu",))
    method = tdmpc()
    loop.compile_method(method, mode)
    dynamics = method.get_submodule("model._dynamics")
    x = torch.randn(4, dynamics[0].in_features, requires_grad=True)
    out = dynamics(x)
    assert out.data_ptr() != returned[-1].data_ptr()  # a copy, not the graph's memory
    torch.testing.assert_close(out, returned[-1])
    out.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    monkeypatch.setattr(loop, "_GRAPH_DEVICES", ("cuda",))
    assert dynamics(x).data_ptr() == returned[-1].data_ptr()  # CPU outputs pass as they are
    monkeypatch.setattr(loop, "_GRAPH_DEVICES", ("cpu",))  # (so that a copy would show)
    method = tdmpc()
    loop.compile_method(method, "default")  # no CUDA graphs: nothing copied
    dynamics = method.get_submodule("model._dynamics")
    assert dynamics(x).data_ptr() == returned[-1].data_ptr()
