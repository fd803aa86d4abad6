"""Micro-batching per graph: rows from concurrent requests reach onnxruntime as one call.

A request's feeds ({name: [N, ...]}) are cut into chunks of at most `max_rows` rows and queued. One dispatcher
task per graph takes chunks off the queue in arrival order, concatenates those that share input names, trailing
shapes, dtypes and requested outputs (up to `max_rows` rows), pads the batch with zero rows to a bucket size
(powers of two, and `max_rows` itself, so warm-up can run every shape that occurs), runs it, and slices each
chunk's rows back out. Scheduling follows Triton's dynamic batcher: a batch goes at once when the graph is idle;
while it is busy, waiting chunks gather until the batch is full or the oldest has waited `max_delay` seconds.

When the graph is idle and nothing is queued, a request does not go through the queue at all: it runs at once,
from its own task, all its chunks in one worker-thread hop (`_run_now`). The queue, the dispatcher task and a
task per batch cost more than a null graph's run; they are paid only when there is something to batch with.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass

import numpy as np

from .errors import DeadlineExceeded, Overloaded
from .providers import GPU_PROVIDERS
from .runner import Feeds, GraphRunner

# (outputs, ((input name, trailing shape, dtype), ...)): chunks with equal keys can be concatenated.
Key = tuple[tuple[str, ...], tuple[tuple[str, tuple[int, ...], str], ...]]


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def bucket_sizes(max_rows: int) -> tuple[int, ...]:
    """Every batch size the batcher runs: the powers of two below `max_rows`, and `max_rows` itself."""
    return (*(1 << i for i in range(max_rows.bit_length()) if 1 << i < max_rows), max_rows)


def bucket_for(rows: int, max_rows: int) -> int:
    """The smallest bucket that holds `rows` (1 <= rows <= max_rows)."""
    return min(1 << (rows - 1).bit_length(), max_rows)


@dataclass(eq=False)
class _Request:
    arrival: float  # time.monotonic()
    deadline: float  # chunks still queued after this are dropped
    queued: int  # its chunks still in the queue
    counted: bool = True  # still counts against the queue's capacity


@dataclass(eq=False)
class _Chunk:
    request: _Request
    key: Key
    outputs: list[str]
    feeds: Feeds  # every array [rows, ...]
    rows: int
    future: asyncio.Future[list[np.ndarray]]


class _LoopState:
    """The queue and its dispatcher, bound to the event loop that created them."""

    def __init__(self, loop: asyncio.AbstractEventLoop, max_in_flight: int) -> None:
        self.loop = loop
        self.queue: deque[_Chunk] = deque()
        self.waiting = 0  # requests with chunks in the queue
        self.rows = 0  # rows in the queue
        self.filled: asyncio.Future[None] | None = None  # set once `rows` reaches a full batch, while one waits
        self.running = 0  # batches inside onnxruntime
        self.arrived = asyncio.Event()
        self.slots = asyncio.Semaphore(max_in_flight)
        self.dispatcher: asyncio.Task[None] | None = None
        self.batches: set[asyncio.Task[None]] = set()


class MicroBatcher:
    """A `Runner` that queues requests for one graph and runs them as combined batches on a `GraphRunner`."""

    def __init__(
        self,
        runner: GraphRunner,
        *,
        max_rows: int,
        max_delay: float,
        capacity: int,
        deadline: float,
        max_in_flight: int = 1,
    ) -> None:
        self.runner = runner
        self.max_rows = max_rows
        self.max_delay = max_delay  # seconds
        self.capacity = capacity  # requests waiting
        self.deadline = deadline  # seconds
        self.max_in_flight = max_in_flight  # batches of this graph running at once
        self._state: _LoopState | None = None
        # An idle graph on a CPU provider runs a request past `max_rows` as one call (`_run_now`).
        self.whole_requests = runner.providers[0] not in GPU_PROVIDERS

    @property
    def providers(self) -> list[str]:
        return self.runner.providers

    @property
    def batch_sizes(self) -> tuple[int, ...]:
        """Every row count onnxruntime sees from this batcher (warm-up runs each one)."""
        return bucket_sizes(self.max_rows)

    @property
    def waiting(self) -> int:
        """Requests with rows still queued (what the capacity bounds)."""
        return self._state.waiting if self._state else 0

    @property
    def running(self) -> int:
        """Batches inside onnxruntime now."""
        return self._state.running if self._state else 0

    def run_sync(self, outputs: list[str], feeds: Feeds) -> list[np.ndarray]:
        """Blocking, unbatched run; for warm-up only."""
        return self.runner.run_sync(outputs, feeds)

    async def __call__(self, outputs: list[str], feeds: Feeds) -> list[np.ndarray]:
        """Queue `feeds` (batch axis first), wait for the batches that carry its rows, return `outputs` in order."""
        rows = next(iter(feeds.values())).shape[0]
        if rows == 0:
            return await self.runner(outputs, feeds)
        state = self._loop_state()
        if not state.queue and not state.slots.locked():  # idle: nothing to wait for, nothing to batch with
            return await self._run_now(state, outputs, feeds, rows)
        if state.waiting >= self.capacity:
            raise Overloaded(
                f"{self._where} has {state.waiting} requests queued, its capacity "
                f"(VAE_QUEUE_CAPACITY={self.capacity}); the service is saturated, retry after the Retry-After delay"
            )
        now = time.monotonic()
        request = _Request(arrival=now, deadline=now + self.deadline, queued=0)
        key: Key = (tuple(outputs), tuple((n, a.shape[1:], a.dtype.str) for n, a in sorted(feeds.items())))
        chunks = [
            _Chunk(
                request,
                key,
                outputs,
                {n: a[start : start + self.max_rows] for n, a in feeds.items()},
                min(self.max_rows, rows - start),
                state.loop.create_future(),
            )
            for start in range(0, rows, self.max_rows)
        ]
        request.queued = len(chunks)
        state.waiting += 1
        state.rows += rows
        if not state.queue:
            state.arrived.set()  # the dispatcher waits for this only while the queue is empty
        state.queue.extend(chunks)
        if state.filled is not None and state.rows >= self.max_rows and not state.filled.done():
            state.filled.set_result(None)
        futures = [c.future for c in chunks]
        # One timer for the deadline rather than asyncio.wait(timeout=...), which costs a waiter and a callback
        # per future: a request with chunks still queued at its deadline fails with 503.
        timer = state.loop.call_later(self.deadline, self._expire, request, futures)
        try:
            results = [await f for f in futures]
        finally:
            timer.cancel()
            for f in futures:
                f.cancel()  # no-op when done; a cancelled chunk is skipped by the dispatcher
            self._release(state, request)
        if len(results) == 1:
            return results[0]
        return [np.concatenate(parts) for parts in zip(*results, strict=True)]

    async def close(self) -> None:
        """Stop the dispatcher; queued requests fail with 503 (the service is stopping)."""
        state, self._state = self._state, None
        if state is None or state.loop is not asyncio.get_running_loop():
            return
        for chunk in state.queue:
            if not chunk.future.done():
                chunk.future.set_exception(Overloaded("the service is stopping; retry on another instance"))
        state.queue.clear()
        if state.dispatcher is not None:
            state.dispatcher.cancel()
            await asyncio.gather(state.dispatcher, return_exceptions=True)

    # --- inside the event loop ----------------------------------------------------------------------------

    def _loop_state(self) -> _LoopState:
        loop = asyncio.get_running_loop()
        if self._state is None or self._state.loop is not loop:  # first call, or a new loop (tests)
            self._state = _LoopState(loop, self.max_in_flight)
        state = self._state
        if state.dispatcher is None or state.dispatcher.done():
            state.dispatcher = loop.create_task(self._dispatch(state), name=f"batcher-{self.runner.graph}")
        return state

    @property
    def _where(self) -> str:
        return f"model {self.runner.model!r} graph {self.runner.graph!r}"

    def _expire(self, request: _Request, futures: list[asyncio.Future[list[np.ndarray]]]) -> None:
        if request.queued:  # rows not yet running; those running finish, but the request has failed
            error = self._late(request, self._where)
            for f in futures:
                if not f.done():
                    f.set_exception(error)

    def _late(self, request: _Request, where: str) -> DeadlineExceeded:
        waited = 1000 * (time.monotonic() - request.arrival)
        return DeadlineExceeded(
            f"request waited {waited:.0f} ms in the queue of {where} without running, past its deadline "
            f"(VAE_REQUEST_DEADLINE_MS={1000 * self.deadline:g}); the service is overloaded, retry shortly"
        )

    @staticmethod
    def _release(state: _LoopState, request: _Request) -> None:
        if request.counted:
            request.counted = False
            state.waiting -= 1

    async def _dispatch(self, state: _LoopState) -> None:
        while True:
            while not state.queue:
                state.arrived.clear()
                await state.arrived.wait()
            busy = state.slots.locked()
            await state.slots.acquire()
            if busy:  # chunks gathered while the graph ran: let the batch fill, within the delay
                await self._fill(state)
            batch = self._take(state)
            if not batch:
                state.slots.release()
                continue
            state.running += 1
            task = state.loop.create_task(self._run(state, batch))
            state.batches.add(task)
            task.add_done_callback(state.batches.discard)

    async def _fill(self, state: _LoopState) -> None:
        # One wait until the queue holds a full batch or the oldest chunk's delay is over; arrivals do not wake it
        # one by one (`__call__` resolves `filled` when the rows reach a batch).
        while state.queue and state.rows < self.max_rows:
            remaining = state.queue[0].request.arrival + self.max_delay - time.monotonic()
            if remaining <= 0:
                return
            filled = state.filled = state.loop.create_future()
            timer = state.loop.call_later(remaining, _resolve, filled)
            try:
                await filled
            finally:
                timer.cancel()
                state.filled = None

    def _take(self, state: _LoopState) -> list[_Chunk]:
        """Up to `max_rows` rows of chunks sharing the first live chunk's key; expired chunks are dropped."""
        now = time.monotonic()
        batch: list[_Chunk] = []
        kept: deque[_Chunk] = deque()
        rows = 0
        while state.queue and rows < self.max_rows:
            chunk = state.queue.popleft()
            if chunk.future.done():  # its caller gave up (deadline, disconnect)
                self._unqueue(state, chunk)
                continue
            if now > chunk.request.deadline:
                chunk.future.set_exception(self._late(chunk.request, self._where))
                self._unqueue(state, chunk)
                continue
            if (batch and chunk.key != batch[0].key) or rows + chunk.rows > self.max_rows:
                kept.append(chunk)
                continue
            batch.append(chunk)
            rows += chunk.rows
            self._unqueue(state, chunk)
        kept.extend(state.queue)
        state.queue = kept
        return batch

    def _unqueue(self, state: _LoopState, chunk: _Chunk) -> None:
        state.rows -= chunk.rows
        chunk.request.queued -= 1
        if chunk.request.queued == 0:
            self._release(state, chunk.request)

    def _padded(self, feeds: Feeds, rows: int) -> Feeds:
        """`feeds` of `rows` rows, with zero rows up to their bucket (label 0 is a valid class)."""
        size = bucket_for(rows, self.max_rows)
        if size == rows:
            return feeds
        return {n: np.concatenate([a, np.zeros((size - rows, *a.shape[1:]), a.dtype)]) for n, a in feeds.items()}

    async def _run_now(self, state: _LoopState, outputs: list[str], feeds: Feeds, rows: int) -> list[np.ndarray]:
        """Run one request on the idle graph, from the caller's task: its chunks in one hop, no queue."""
        if rows > self.max_rows and self.whole_requests:
            # One call of all its rows: no per-chunk runs and no concatenation of their outputs (a 256-row null
            # decoder request took half the time). A shape first met here costs the CPU provider little; on a
            # GPU provider (new shapes mean an algorithm search) requests keep to the warmed buckets.
            batches = [(feeds, rows)]
        else:
            batches = [
                (self._padded({n: a[start : start + self.max_rows] for n, a in feeds.items()}, part), part)
                for start in range(0, rows, self.max_rows)
                for part in (min(self.max_rows, rows - start),)
            ]
        await state.slots.acquire()  # free (checked by the caller, with no await between): does not wait
        state.running += 1
        try:
            results = await self.runner.run_many(outputs, batches)
        finally:
            state.running -= 1
            state.slots.release()
        if len(results) == 1:
            return [o[:rows] for o in results[0]]
        return [
            np.concatenate([r[i][:part] for r, (_, part) in zip(results, batches, strict=True)])
            for i in range(len(outputs))
        ]

    async def _run(self, state: _LoopState, batch: list[_Chunk]) -> None:
        try:
            rows = sum(c.rows for c in batch)
            if len(batch) == 1:
                feeds = self._padded(batch[0].feeds, rows)
            else:
                feeds = self._padded({n: np.concatenate([c.feeds[n] for c in batch]) for n in batch[0].feeds}, rows)
            try:
                outputs = await self.runner(batch[0].outputs, feeds, rows=rows)
            except asyncio.CancelledError:
                for c in batch:
                    c.future.cancel()
                raise
            except Exception as e:  # onnxruntime failed: every request in the batch gets the error
                for c in batch:
                    if not c.future.done():
                        c.future.set_exception(e)
                return
            start = 0
            for c in batch:
                if not c.future.done():
                    c.future.set_result([o[start : start + c.rows] for o in outputs])
                start += c.rows
        finally:
            state.running -= 1
            state.slots.release()
