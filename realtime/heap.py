"""Keep freed memory inside the process on the CPU, so frames do not page-fault (glibc only).

Why: glibc's malloc returns large blocks to the kernel when they are freed (``mmap`` for
blocks over its threshold, and trimming the top of the heap). A network on the CPU allocates
and frees the same tens of megabytes of activations every frame, so each frame touched fresh
pages: measured on the 2-core development VM with ``microast-tc`` in eager fp32, 220-280
thousand page faults a frame at 1280x720 and 10-18 thousand at 384x384 in some runs, none once
freed memory stays (BENCHMARKS.md, "Keeping freed memory"). onnxruntime keeps its own arena
and was not affected. The cost: memory freed is kept for the life of the process, in every
heap that held it (glibc gives each thread that allocates its own arena: torch's workers
included), so resident memory stays at the peak instead of falling between frames; measured
flat over mixed frame sizes (BENCHMARKS.md). It is process-wide and cannot be undone; a
``Stylizer`` on the CPU applies it (the product runs its networks through one).

``keep_freed_memory()`` sets glibc's ``M_MMAP_MAX`` to 0 (no block is ever ``mmap``-ed) and
``M_TRIM_THRESHOLD`` to its largest value (the heap top is never trimmed); once per process,
effective for allocations from then on. Elsewhere (macOS, Windows, musl) it does nothing.
``RTSTYLE_KEEP_MEMORY=0`` (or ``off``, ``false``, ``no``) in the environment turns it off.
"""
from __future__ import annotations

import ctypes
import logging
import os
import platform
import sys

log = logging.getLogger(__name__)

M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4  # glibc's malloc.h
_state: str | None = None  # what keep_freed_memory() did, for `rtstyle doctor`


def keep_freed_memory() -> str:
    """Apply the setting (module docstring) once -> what was done, for people."""
    global _state
    if _state is None:
        _state = _apply()
        log.debug("heap: %s", _state)
    return _state


def status() -> str:
    """What ``keep_freed_memory()`` did in this process, or would do."""
    return _state or _why_not() or ("freed memory will be kept once a network runs on the CPU "
                                     "(glibc; RTSTYLE_KEEP_MEMORY=0 turns it off)")


def _why_not() -> str | None:
    value = os.environ.get("RTSTYLE_KEEP_MEMORY", "1")
    if value.strip().lower() in ("0", "off", "false", "no"):
        return f"off: RTSTYLE_KEEP_MEMORY={value}"
    if not sys.platform.startswith("linux"):
        return f"not applicable on {sys.platform}"
    libc = platform.libc_ver()[0]
    if libc != "glibc":
        return f"not applicable: the C library is {libc or 'unknown'}, not glibc"
    return None


def _apply() -> str:
    why = _why_not()
    if why:
        return why
    libc = ctypes.CDLL(None)  # the process's own symbols: glibc's mallopt
    libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    if libc.mallopt(M_MMAP_MAX, 0) != 1 or libc.mallopt(M_TRIM_THRESHOLD, 2**31 - 1) != 1:
        return "not applied: glibc's mallopt refused"
    return "freed memory is kept (glibc: no mmap-ed blocks, no trimming)"
