"""What waits in full send buffers, over all of a process's connections, and the cap on it (VAE_MAX_UNSENT_BYTES).

A connection whose send buffer fills (its client reads slower than answers are made, or not at all) registers what
it holds; when the total passes the cap, the connections that have waited longest are dropped: clients that never
read are the ones left waiting, while those that read resume within moments. Freed answers go back to the
allocator, which keeps freed heap mapped; one `malloc_trim` after a burst of drops hands it to the operating system.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from ..engine.memory import release_freed_memory


class Connection(Protocol):
    def drop(self, why: str) -> None:
        """Close at once, freeing what waits in the send buffer."""


class Unsent:
    """The connections whose send buffer is full, oldest first, and the bytes each had waiting when it filled."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.waiting: dict[Connection, int] = {}  # insertion order: the longest waiting first
        self.total = 0
        self.trim_pending = False

    def add(self, connection: Connection, nbytes: int) -> None:
        self.remove(connection)
        self.waiting[connection] = nbytes
        self.total += nbytes
        while self.total > self.limit and len(self.waiting) > 1:  # one answer alone is bounded by its own limit
            oldest, held = next(iter(self.waiting.items()))
            why = (
                f"{held} bytes of answers unread while {self.total} waited on all connections "
                f"(VAE_MAX_UNSENT_BYTES is {self.limit})"
            )
            self.remove(oldest)
            oldest.drop(why)

    def remove(self, connection: Connection) -> None:
        self.total -= self.waiting.pop(connection, 0)

    def give_back_memory(self, loop: asyncio.AbstractEventLoop) -> None:
        """Dropped answers are freed, but the allocator keeps freed heap mapped: return it, once for a burst."""
        if not self.trim_pending:
            self.trim_pending = True
            loop.call_later(0.05, self._trim, loop)

    def _trim(self, loop: asyncio.AbstractEventLoop) -> None:
        self.trim_pending = False
        loop.run_in_executor(None, release_freed_memory)
