"""``run.reuse_memory``: large tensors reuse freed host memory instead of faulting in fresh pages."""

import platform
import subprocess
import sys
import textwrap

import pytest

from wmlab.config import compose
from wmlab import registry

#: page faults per 64 MiB tensor once the allocator has settled, printed by a fresh process
PROBE = textwrap.dedent("""
    import resource, sys, torch
    from wmlab.memory import reuse_freed_memory
    applied = reuse_freed_memory() if sys.argv[1] == "reuse" else False
    def faults():
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(20):  # glibc's heap settles after a few aligned blocks of one size
        torch.ones(2**24)
    before = faults()
    for _ in range(5):
        torch.ones(2**24)
    print(applied, (faults() - before) / 5)
""")


def faults_per_tensor(mode: str) -> tuple[bool, float]:
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True)
    applied, faults = out.stdout.split()
    return applied == "True", float(faults)


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
                    reason="the setting is glibc's")
def test_reused_memory_faults_in_no_fresh_pages():
    applied, reused = faults_per_tensor("reuse")
    _, plain = faults_per_tensor("plain")
    pages = 2**26 // 4096
    assert applied
    assert plain > pages / 2, plain  # glibc's default: each 64 MiB tensor is mapped afresh
    assert reused < pages / 100, reused


def test_reuse_memory_is_off_by_default_and_can_be_turned_on():
    cls, _ = registry.load_method("tdmpc")
    assert compose("tdmpc", cls, "cartpole-swingup").run.reuse_memory is False
    cfg = compose("tdmpc", cls, "cartpole-swingup", overrides=["run.reuse_memory=true"])
    assert cfg.run.reuse_memory is True
