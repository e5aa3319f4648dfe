"""Back a server's large, long-lived memory with transparent huge pages once it is loaded.

The request path reads a few hundred scattered rows of gigabyte-sized arrays (the catalogue's
columns, the FAISS inverted lists, the ranker-input item block). With 4 KiB pages every such read
can miss the TLB as well as the cache; at 50 requests/s the servers sit idle between requests,
so those misses are paid on most requests. numpy asks for huge pages for its own large arrays,
but memory allocated by FAISS (C++), Arrow and glibc's heap does not. ``collapse_large_mappings``
asks the kernel to back every large private writable mapping with 2 MiB pages now
(``MADV_HUGEPAGE`` then ``MADV_COLLAPSE``, Linux 6.1+), after the bundle is loaded and before the
first request. It changes no data; where the kernel cannot (older kernel, THP disabled), the
call fails, nothing changes, and the report says so.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import time
from dataclasses import dataclass

MADV_HUGEPAGE = 14
MADV_COLLAPSE = 25
HUGE = 2 * 1024 * 1024


@dataclass
class CollapseReport:
    """What ``collapse_large_mappings`` did: mappings tried, mappings the kernel refused in part
    or whole, bytes asked for, ``AnonHugePages`` of the process before and after (bytes), seconds
    spent, the first refusal (None when none)."""

    mappings: int = 0
    refused: int = 0
    bytes_requested: int = 0
    huge_bytes_before: int = 0
    huge_bytes_after: int = 0
    seconds: float = 0.0
    error: str | None = None


def _anon_huge_bytes() -> int:
    with open("/proc/self/smaps_rollup") as fh:
        for line in fh:
            if line.startswith("AnonHugePages:"):
                return int(line.split()[1]) * 1024
    return 0


def _large_private_rw(min_bytes: int) -> list[tuple[int, int]]:
    """(start, end) of private writable anonymous or heap mappings of at least ``min_bytes``,
    trimmed inward to 2 MiB boundaries."""
    out = []
    with open("/proc/self/maps") as fh:
        for line in fh:
            f = line.split()
            perms = f[1]
            path = f[5] if len(f) > 5 else ""
            if not perms.startswith("rw") or perms[3] != "p" or path not in ("", "[heap]"):
                continue
            lo, hi = (int(x, 16) for x in f[0].split("-"))
            lo = (lo + HUGE - 1) // HUGE * HUGE
            hi = hi // HUGE * HUGE
            if hi - lo >= min_bytes:
                out.append((lo, hi))
    return out


def collapse_large_mappings(min_bytes: int = 8 * HUGE) -> CollapseReport:
    """Ask for 2 MiB pages over every large private writable mapping of this process (see the
    module docstring); never raises. Returns a ``CollapseReport``."""

    rep = CollapseReport()
    if not os.path.exists("/proc/self/maps"):
        rep.error = "no /proc (not Linux)"
        return rep
    t0 = time.perf_counter()
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    rep.huge_bytes_before = _anon_huge_bytes()
    for lo, hi in _large_private_rw(min_bytes):
        rep.mappings += 1
        rep.bytes_requested += hi - lo
        for advice in (MADV_HUGEPAGE, MADV_COLLAPSE):
            if libc.madvise(lo, hi - lo, advice) != 0:
                # EINVAL / EAGAIN / ENOMEM: this range (or part of it) stays on 4 KiB pages
                rep.refused += 1
                rep.error = (
                    rep.error or f"madvise({advice}) failed: {os.strerror(ctypes.get_errno())}"
                )
                break
    rep.huge_bytes_after = _anon_huge_bytes()
    rep.seconds = time.perf_counter() - t0
    return rep
