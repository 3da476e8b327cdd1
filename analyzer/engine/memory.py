"""The C allocator's settings for the engine's short-lived arrays (glibc only; a no-op elsewhere).

A round copies the rows it screens into arrays of a few MB each (accounts × assets), uses them and
frees them. glibc returns such blocks to the kernel as soon as they are freed (above its mmap
threshold, or when the heap's free top exceeds its trim threshold), so the next round's arrays
are fresh pages that the kernel must zero on first touch: at a million positions that page
faulting cost more than the arithmetic (a 6,000-row book copy: 7 ms, 1.2 ms from kept memory).
:func:`keep_freed_memory` raises both thresholds (``mallopt(M_MMAP_THRESHOLD)`` and
``mallopt(M_TRIM_THRESHOLD)``, glibc's malloc(3)), so freed blocks stay in the process's heap
and are reused; memory the process no longer uses is kept up to ``TRIM_THRESHOLD_BYTES``.
"""

from __future__ import annotations

import ctypes
import ctypes.util

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3       # glibc malloc.h
MMAP_THRESHOLD_BYTES = 32 * 1024 * 1024           # glibc's largest dynamic threshold (DEFAULT_MMAP_THRESHOLD_MAX)
TRIM_THRESHOLD_BYTES = 1024 * 1024 * 1024

_done = False


def keep_freed_memory() -> bool:
    """Set the thresholds once per process; whether they were set (False off glibc)."""
    global _done
    if _done:
        return True
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    _done = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)) and bool(mallopt(M_TRIM_THRESHOLD,
                                                                                  TRIM_THRESHOLD_BYTES))
    return _done
