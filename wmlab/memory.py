"""Host memory: keep what large tensors free for the next ones (``run.reuse_memory``).

glibc's ``malloc`` serves every block above its mmap threshold (at most 32 MiB) with a fresh
``mmap`` and hands it back to the kernel with ``munmap`` when it is freed. A convolutional
update allocates and frees tensors of hundreds of MiB (Dreamer's first conv layer gives
2,500 images x 32 x 31 x 31 floats, 300 MiB), so each of them faults in and zeroes fresh
pages at every allocation: on a CPU that costs about as much as the convolution itself.
With mmap off and the heap never trimmed, freed blocks stay in the process and the next
tensor of that size reuses them. The process's resident memory then stays near its peak.
"""

from __future__ import annotations

import ctypes
import platform

#: glibc's ``mallopt`` parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
#: the same setting through glibc's environment variables, for a process that cannot call
#: :func:`reuse_freed_memory` itself (read when it starts; e.g. a baseline library's)
ENVIRONMENT = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": str(2**62)}


def reuse_freed_memory() -> bool:
    """Ask glibc's allocator, for the whole process from now on, to serve large blocks from its
    heap (no mmap) and never return freed heap to the kernel (no trim). True when applied;
    False where the C library is not glibc (the allocator is left as it is)."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    # a trim threshold of -1 turns trimming off (mallopt(3))
    return bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, -1))
