"""inference.huge_pages: large private memory collapsed into 2 MiB pages, data unchanged, failures reported."""

from __future__ import annotations

import mmap
import sys
from pathlib import Path

import numpy as np
import pytest

from inference.huge_pages import HUGE, _anon_huge_bytes, _large_private_rw, collapse_large_mappings

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="/proc and madvise: Linux only"
)


def _thp_mode() -> str:
    text = Path("/sys/kernel/mm/transparent_hugepage/enabled").read_text()
    return text[text.index("[") + 1 : text.index("]")]


def _private_block(n_bytes: int) -> tuple[mmap.mmap, np.ndarray]:
    """A private anonymous mapping (nobody asked for huge pages on it) filled with a pattern."""
    m = mmap.mmap(-1, n_bytes, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    arr = np.frombuffer(m, dtype=np.uint64)
    arr[:] = np.arange(len(arr), dtype=np.uint64) * np.uint64(2654435761)
    return m, arr


def test_large_private_mappings_are_found_and_trimmed_to_huge_page_bounds() -> None:
    m, arr = _private_block(32 * HUGE)
    lo = arr.ctypes.data
    spans = _large_private_rw(16 * HUGE)
    mine = [(a, b) for a, b in spans if a <= lo + HUGE and b >= lo + 30 * HUGE]
    assert mine, "the 64 MiB private mapping is not among the large ones"
    assert all(a % HUGE == 0 and b % HUGE == 0 and b > a for a, b in spans)
    assert not any(b - a < 16 * HUGE for a, b in spans)
    del arr
    m.close()


def test_collapse_keeps_the_data_and_adds_huge_pages_or_says_why_not() -> None:
    m, arr = _private_block(32 * HUGE)
    expected = arr.copy()
    rep = collapse_large_mappings(min_bytes=16 * HUGE)
    assert np.array_equal(arr, expected)
    assert rep.mappings >= 1 and rep.bytes_requested >= 30 * HUGE
    assert rep.huge_bytes_before >= 0 and rep.seconds >= 0
    if _thp_mode() == "never":
        assert rep.error is not None  # the kernel refused: reported, not raised
    else:
        assert rep.huge_bytes_after >= rep.huge_bytes_before + 16 * HUGE
        assert _anon_huge_bytes() >= rep.huge_bytes_before + 16 * HUGE
    del arr
    m.close()
