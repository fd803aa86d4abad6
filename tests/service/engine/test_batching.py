"""batching.py: concurrent requests share onnxruntime calls, each gets its own rows back, and the queue is bounded.

The batchers run on real tiny onnxruntime sessions; a gate (a threading.Event in front of the session) holds a
batch inside the runtime so that queue states can be reached without timing luck.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import numpy as np
import pytest

from service.engine.batching import MicroBatcher, bucket_for, bucket_sizes
from service.engine.runner import GraphRunner, Job, Session, make_feeds
from service.http.app import create_app
from service.http.problems import PROBLEM_MEDIA_TYPE
from service.metrics import Metrics
from service.models.registry import ModelRegistry
from service.settings import Settings

from ...registries import load_registry
from ...tolerance import assert_close
from ..asgi import serve
from ..payloads import load_npy, png

pytestmark = pytest.mark.anyio


def registry(zoo: Path, **settings) -> tuple[ModelRegistry, Metrics]:
    metrics = Metrics()
    return load_registry(Settings(models_dir=zoo, **settings), ThreadPoolExecutor(2), metrics), metrics


def decoder(reg: ModelRegistry, name: str = "tiny-vae") -> MicroBatcher:
    runner = reg.get(name).decoder
    assert isinstance(runner, MicroBatcher)
    return runner


def record_rows(runner: MicroBatcher) -> list[int]:
    """Row counts of every onnxruntime call the batcher makes from now on (padded, as onnxruntime sees them)."""
    seen: list[int] = []
    original = runner.session.run

    def run(outputs, feeds, rows=None):
        seen.append(len(next(iter(feeds.values()))))
        return original(outputs, feeds, rows)

    runner.session.run = run  # type: ignore[method-assign]
    return seen


def batch_counts(metrics: Metrics, model: str = "tiny-vae", graph: str = "decoder") -> tuple[float, float]:
    """(onnxruntime calls, real rows) from the batch-size histogram."""
    labels = {"model": model, "version": "0.0.1", "graph": graph}
    count = metrics.registry.get_sample_value("vae_inference_batch_size_count", labels) or 0.0
    total = metrics.registry.get_sample_value("vae_inference_batch_size_sum", labels) or 0.0
    return count, total


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    for _ in range(int(timeout / 0.005)):
        if condition():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("condition not reached")


def test_buckets_are_powers_of_two_up_to_the_limit():
    assert bucket_sizes(1) == (1,)
    assert bucket_sizes(8) == (1, 2, 4, 8)
    assert bucket_sizes(6) == (1, 2, 4, 6)
    assert [bucket_for(r, 6) for r in range(1, 7)] == [1, 2, 4, 4, 6, 6]


def test_warm_up_on_the_cpu_runs_the_contract_shape_only(zoo, monkeypatch):
    # Every bucket is warmed on a GPU provider only (cuDNN's search); a CPU start skips them (service/registry.py).
    seen: set[tuple[str, str, int]] = set()
    original = Session.run_untimed

    def run(self, outputs, feeds):
        seen.add((self.model, self.graph, len(next(iter(feeds.values())))))
        return original(self, outputs, feeds)

    monkeypatch.setattr(Session, "run_untimed", run)
    reg, _ = registry(zoo, max_batch_rows=6)
    for name in ("tiny-ae", "tiny-vae", "tiny-cvae"):
        for graph in ("encoder", "decoder"):
            assert getattr(reg.get(name), graph).batch_sizes == (1, 2, 4, 6)
            assert {rows for m, g, rows in seen if (m, g) == (name, graph)} == {max(2, len(reg.get(name).class_names))}


async def test_concurrent_requests_get_their_own_rows_in_order_from_fewer_calls(zoo):
    reg, metrics = registry(zoo, max_batch_rows=8)
    runner = decoder(reg)
    rng = np.random.default_rng(0)
    requests = [rng.standard_normal((1 + i % 3, 4), dtype=np.float32) for i in range(40)]
    results = await asyncio.gather(*(runner(["image"], {"z": z}) for z in requests))
    for z, (images,) in zip(requests, results, strict=True):
        (expected,) = runner.run_sync(["image"], {"z": z})  # the same graph, alone
        assert_close(images, expected)
    calls, rows = batch_counts(metrics)
    assert calls < len(requests) / 2  # rows really were combined
    assert rows == sum(len(z) for z in requests)  # the histogram counts real rows, not padding
    assert runner.waiting == 0 and runner.running == 0


async def test_conditional_rows_keep_their_labels(zoo):
    reg, _ = registry(zoo, max_batch_rows=4)
    runner = decoder(reg, "tiny-cvae")
    z = np.random.default_rng(1).standard_normal((3, 4), dtype=np.float32)
    labels = [np.array([i % 3], np.int64) for i in range(3)]
    results = await asyncio.gather(*(runner(["image"], {"z": z[i : i + 1], "label": labels[i]}) for i in range(3)))
    for i, (images,) in enumerate(results):
        (expected,) = runner.run_sync(["image"], {"z": z[i : i + 1], "label": labels[i]})
        assert_close(images, expected)


async def test_large_requests_run_whole_on_the_cpu(zoo):
    reg, metrics = registry(zoo, max_batch_rows=4)
    runner = decoder(reg)
    seen = record_rows(runner)
    z = np.random.default_rng(2).standard_normal((11, 4), dtype=np.float32)
    (images,) = await runner(["image"], {"z": z})
    (split,) = await runner(["image"], {"z": z[:4]})
    assert seen == [11, 4]  # one call, however many buckets the rows span
    assert images.tobytes()[: split.nbytes] == split.tobytes()  # the same rows give the same bytes


async def test_large_requests_are_split_and_padded_to_warmed_buckets(zoo):
    reg, metrics = registry(zoo, max_batch_rows=4)
    runner = decoder(reg)
    runner.splitter = None  # as on a GPU provider, which keeps to the warmed shapes
    seen = record_rows(runner)
    z = np.random.default_rng(2).standard_normal((11, 4), dtype=np.float32)
    (images,) = await runner(["image"], {"z": z})
    (expected,) = runner.run_sync(["image"], {"z": z})
    assert_close(images, expected)
    assert images.shape == (11, 1, 8, 8)
    assert seen == [4, 4, 4]  # 4 + 4 + 3 rows, the last padded to its bucket
    assert set(seen) <= set(runner.batch_sizes)
    assert batch_counts(metrics) == (3, 11)


@asynccontextmanager
async def gated_app(zoo: Path, **settings) -> AsyncIterator[tuple[httpx.AsyncClient, MicroBatcher, threading.Event]]:
    """An app whose tiny-vae decoder holds every batch inside onnxruntime until the gate opens."""
    app = create_app(Settings(models_dir=zoo, **settings))
    gate = threading.Event()
    async with app.lifespan():
        runner = decoder(app.state.loaded_registry())
        original = runner.session.run

        def held(outputs, feeds, rows=None):
            gate.wait(10)
            return original(outputs, feeds, rows)

        runner.session.run = held  # type: ignore[method-assign]
        transport = httpx.ASGITransport(app=app)
        try:
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                yield client, runner, gate
        finally:
            gate.set()


async def test_full_queue_answers_503_with_retry_after(zoo):
    async with gated_app(zoo, queue_capacity=1) as (client, runner, gate):
        first = asyncio.create_task(client.get("/sample?n=1&format=npy"))
        await until(lambda: runner.running == 1)
        second = asyncio.create_task(client.get("/sample?n=2&format=npy"))
        await until(lambda: runner.waiting == 1)
        third = await client.get("/sample?n=1&format=npy")
        gate.set()
        assert third.status_code == 503 and int(third.headers["retry-after"]) >= 1
        assert third.headers["content-type"] == PROBLEM_MEDIA_TYPE
        body = third.json()
        assert body["type"].endswith(":overloaded") and "VAE_QUEUE_CAPACITY=1" in body["detail"]
        first_response, second_response = await first, await second
        assert first_response.status_code == 200 and load_npy(first_response.content).shape == (1, 1, 8, 8)
        assert second_response.status_code == 200 and load_npy(second_response.content).shape == (2, 1, 8, 8)
        assert runner.waiting == 0


async def test_a_request_queued_past_its_deadline_is_dropped(zoo):
    async with gated_app(zoo, request_deadline_ms=100) as (client, runner, gate):
        first = asyncio.create_task(client.get("/sample?n=1&format=npy"))
        await until(lambda: runner.running == 1)
        late = await client.get("/sample?n=1&format=npy")  # queued behind the held batch
        assert late.status_code == 503 and late.headers["retry-after"]
        body = late.json()
        assert body["type"].endswith(":deadline-exceeded") and "VAE_REQUEST_DEADLINE_MS=100" in body["detail"]
        assert runner.waiting == 0  # the dropped request no longer takes a place in the queue
        gate.set()
        assert (await first).status_code == 200  # a request already running is not dropped


async def test_batching_off_serves_the_same_images(zoo):
    for batching in (True, False):
        app = create_app(Settings(models_dir=zoo, batching=batching))
        async with app.lifespan():
            runner = app.state.loaded_registry().get("tiny-vae").decoder
            assert isinstance(runner, MicroBatcher) is batching
            assert isinstance(runner, GraphRunner) is not batching
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                response = await client.get("/sample?n=5&seed=3&format=npy")
        assert response.status_code == 200
        images = load_npy(response.content)
        if batching:
            batched = images
    assert_close(images, batched)


def test_batching_settings_are_read_from_the_environment(monkeypatch):
    monkeypatch.setenv("VAE_BATCHING", "false")
    monkeypatch.setenv("VAE_MAX_BATCH_ROWS", "32")
    monkeypatch.setenv("VAE_MAX_BATCH_DELAY_MS", "0.5")
    monkeypatch.setenv("VAE_QUEUE_CAPACITY", "7")
    monkeypatch.setenv("VAE_REQUEST_DEADLINE_MS", "250")
    s = Settings()
    assert (s.batching, s.max_batch_rows, s.max_batch_delay_ms, s.queue_capacity, s.request_deadline_ms) == (
        False,
        32,
        0.5,
        7,
        250.0,
    )


class Together:
    """Feeds a batch makes in one call (`many`), as uploaded PNGs are decoded; `bad` ones make that call fail."""

    calls: list[int] = []

    def __init__(self, value: float, bad: bool = False) -> None:
        self.value, self.bad = value, bad

    def __call__(self) -> dict:
        if self.bad:
            raise ValueError(f"feeds {self.value} are damaged")
        return {"z": np.full((1, 4), self.value, np.float32)}

    @staticmethod
    def many(items: list) -> list[dict]:
        Together.calls.append(len(items))
        return [item() for item in items]


def test_a_batch_makes_its_feeds_together_and_a_bad_one_fails_alone():
    Together.calls = []
    jobs = [Job(1, ["image"], Together(float(i)), names=("z",)) for i in range(4)]
    made = make_feeds(jobs)
    assert Together.calls == [4] and [f["z"][0, 0] for f in made] == [0, 1, 2, 3]  # one call for the batch
    jobs[2] = Job(1, ["image"], Together(2.0, bad=True), names=("z",))
    made = make_feeds(jobs)
    assert isinstance(made[2], ValueError) and all(isinstance(made[i], dict) for i in (0, 1, 3))


async def test_a_damaged_upload_among_concurrent_ones_fails_alone(zoo):
    async with serve(Settings(models_dir=zoo)) as client:
        good = png(size=8)
        damaged = good[:45] + bytes(10) + good[55:]
        bodies = [good, good, damaged, good, good]
        answers = await asyncio.gather(
            *(client.post("/encode?model=tiny-vae", content=b, headers={"content-type": "image/png"}) for b in bodies)
        )
    assert [r.status_code for r in answers] == [200, 200, 422, 200, 200]


def test_a_closed_event_loop_costs_only_its_own_requests(zoo):
    """Each result goes back on its own request's event loop: a loop that closed with its batch still running (an
    app started again in one process, as the tests do) must not stop the drain loop that serves the next loop."""
    reg, _ = registry(zoo)
    runner = decoder(reg)
    gate = threading.Event()
    original = runner.session.run

    def held(outputs, feeds, rows=None):
        gate.wait(10)
        return original(outputs, feeds, rows)

    runner.session.run = held

    def job(value: float) -> Job:
        return Job(1, ["image"], {"z": np.full((1, 4), value, np.float32)})

    async def abandoned() -> None:
        task = asyncio.ensure_future(runner.run(job(0.0)))
        await until(lambda: runner.running == 1)  # its batch is inside onnxruntime
        task.cancel()

    async def next_loop() -> list:
        task = asyncio.ensure_future(runner.run(job(1.0)))
        await until(lambda: runner.waiting == 1)  # queued behind the first loop's batch
        gate.set()
        return await asyncio.wait_for(task, 10)

    asyncio.run(abandoned())  # this loop closes while its batch still runs
    (image,) = asyncio.run(next_loop())
    (expected,) = runner.session.run_untimed(["image"], {"z": np.ones((1, 4), np.float32)})
    assert_close(image, expected)
