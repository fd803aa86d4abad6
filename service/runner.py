"""Run one graph's session off the event loop: the seam between the routes' model calls and onnxruntime.

`GraphRunner` calls onnxruntime for one graph; `ServedModel` calls a `Runner`: the `GraphRunner` itself when
batching is off, or a `MicroBatcher` (service/batching.py) with the same interface that combines rows from
concurrent requests into one `GraphRunner` call.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import Executor
from typing import Protocol

import numpy as np
import onnxruntime as ort

from .metrics import Metrics
from .providers import GPU_PROVIDERS

Feeds = dict[str, np.ndarray]


class Runner(Protocol):
    """What a model calls to run one graph: `GraphRunner`, or `MicroBatcher` in front of one."""

    @property
    def providers(self) -> list[str]: ...

    @property
    def batch_sizes(self) -> tuple[int, ...]: ...

    def run_sync(self, outputs: list[str], feeds: Feeds) -> list[np.ndarray]: ...

    async def __call__(self, outputs: list[str], feeds: Feeds) -> list[np.ndarray]: ...

    async def close(self) -> None: ...


class GraphRunner:
    """Calls `session.run` in a worker thread (onnxruntime sessions are safe to share between threads)."""

    def __init__(
        self, session: ort.InferenceSession, *, model: str, graph: str, executor: Executor, metrics: Metrics
    ) -> None:
        self.session = session
        self.model = model
        self.graph = graph
        self.executor = executor
        self._seconds = metrics.inference_seconds.labels(model=model, graph=graph)
        self._rows = metrics.batch_size.labels(model=model, graph=graph)

    @property
    def providers(self) -> list[str]:
        return self.session.get_providers()

    @property
    def batch_sizes(self) -> tuple[int, ...]:
        """Row counts known in advance for warm-up: none, each request brings its own."""
        return ()

    async def close(self) -> None:
        """Nothing to stop: calls run in the shared executor, which the app shuts down."""

    def run_sync(self, outputs: list[str], feeds: Feeds) -> list[np.ndarray]:
        """Blocking run; for warm-up and worker threads only, never on the event loop."""
        return self.session.run(outputs, feeds)

    async def __call__(self, outputs: list[str], feeds: Feeds, *, rows: int | None = None) -> list[np.ndarray]:
        """Run the graph on `feeds` (every array has the batch axis first) and return `outputs` in order.

        `rows` is the number of real rows when a batcher padded the feeds (for the batch-size metric).
        """
        rows = next(iter(feeds.values())).shape[0] if rows is None else rows
        return (await self.run_many(outputs, [(feeds, rows)]))[0]

    async def run_many(self, outputs: list[str], batches: list[tuple[Feeds, int]]) -> list[list[np.ndarray]]:
        """Run several batches ((feeds, real rows), ...) one after another in one worker-thread hop.

        A request larger than the largest warmed batch is several runs; one hop for all of them saves the event
        loop a wake-up and a GIL hand-off per run.
        """
        loop = asyncio.get_running_loop()
        results, seconds = await loop.run_in_executor(self.executor, self._timed_runs, outputs, batches)
        for took, (_, rows) in zip(seconds, batches, strict=True):
            self._seconds.observe(took)  # time inside onnxruntime, not the wait for a worker thread
            self._rows.observe(rows)
        return results

    def _timed_runs(
        self, outputs: list[str], batches: list[tuple[Feeds, int]]
    ) -> tuple[list[list[np.ndarray]], list[float]]:
        timed = [self._timed_run(outputs, feeds) for feeds, _ in batches]
        return [result for result, _ in timed], [seconds for _, seconds in timed]

    def _timed_run(self, outputs: list[str], feeds: Feeds) -> tuple[list[np.ndarray], float]:
        start = time.perf_counter()
        result = self.run_sync(outputs, feeds)
        return result, time.perf_counter() - start


class ChainRunner(GraphRunner):
    """Encoder then decoder in one call (reconstruct): z = mu goes from one session to the next by IO binding.

    On CUDA the latent stays in GPU memory between the graphs (no device-to-host-to-device round trip); on the
    CPU the binding is a plain hand-over. Either way it is one worker-thread hop instead of two. Feeds are the
    encoder's inputs plus, for a conditional decoder, `label`; the one output is the decoder's `image`.
    """

    def __init__(
        self,
        encoder: ort.InferenceSession,
        decoder: ort.InferenceSession,
        *,
        model: str,
        executor: Executor,
        metrics: Metrics,
        device_id: int = 0,
    ) -> None:
        super().__init__(decoder, model=model, graph="reconstruct", executor=executor, metrics=metrics)
        self.encoder = encoder
        self.device = "cuda" if encoder.get_providers()[0] in GPU_PROVIDERS else "cpu"
        self.device_id = device_id if self.device == "cuda" else 0
        self._encoder_inputs = [i.name for i in encoder.get_inputs()]
        self._decoder_inputs = [i.name for i in decoder.get_inputs() if i.name != "z"]

    def run_sync(self, outputs: list[str], feeds: Feeds) -> list[np.ndarray]:
        if outputs != ["image"]:
            raise ValueError(f"a chain returns ['image'], not {outputs}")
        encoder = self.encoder.io_binding()
        for name in self._encoder_inputs:
            encoder.bind_cpu_input(name, feeds[name])
        encoder.bind_output("mu", self.device, self.device_id)
        self.encoder.run_with_iobinding(encoder)
        decoder = self.session.io_binding()
        decoder.bind_ortvalue_input("z", encoder.get_outputs()[0])
        for name in self._decoder_inputs:
            decoder.bind_cpu_input(name, feeds[name])
        decoder.bind_output("image", "cpu")
        self.session.run_with_iobinding(decoder)
        return decoder.copy_outputs_to_cpu()
