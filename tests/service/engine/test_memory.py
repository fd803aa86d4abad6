"""memory.py: freed heap memory goes back to the OS after models load."""

import ctypes.util
import os

import numpy as np
import pytest

from service.engine.memory import release_freed_memory


def _rss_mib() -> float:
    with open(f"/proc/{os.getpid()}/status") as status:
        return next(int(line.split()[1]) / 1024 for line in status if line.startswith("VmRSS:"))


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="resident memory is read from /proc")
def test_freed_small_blocks_are_returned_to_the_os():
    if "libc.so" not in (ctypes.util.find_library("c") or ""):
        release_freed_memory()  # off glibc: a no-op, not an error
        pytest.skip("glibc's malloc_trim is what returns the memory")
    # Many small blocks come from the heap (not from mmap, which is returned on free): freed, they stay resident.
    blocks = [np.ones(2000, np.float64) for _ in range(20_000)]  # about 300 MiB in 16 KiB blocks
    keep = blocks[-1]  # one live block at the top keeps the heap from shrinking on its own
    del blocks
    before = _rss_mib()
    assert release_freed_memory() is True
    after = _rss_mib()
    assert before - after > 100, (before, after)
    assert keep.sum() == 2000
