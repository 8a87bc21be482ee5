"""The process's allocator, tuned for large NumPy temporaries: an explicit, process-wide opt-in.

Input: nothing (the C library the process runs on). Output: glibc's ``malloc`` keeps
freed blocks of up to :data:`LIMIT` bytes for reuse instead of handing them back to the
kernel; whether that is now so.

Why: the mesher allocates and drops arrays of tens of megabytes many times per call (a
million crossings' points are 24 MiB). glibc serves large blocks with ``mmap`` and
returns them with ``munmap`` on ``free`` (its threshold adapts only up to 32 MiB), and
trims freed space at the top of its heap back to the kernel too, so new arrays fault their
pages in again, and the kernel zeroes them (huge pages, which NumPy asks for, make each
fault dearer). A 512³ mesh of colonnade spent 0.8–1.2 s of its 3.9–5.1 s in the kernel
that way, and 0.01–0.14 s of 3.1–4.0 s with this setting (``experiments/allocator.py``,
``experiments/RESULTS.md``); 2-D renders and heightmaps allocate little and do not change.

Cost: a process keeps up to its peak of freed memory (and at most :data:`LIMIT` of free
space at the top of its heap) instead of returning it. Nothing computed changes. The CLI
turns it on for every command; a library user calls :func:`reuse_freed_memory` (once;
later calls change nothing). Other C libraries (musl, macOS) are left alone: it returns
False there. glibc's own environment variables (``MALLOC_MMAP_THRESHOLD_``) do the same
before a process starts.
"""

from __future__ import annotations

import ctypes
import functools
import math
import sys
from collections.abc import Callable

import numpy as np
from numpy.typing import DTypeLike

#: Freed blocks up to this size are kept for reuse (1 GiB).
LIMIT = 1 << 30
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt's parameter numbers (malloc.h)


@functools.cache
def reuse_freed_memory() -> bool:
    """Have glibc keep freed blocks up to :data:`LIMIT` bytes for reuse (module docstring);
    whether it does. Process-wide and not undone."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # no mallopt in this process's C library
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, LIMIT) and mallopt(_M_TRIM_THRESHOLD, LIMIT))


#: The alignment at which XLA:CPU takes a host array as it is (a NumPy array is only
#: 16-byte aligned: JAX copies it into a buffer of its own when a kernel is called).
ALIGNMENT = 64


def aligned_zeros(shape: int | tuple[int, ...], dtype: DTypeLike) -> np.ndarray:
    """Zeros of ``shape`` and ``dtype`` starting at an :data:`ALIGNMENT`-byte boundary: a
    kernel argument JAX hands to XLA:CPU without copying it (a leaf call's 1.4 MB of
    arguments dispatched in ~75 µs, not ~160 µs: experiments/RESULTS.md)."""
    return _aligned(shape, dtype, np.zeros)


def aligned_empty(shape: int | tuple[int, ...], dtype: DTypeLike) -> np.ndarray:
    """:func:`aligned_zeros` without the zeros: for arrays whose elements are all written,
    or whose unwritten ones nothing reads (a kernel call's padding)."""
    return _aligned(shape, dtype, np.empty)


def _aligned(
    shape: int | tuple[int, ...], dtype: DTypeLike, make: Callable[..., np.ndarray]
) -> np.ndarray:
    """An array of ``shape`` and ``dtype`` at an :data:`ALIGNMENT`-byte boundary, cut from
    a byte buffer ``make`` gives (``np.zeros`` or ``np.empty``)."""
    dtype = np.dtype(dtype)
    # math.prod, not np.prod: ~7 µs a call, half the helper's time (a frame makes hundreds).
    size = math.prod(shape if isinstance(shape, tuple) else (shape,)) * dtype.itemsize
    raw = make(size + ALIGNMENT, np.uint8)
    start = -raw.ctypes.data % ALIGNMENT
    out: np.ndarray = raw[start : start + size].view(dtype).reshape(shape)
    return out
