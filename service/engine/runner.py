"""Run one graph's session off the event loop: the seam between a model's operations and onnxruntime.

Work for a graph comes as a `Job`: its rows, the outputs it wants, its feeds (arrays, or a function that makes them
on the worker thread: decoding uploaded PNGs there keeps that work off the event loop, in one pass per batch) and
what to do with its outputs afterwards, also on the worker thread (render a response). A `Runner` runs jobs:
`GraphRunner` one at a time, each in one worker-thread hop; `MicroBatcher` (service/engine/batching.py) combines
concurrent jobs into one session call.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

import numpy as np
import onnxruntime as ort

from .. import tracing
from ..graph_stats import GraphStats
from ..metrics import Metrics

Feeds = dict[str, np.ndarray]
Outputs = list[np.ndarray]
T = TypeVar("T")


def _outputs(feeds: Feeds, outputs: Outputs) -> Outputs:
    return outputs


@dataclass(eq=False)
class Job(Generic[T]):
    """One request's work on one graph.

    `feeds` are its inputs, every array [rows, ...], or a function that returns them (run on the worker thread,
    so a batch's inputs are made in one pass there; `names` are then the inputs it will return). `finish(feeds,
    outputs)` turns its rows of the outputs into the result, also on the worker thread. Either may raise a
    ServiceError: it fails this job only.
    """

    rows: int
    outputs: list[str]
    feeds: Feeds | Callable[[], Feeds]
    finish: Callable[[Feeds, Outputs], T] = field(default=_outputs)  # type: ignore[assignment]
    names: tuple[str, ...] = ()

    def inputs(self) -> Feeds:
        return self.feeds() if callable(self.feeds) else self.feeds


@dataclass(eq=False)
class Done(Generic[T]):
    """A job's result or its error, as the worker thread hands it back."""

    value: T | None = None
    error: BaseException | None = None


class Runner(Protocol):
    """What a model calls to run one graph: `GraphRunner`, or `MicroBatcher` in front of one."""

    @property
    def providers(self) -> list[str]: ...

    @property
    def batch_sizes(self) -> tuple[int, ...]: ...

    def run_sync(self, outputs: list[str], feeds: Feeds) -> Outputs: ...

    async def run(self, job: Job[T]) -> T: ...

    async def __call__(self, outputs: list[str], feeds: Feeds) -> Outputs: ...

    async def close(self) -> None: ...


def make_feeds(jobs: list[Job[Any]]) -> list[Feeds | Exception]:
    """Each job's feeds, or the error making them raised. Feeds made by objects whose class has a `many` (a
    function of a list of them) are made in one call for the whole batch (PNGs decoded in one pass); if that call
    fails, each is made on its own, so that only the request at fault fails."""
    made: list[Feeds | Exception | None] = [None] * len(jobs)
    together: dict[Any, list[int]] = {}
    for index, job in enumerate(jobs):
        many = getattr(type(job.feeds), "many", None)
        if many is not None and not isinstance(job.feeds, dict):
            together.setdefault(many, []).append(index)
            continue
        made[index] = _made(job.inputs)
    for many, indices in together.items():
        try:
            for index, feeds in zip(indices, many([jobs[i].feeds for i in indices]), strict=True):
                made[index] = feeds
        except Exception:  # one request's bad upload: each on its own, so that the others still run
            for index in indices:
                made[index] = _made(jobs[index].inputs)
    return [feeds if feeds is not None else RuntimeError("no feeds") for feeds in made]


def _made(make: Callable[[], Feeds]) -> Feeds | Exception:
    try:
        return make()
    except Exception as e:  # a ServiceError for this request (a damaged upload), or a defect: this job's alone
        return e


def rows_of(feeds: Feeds) -> int:
    return next(iter(feeds.values())).shape[0]


class Graph(Protocol):
    """What a runner calls on its worker thread: one graph's session (`Session`), or a chain of two."""

    model: str
    version: str
    graph: str

    @property
    def providers(self) -> list[str]: ...

    @property
    def seconds_per_row(self) -> float | None:
        """What its calls of many rows took per row, lately; None before the first."""

    def run(self, outputs: list[str], feeds: Feeds, rows: int | None = None) -> Outputs: ...

    def run_untimed(self, outputs: list[str], feeds: Feeds) -> Outputs: ...


class Timing:
    """A graph's calls into the metrics, and its recent time per row (what decides whether a batch is split)."""

    MIN_ROWS = 16  # calls of fewer rows say more about the fixed cost than about the rows

    def __init__(self, metrics: Metrics, model: str, version: str, graph: str) -> None:
        self.seconds = metrics.inference_seconds.labels(model=model, version=version, graph=graph)
        self.rows = metrics.batch_size.labels(model=model, version=version, graph=graph)
        self.seconds_per_row: float | None = None

    def record(self, seconds: float, rows: int) -> None:
        self.seconds.observe(seconds)
        self.rows.observe(rows)
        if rows >= self.MIN_ROWS:
            now = seconds / rows
            last = self.seconds_per_row
            self.seconds_per_row = now if last is None else 0.8 * last + 0.2 * now


class Session:
    """One graph's onnxruntime session, timed into the metrics."""

    def __init__(
        self, session: ort.InferenceSession, *, model: str, version: str, graph: str, metrics: Metrics
    ) -> None:
        self.session = session
        self.model = model
        self.version = version
        self.graph = graph
        self.timing = Timing(metrics, model, version, graph)

    @property
    def seconds_per_row(self) -> float | None:
        return self.timing.seconds_per_row

    @property
    def providers(self) -> list[str]:
        return self.session.get_providers()

    def run_untimed(self, outputs: list[str], feeds: Feeds) -> Outputs:
        """Blocking run, not counted in the metrics (warm-up)."""
        result: Outputs = self.session.run(outputs, feeds)
        return result

    def run(self, outputs: list[str], feeds: Feeds, rows: int | None = None) -> Outputs:
        """Blocking run; never on the event loop. `rows`: the real rows when the feeds were padded (metrics)."""
        start = time.perf_counter()
        result: Outputs = self.session.run(outputs, feeds)
        # Time inside onnxruntime, not the wait for a thread; real rows, not padding.
        self.timing.record(time.perf_counter() - start, rows_of(feeds) if rows is None else rows)
        return result


def finish(job: Job[T], feeds: Feeds, outputs: Outputs) -> Done[T]:
    """The job's result from its feeds and its rows of the outputs; its error instead when finishing fails."""
    try:
        return Done(job.finish(feeds, outputs))
    except Exception as e:  # a ServiceError for this request (a limit, a label), or a defect: this job's alone
        return Done(error=e)


def deliver(results: Sequence[tuple[asyncio.Future[Any], Done[Any]]]) -> None:
    """On the event loop: resolve each waiting request's future (one call per batch)."""
    for future, done in results:
        if future.done():  # its request gave up (deadline, shutdown)
            continue
        if done.error is not None:
            future.set_exception(done.error)
        else:
            future.set_result(done.value)


class OnGraph:
    """What every runner of one graph has: the graph, what it is called, and the calls beside `run`."""

    def __init__(self, session: Graph) -> None:
        self.session = session

    @property
    def model(self) -> str:
        return self.session.model

    @property
    def graph(self) -> str:
        return self.session.graph

    @property
    def providers(self) -> list[str]:
        return self.session.providers

    def run_sync(self, outputs: list[str], feeds: Feeds) -> Outputs:
        """Blocking run, not counted in the metrics; for warm-up only, never on the event loop."""
        return self.session.run_untimed(outputs, feeds)

    async def __call__(self, outputs: list[str], feeds: Feeds) -> Outputs:
        """Run the graph on `feeds` (every array has the batch axis first) and return `outputs` in order."""
        return await self.run(Job(rows_of(feeds), outputs, feeds))

    async def run(self, job: Job[T]) -> T:
        raise NotImplementedError


class GraphRunner(OnGraph):
    """Runs each job on its own: feeds, session run and finish in one worker-thread hop (batching off)."""

    def __init__(
        self,
        session: Graph,
        executor: Executor,
        run: Callable[[Graph, list[str], Feeds], Outputs],
        stats: GraphStats | None = None,
    ) -> None:
        super().__init__(session)
        self.executor = executor
        self.forward = run  # the session call: whole, or split across threads (service/engine/split.py)
        self.stats = stats

    @property
    def batch_sizes(self) -> tuple[int, ...]:
        """Row counts known in advance for warm-up: none, each request brings its own."""
        return ()

    async def close(self) -> None:
        """Nothing to stop: calls run in the shared executor, which the app shuts down."""

    async def run(self, job: Job[T]) -> T:
        loop = asyncio.get_running_loop()
        done = await loop.run_in_executor(self.executor, self._work, job, time.monotonic(), tracing.current())
        if done.error is not None:
            raise done.error
        return done.value  # type: ignore[return-value]

    def _work(self, job: Job[T], arrival: float, trace: Any = None) -> Done[T]:
        taken = time.monotonic()
        waited = taken - arrival
        started = time.perf_counter()
        decoded = computed = started
        try:
            feeds = job.inputs()
            decoded = computed = time.perf_counter()
            outputs = self.forward(self.session, job.outputs, feeds)
            computed = time.perf_counter()
            done = finish(job, feeds, outputs)
        except Exception as e:  # a bad upload (ServiceError), or onnxruntime's own error: this request's
            done = Done(error=e)
        ended = time.perf_counter()
        if self.stats is not None:
            failed = int(done.error is not None)
            self.stats.record_batch([waited], failed, decoded - started, computed - decoded, ended - computed)
        if trace is not None:
            marks = (taken + decoded - started, taken + computed - started, taken + ended - started)
            tracing.record_stages(trace, self.session.graph, (arrival, taken, *marks))
        return done
