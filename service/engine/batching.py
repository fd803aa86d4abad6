"""Micro-batching per graph: jobs from concurrent requests reach onnxruntime as one call, from one worker thread.

Requests queue their jobs (service/engine/runner.py) and wait on a future. The first job to find the graph idle
starts a drain loop on a worker thread: it takes up to `max_rows` rows of queued jobs that want the same outputs
from the same inputs, makes their feeds (decoding their uploads: one pass per batch), concatenates them, runs the
session once, finishes each job on its rows (rendering its response), and hands every result back to the event
loop in one call; then it takes the next batch, until the queue is empty. Per request the event loop only queues a
job and resolves a future; per batch it is woken once.

Scheduling follows Triton's dynamic batcher: a batch goes at once when the graph is idle; while it is busy, jobs
gather until the batch is full or the oldest has waited `max_delay`. A job larger than `max_rows` runs alone: on the
CPU as one call, on a GPU provider split and padded to the warmed bucket sizes (powers of two, and `max_rows`), so
that no request meets a shape for the first time. The queue is bounded (`capacity` requests: 503 past it) and a
request still queued at its deadline is dropped with a 503.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from concurrent.futures import Executor
from typing import Any, TypeVar

import numpy as np

from .. import tracing
from ..errors import DeadlineExceeded, Overloaded
from ..graph_stats import GraphStats
from ..settings import BatchingSettings
from .runner import Done, Feeds, Graph, Job, OnGraph, Outputs, deliver, finish, make_feeds, rows_of
from .split import Splitter

log = logging.getLogger(__name__)
T = TypeVar("T")


def bucket_sizes(max_rows: int) -> tuple[int, ...]:
    """Every batch size the batcher runs on a GPU: the powers of two below `max_rows`, and `max_rows` itself."""
    return (*(1 << i for i in range(max_rows.bit_length()) if 1 << i < max_rows), max_rows)


def bucket_for(rows: int, max_rows: int) -> int:
    """The smallest bucket that holds `rows` (1 <= rows <= max_rows)."""
    return min(1 << (rows - 1).bit_length(), max_rows)


def _key(job: Job[Any]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Jobs with equal keys may share a call: the same outputs from the same inputs (shapes are checked later)."""
    names = job.feeds.keys() if isinstance(job.feeds, dict) else job.names
    return tuple(job.outputs), tuple(sorted(names))


class _Queued:
    """A job waiting in the queue; its key is worked out by the drain loop, off the event loop."""

    __slots__ = ("job", "future", "arrival", "key", "trace")

    def __init__(self, job: Job[Any], future: asyncio.Future[Any], arrival: float) -> None:
        self.job = job
        self.future = future
        self.arrival = arrival  # time.monotonic()
        self.key: tuple[tuple[str, ...], tuple[str, ...]] | None = None
        self.trace = tracing.current()  # the request's trace context, when tracing is on


class MicroBatcher(OnGraph):
    """A `Runner` that queues jobs for one graph and runs them as combined batches (see the module's docstring)."""

    def __init__(
        self,
        session: Graph,
        executor: Executor,
        settings: BatchingSettings,
        *,
        splitter: Splitter | None,
        stats: GraphStats | None = None,
    ) -> None:
        super().__init__(session)
        self.stats = stats
        self.executor = executor
        self.max_rows = settings.max_batch_rows
        self.max_delay = settings.max_batch_delay_ms / 1000
        self.capacity = settings.queue_capacity  # requests waiting
        self.deadline = settings.request_deadline_ms / 1000
        # On a GPU provider every call keeps to the warmed bucket shapes (a new shape costs cuDNN's search); the
        # CPU provider meets a new shape for a few ms once, so there batches run at their own size, unpadded, a
        # large one split across threads (service/engine/split.py).
        self.splitter = splitter
        self._lock = threading.Lock()
        self._more = threading.Condition(self._lock)  # a filling batch is woken when the rows reach a full batch
        self._queue: deque[_Queued] = deque()
        self._rows = 0  # rows queued
        self._draining = False  # a drain loop owns the graph
        self._running = 0  # batches inside onnxruntime
        self._closed = False
        self._watchdog: asyncio.TimerHandle | None = None  # drops queued requests at their deadline
        self._watchdog_loop: asyncio.AbstractEventLoop | None = None

    @property
    def batch_sizes(self) -> tuple[int, ...]:
        """Every row count onnxruntime sees from this batcher on a GPU (warm-up runs each one there)."""
        return bucket_sizes(self.max_rows)

    @property
    def waiting(self) -> int:
        """Requests still queued (what the capacity bounds)."""
        return len(self._queue)

    @property
    def running(self) -> int:
        """Batches inside onnxruntime now."""
        return self._running

    async def run(self, job: Job[T]) -> T:
        """Queue `job`, wait for the batch that runs it, return its result (or raise its error)."""
        loop = asyncio.get_running_loop()
        queued = _Queued(job, loop.create_future(), time.monotonic())
        with self._lock:
            if self._closed:
                raise Overloaded("the service is stopping; retry on another instance")
            if len(self._queue) >= self.capacity:
                raise Overloaded(
                    f"{self._where} has {len(self._queue)} requests queued, its capacity "
                    f"(VAE_QUEUE_CAPACITY={self.capacity}); the service is saturated, retry after the Retry-After delay"
                )
            self._queue.append(queued)
            self._rows += job.rows
            start = not self._draining
            if start:
                self._draining = True
            elif self._rows >= self.max_rows:
                self._more.notify()
        if start:  # the graph was idle: this request's job goes at once, from a drain loop on a worker thread
            try:
                self.executor.submit(self._drain)
            except RuntimeError:  # the executor has shut down: the service is stopping
                with self._lock:
                    self._draining = False
                raise Overloaded("the service is stopping; retry on another instance") from None
        elif self._watchdog is None or self._watchdog_loop is not loop:  # none yet, or one left on an earlier loop
            self._arm(loop)
        try:
            return await queued.future
        finally:
            queued.future.cancel()  # no-op when done; a cancelled job is skipped by the drain loop

    async def close(self) -> None:
        """Refuse new jobs; queued ones fail with 503 (the service is stopping); a running batch finishes."""
        with self._lock:
            self._closed = True
            dropped, self._queue = self._queue, deque()
            self._rows = 0
        for queued in dropped:
            if not queued.future.done():
                queued.future.set_exception(Overloaded("the service is stopping; retry on another instance"))
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None

    # --- the deadline, on the event loop ---------------------------------------------------------------------

    @property
    def _where(self) -> str:
        return f"model {self.session.model!r} graph {self.session.graph!r}"

    def _arm(self, loop: asyncio.AbstractEventLoop) -> None:
        """One timer for the oldest queued request's deadline (not one per request)."""
        with self._lock:
            oldest = self._queue[0].arrival if self._queue else None
        if oldest is not None:
            self._watchdog = loop.call_later(max(0.0, oldest + self.deadline - time.monotonic()), self._expire, loop)
            self._watchdog_loop = loop

    def _expire(self, loop: asyncio.AbstractEventLoop) -> None:
        self._watchdog = None
        now = time.monotonic()
        late: list[_Queued] = []
        with self._lock:
            while self._queue and self._queue[0].arrival + self.deadline <= now:  # the queue is in arrival order
                queued = self._queue.popleft()
                self._rows -= queued.job.rows
                late.append(queued)
        for queued in late:
            if not queued.future.done():
                waited = 1000 * (now - queued.arrival)
                queued.future.set_exception(
                    DeadlineExceeded(
                        f"request waited {waited:.0f} ms in the queue of {self._where} without running, past its "
                        f"deadline (VAE_REQUEST_DEADLINE_MS={1000 * self.deadline:g}); the service is overloaded, "
                        "retry shortly"
                    )
                )
        self._arm(loop)

    # --- the drain loop, on a worker thread -------------------------------------------------------------------

    def _drain(self) -> None:
        busy = False  # a batch ran just before: the next may wait to fill
        try:
            while True:
                with self._lock:
                    if busy:
                        self._fill()
                    batch = self._take()
                    if not batch:
                        self._draining = False
                        return
                    self._running = 1
                try:
                    results = self._run(batch, time.monotonic())
                finally:
                    self._running = 0
                _send(results)
                busy = True
        except BaseException:  # a defect here: the graph must not stay owned
            log.exception("the batcher of %s stopped", self._where)
            with self._lock:
                self._draining = False
            raise

    def _fill(self) -> None:
        """Wait (lock held) until the queue holds a full batch or its oldest job has waited `max_delay`."""
        while self._queue and self._rows < self.max_rows:
            remaining = self._queue[0].arrival + self.max_delay - time.monotonic()
            if remaining <= 0:
                return
            self._more.wait(remaining)

    def _take(self) -> list[_Queued]:
        """Up to `max_rows` rows of jobs sharing the first live job's key (lock held); a larger job goes alone."""
        batch: list[_Queued] = []
        kept: deque[_Queued] = deque()
        rows = 0
        while self._queue and rows < self.max_rows:
            queued = self._queue.popleft()
            if queued.future.done():  # its request gave up (deadline, shutdown)
                self._rows -= queued.job.rows
                continue
            if queued.key is None:
                queued.key = _key(queued.job)
            if batch and (queued.key != batch[0].key or rows + queued.job.rows > self.max_rows):
                kept.append(queued)
                continue
            batch.append(queued)
            rows += queued.job.rows
            self._rows -= queued.job.rows
        kept.extend(self._queue)
        self._queue = kept
        return batch

    def _run(self, batch: list[_Queued], taken: float) -> list[tuple[asyncio.Future[Any], Done[Any]]]:
        """Feeds, one session call per group of jobs whose arrays can be concatenated, and each job's finish."""
        results: list[tuple[asyncio.Future[Any], Done[Any]]] = []
        groups: dict[tuple[tuple[str, tuple[int, ...], str], ...], list[tuple[_Queued, Feeds]]] = {}
        started = time.perf_counter()
        made = make_feeds([queued.job for queued in batch])
        decoded = time.perf_counter()
        compute = 0.0
        for queued, feeds in zip(batch, made, strict=True):
            if isinstance(feeds, Exception):  # a bad upload fails its own request only
                results.append((queued.future, Done(error=feeds)))
                continue
            signature = tuple((n, a.shape[1:], a.dtype.str) for n, a in sorted(feeds.items()))
            groups.setdefault(signature, []).append((queued, feeds))
        for group in groups.values():
            outputs_wanted = group[0][0].job.outputs
            feeds = (
                group[0][1] if len(group) == 1 else {n: np.concatenate([f[n] for _, f in group]) for n in group[0][1]}
            )
            before = time.perf_counter()
            try:
                outputs = self._forward(outputs_wanted, feeds)
            except Exception as e:  # onnxruntime failed: every request of the call gets the error
                results += [(queued.future, Done(error=e)) for queued, _ in group]
                continue
            finally:
                compute += time.perf_counter() - before
            start = 0
            for queued, own in group:
                rows = rows_of(own)
                part = outputs if len(group) == 1 else [o[start : start + rows] for o in outputs]
                results.append((queued.future, finish(queued.job, own, part)))
                start += rows
        ended = time.perf_counter()
        if self.stats is not None:
            failed = sum(1 for _, done in results if done.error is not None)
            waits = [taken - queued.arrival for queued in batch]
            self.stats.record_batch(waits, failed, decoded - started, compute, ended - decoded - compute)
        if tracing.TRACER is not None:  # stage marks on the monotonic clock of the arrivals
            fed = taken + (decoded - started)
            marks = (fed, fed + compute, taken + (ended - started))
            for queued in batch:
                tracing.record_stages(queued.trace, self.session.graph, (queued.arrival, taken, *marks))
        return results

    def _forward(self, outputs: list[str], feeds: Feeds) -> Outputs:
        """One call of the concatenated rows; on a GPU, warmed bucket shapes only (padded, or split and padded)."""
        rows = rows_of(feeds)
        if self.splitter is not None:
            return self.splitter.run(self.session, outputs, feeds)
        if rows == 0:
            return self.session.run(outputs, feeds)
        parts = []
        for start in range(0, rows, self.max_rows):
            chunk = {n: a[start : start + self.max_rows] for n, a in feeds.items()}
            real = min(self.max_rows, rows - start)
            size = bucket_for(real, self.max_rows)
            if size != real:  # zero rows up to the bucket (label 0 is a valid class)
                chunk = {
                    n: np.concatenate([a, np.zeros((size - real, *a.shape[1:]), a.dtype)]) for n, a in chunk.items()
                }
            parts.append([o[:real] for o in self.session.run(outputs, chunk, real)])
        if len(parts) == 1:
            return parts[0]
        return [np.concatenate([p[i] for p in parts]) for i in range(len(outputs))]


def _send(results: list[tuple[asyncio.Future[Any], Done[Any]]]) -> None:
    """Hand each result to the event loop its request waits on (one call per loop; the service runs one)."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], Done[Any]]]] = {}
    for future, done in results:
        by_loop.setdefault(future.get_loop(), []).append((future, done))
    for loop, part in by_loop.items():
        try:
            loop.call_soon_threadsafe(deliver, part)
        except RuntimeError:  # that loop has closed: its requests are gone; the others still get their results
            log.warning("%d result(s) for an event loop that has closed were dropped", len(part))
