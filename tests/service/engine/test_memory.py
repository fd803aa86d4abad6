"""memory.py: a few allocator arenas, and freed heap memory back to the OS after models load."""

import ctypes.util
import os
import subprocess
import sys

import numpy as np
import pytest

from service.engine.memory import release_freed_memory

GLIBC = "libc.so" in (ctypes.util.find_library("c") or "")


def _rss_mib() -> float:
    with open(f"/proc/{os.getpid()}/status") as status:
        return next(int(line.split()[1]) / 1024 for line in status if line.startswith("VmRSS:"))


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="resident memory is read from /proc")
def test_freed_small_blocks_are_returned_to_the_os():
    if not GLIBC:
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


# Eight threads, each holding a block from its first malloc until all have one: glibc gives each an arena of its
# own unless capped. malloc_stats() lists the arenas on stderr.
ARENAS = """
import ctypes, sys, threading
from service.engine.memory import limit_heap_arenas
print("capped here:", limit_heap_arenas(2), file=sys.stderr)
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
held = threading.Barrier(9)
def work():
    block = libc.malloc(1000)
    held.wait()
    held.wait()
    libc.free(ctypes.c_void_p(block))
threads = [threading.Thread(target=work) for _ in range(8)]
for thread in threads:
    thread.start()
held.wait()
libc.malloc_stats()
held.wait()
for thread in threads:
    thread.join()
"""


def _arenas(env: dict[str, str]) -> tuple[int, str]:
    done = subprocess.run([sys.executable, "-c", ARENAS], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stderr.count("Arena "), done.stderr.splitlines()[0]


@pytest.mark.skipif(not GLIBC, reason="the arena cap is glibc's")
def test_threads_share_a_few_arenas_unless_malloc_arena_max_says_otherwise():
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    assert _arenas(env) == (2, "capped here: True")
    arenas, said = _arenas({**env, "MALLOC_ARENA_MAX": "3"})  # the operator's own cap wins
    assert (arenas, said) == (3, "capped here: False")
