"""A large batch on the CPU, run as chunks on several threads at once.

Sessions on the CPU run with one intra-op thread and no spinning, so that they never compete with the event loop
or with the other server processes for cores; a batch large enough to be worth it (a 256-image /sample) is then
cut into chunks that run side by side, one session call each, so that one request still uses every core. On two
cores, 256 rows of the shipped vae's decoder ran at 1.2 times onnxruntime's default options (two intra-op threads,
spinning) this way, and concurrent requests lost nothing to spinning threads waiting for a core.

Chunks also bound a single call's rows (`max_rows`), and with them its activations' memory (which onnxruntime's
CPU memory arena, on by default, keeps resident).
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .runner import Feeds, Graph, Outputs, rows_of

MIN_CHUNK_ROWS = 32  # fewer rows are not worth a thread hop
MIN_CHUNK_SECONDS = 0.002  # nor is less work than this


class Splitter:
    """Runs a graph's batch whole, or as chunks on `threads` threads (this one and a pool of the others)."""

    def __init__(self, threads: int, max_rows: int) -> None:
        self.threads = max(1, threads)
        self.max_rows = max_rows
        self.pool = ThreadPoolExecutor(self.threads - 1, thread_name_prefix="chunk") if self.threads > 1 else None

    def chunks(self, rows: int, seconds_per_row: float | None) -> int:
        """How many chunks `rows` rows run as: enough to keep each call within `max_rows`, and as many as the
        threads when the work (known from the graph's earlier calls) is worth splitting."""
        needed = math.ceil(rows / self.max_rows)
        if seconds_per_row is None or rows < 2 * MIN_CHUNK_ROWS:
            return needed
        worth = min(self.threads, rows // MIN_CHUNK_ROWS, int(rows * seconds_per_row / MIN_CHUNK_SECONDS))
        return max(needed, worth)

    def run(self, graph: Graph, outputs: list[str], feeds: Feeds) -> Outputs:
        rows = rows_of(feeds)
        count = self.chunks(rows, graph.seconds_per_row)
        if count <= 1:
            return graph.run(outputs, feeds)
        bounds = np.linspace(0, rows, count + 1).round().astype(int).tolist()
        parts = [{n: a[start:stop] for n, a in feeds.items()} for start, stop in zip(bounds, bounds[1:], strict=False)]
        if self.pool is None:
            results = [graph.run(outputs, part) for part in parts]
        else:
            others = [self.pool.submit(graph.run, outputs, part) for part in parts[1:]]
            results = [graph.run(outputs, parts[0]), *(future.result() for future in others)]
        return [np.concatenate([result[i] for result in results]) for i in range(len(outputs))]

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
