"""Host memory: let the C allocator keep freed memory for reuse (glibc only).

A training step on the CPU frees and reallocates the same activation-sized buffers (megabytes
each) every step.  glibc serves such sizes with fresh mmap'd pages that the kernel zero-fills
on first touch, and returns them at free, so every step pays page faults over all activations:
measured here, 40% of a small convnet's CPU step (MNIST convnet, batch 128: 4,955 → 7,235
examples/s on 2 cores).  Raising the mmap and trim thresholds keeps that memory in the heap.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3
_done = False


def retain_freed_memory(mmap_threshold: int = 32 << 20, trim_threshold: int = 1 << 30) -> bool:
    """Serve allocations below `mmap_threshold` bytes (glibc's maximum is 32 MiB) from the heap
    and keep up to `trim_threshold` bytes of freed heap; True when the allocator took it."""
    global _done
    if _done or not sys.platform.startswith("linux"):
        return _done
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    _done = bool(mallopt(_M_MMAP_THRESHOLD, mmap_threshold)) & bool(mallopt(_M_TRIM_THRESHOLD, trim_threshold)) \
        & bool(mallopt(_M_TOP_PAD, 64 << 20))
    return _done
