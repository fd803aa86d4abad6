"""split.py: a large CPU batch runs as chunks on several threads, with the same rows as one call would give."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from service.engine.split import MIN_CHUNK_ROWS, Splitter
from service.settings import Settings

from ...registries import load_registry
from ...tolerance import assert_close


@pytest.fixture(scope="module")
def decoder(zoo):
    return load_registry(Settings(models_dir=zoo)).get("tiny-vae").decoder.session


def test_small_or_cheap_batches_run_whole():
    splitter = Splitter(threads=4, max_rows=256)
    assert splitter.chunks(2 * MIN_CHUNK_ROWS - 1, 1.0) == 1  # too few rows to be worth a thread hop
    assert splitter.chunks(256, None) == 1  # nothing known of the graph's cost yet
    assert splitter.chunks(256, 1e-7) == 1  # 26 us of work in all: a hop would cost more


def test_costly_batches_use_every_thread_and_no_call_passes_max_rows():
    splitter = Splitter(threads=4, max_rows=256)
    assert splitter.chunks(256, 1e-4) == 4  # 26 ms of work, on 4 threads
    assert splitter.chunks(96, 1e-4) == 3  # at least MIN_CHUNK_ROWS rows each
    assert splitter.chunks(1000, 1e-9) == 4  # cheap, but a call holds at most max_rows rows
    assert Splitter(threads=1, max_rows=64).chunks(200, 1e-3) == 4


def test_chunks_give_the_rows_one_call_gives_and_run_side_by_side(decoder, monkeypatch):
    splitter = Splitter(threads=3, max_rows=64)
    z = np.random.default_rng(0).standard_normal((150, 4), dtype=np.float32)
    (whole,) = decoder.run_untimed(["image"], {"z": z})
    calls: list[tuple[int, str]] = []
    run = decoder.run
    together = threading.Barrier(3, timeout=10)  # broken (an error) unless the three calls run at the same time

    def recorded(outputs, feeds, rows=None):
        calls.append((len(feeds["z"]), threading.current_thread().name))
        together.wait()
        return run(outputs, feeds, rows)

    monkeypatch.setattr(decoder, "run", recorded)
    monkeypatch.setattr(decoder.timing, "seconds_per_row", 1e-3)
    (split,) = splitter.run(decoder, ["image"], {"z": z})
    assert_close(split, whole)
    assert sorted(rows for rows, _ in calls) == [50, 50, 50]
    assert len({thread for _, thread in calls}) == 3  # this thread and two of the pool's
    splitter.close()


def test_a_graph_learns_its_cost_per_row_from_calls_of_many_rows(decoder):
    decoder.timing.seconds_per_row = None
    decoder.run(["image"], {"z": np.zeros((4, 4), np.float32)})
    assert decoder.seconds_per_row is None  # a few rows say more about the fixed cost
    decoder.run(["image"], {"z": np.zeros((64, 4), np.float32)})
    assert decoder.seconds_per_row is not None and decoder.seconds_per_row > 0
