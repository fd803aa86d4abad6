"""uploads.py: request bodies read and counted before the work they would cost; model-sized PNGs decoded on the
batch's worker thread, anything large off the event loop."""

import asyncio
import json
import threading
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from pydantic import BaseModel

from service.errors import InvalidInput, PayloadTooLarge
from service.http import uploads as inputs
from service.http.request import DataRequest
from service.http.state import ServiceState
from service.http.uploads import (
    Deferred,
    b64_files,
    decode_images,
    images_for,
    merge_labels,
    parse_json,
    read_latents,
    receive_images,
)
from service.metrics import Metrics
from service.offload import INLINE_BYTES
from service.settings import Settings
from vaeformat.manifest import ImageSpec

from ..asgi import serve
from ..payloads import b64, npy, png

pytestmark = pytest.mark.anyio

GRAY8 = ImageSpec(channels=1, height=8, width=8)
SETTINGS = Settings(max_images=8, max_latents=16, max_n=64, max_pixels=10_000).limits


def request(body: bytes, content_type: str) -> DataRequest:
    """A data-plane request with this body, as a route receives it."""

    async def receive() -> dict:
        return {"type": "http.request", "body": body, "more_body": False}

    headers = [(b"content-type", content_type.encode())]
    scope = {"type": "http", "method": "POST", "path": "/", "query_string": b"", "headers": headers}
    state = ServiceState(SETTINGS, "cpu", Path("models"), Metrics())
    return DataRequest(scope, receive, state, {}, content_type=content_type.encode())


def test_labels_from_the_query_are_split_at_commas_and_counted_before_splitting():
    assert merge_labels(["7, two", "3"], None, limit=3, setting="VAE_MAX_N") == ["7", "two", "3"]
    with pytest.raises(InvalidInput, match=r"parameter 'label' holds 1000000 labels.*limit is 64 \(VAE_MAX_N\)"):
        merge_labels(["0," * 999_999 + "0"], None, limit=64, setting="VAE_MAX_N")


class NeverParsed(BaseModel):
    @classmethod
    def model_validate_json(cls, *args, **kwargs):
        raise AssertionError("the body was parsed although it holds more values than the limits allow")


async def test_a_json_body_with_more_values_than_the_limits_allow_is_refused_before_parsing():
    body = b'{"z": [' + b",".join([b"[0,0,0,0]"] * 100_000) + b"]}"
    with pytest.raises(PayloadTooLarge, match="400000 values.*at most 2 things"):
        await parse_json(request(body, "application/json"), NeverParsed, 10, "at most 2 things")


async def test_json_latents_are_bounded_by_rows_times_latent_dim():
    exactly = {"z": [[0.5] * 4] * 16, "labels": [1] * 16}
    z, labels = await read_latents(request(_json(exactly), "application/json"), 4, SETTINGS)
    assert z.shape == (16, 4) and labels == [1] * 16
    for too_many in ({"z": [[0.5] * 4] * 17}, {"z": [[0.5] * 2000]}):
        with pytest.raises(PayloadTooLarge, match="VAE_MAX_LATENTS"):
            await read_latents(request(_json(too_many), "application/json"), 4, SETTINGS)


async def test_npy_latents_go_through_the_header_checks():
    z, labels = await read_latents(request(npy(np.ones((3, 4))), "application/x-npy"), 4, SETTINGS)
    assert z.shape == (3, 4) and z.dtype == np.float32 and labels is None
    with pytest.raises(PayloadTooLarge, match="17 latent vectors"):
        await read_latents(request(npy(np.ones((17, 4))), "application/x-npy"), 4, SETTINGS)


async def test_json_images_are_counted_before_any_is_decoded(monkeypatch):
    monkeypatch.setattr(inputs, "open_image", _fail)
    too_many = _json({"images": [b64(png())] * 9})
    many_values = _json({"images": [""] * 100})
    with pytest.raises(PayloadTooLarge, match="9 images sent; the limit is 8"):
        await receive_images(request(too_many, "application/json"), SETTINGS)
    with pytest.raises(PayloadTooLarge, match="VAE_MAX_IMAGES"):
        await receive_images(request(many_values, "application/json"), SETTINGS)
    body = _json({"images": ["data:image/png;base64," + b64(png())] * 8, "labels": ["seven"] * 8})
    uploads = await receive_images(request(body, "application/json"), SETTINGS)
    assert len(uploads.files) == 8 and uploads.labels == ["seven"] * 8


@pytest.mark.parametrize(("copies", "on_the_loop"), [(1, True), (INLINE_BYTES // len(png(size=8)) + 1, False)])
async def test_many_bytes_are_opened_off_the_event_loop_whatever_their_pixels(monkeypatch, copies, on_the_loop):
    threads = _record_threads(monkeypatch, "open_image")
    uploads = inputs.Uploads([(f"file '{i}.png'", png(size=8)) for i in range(copies)], None)
    images = await decode_images(uploads, GRAY8, SETTINGS)
    assert images.shape == (copies, 1, 8, 8) and threads
    assert all((thread is threading.main_thread()) == on_the_loop for thread in threads)


def _record_threads(monkeypatch, *names: str) -> list[threading.Thread]:
    """Replace the `inputs` functions `names` with ones that note the thread they run on; the list of threads."""
    threads: list[threading.Thread] = []
    for name in names:
        real = getattr(inputs, name)

        def record(*args, real=real, **kwargs):
            threads.append(threading.current_thread())
            return real(*args, **kwargs)

        monkeypatch.setattr(inputs, name, record)
    return threads


@pytest.mark.parametrize(("size", "copies"), [(8, 2), (192, 2)])
async def test_model_sized_pngs_are_decoded_on_the_batch_worker_not_the_loop(monkeypatch, size, copies):
    """Two 192x192 PNGs of one colour are a few hundred bytes but 73,728 pixels: no event loop should decode them,
    and no decoder runs until the batch that carries them does."""
    threads = _record_threads(monkeypatch, "decode_model_sized_pngs", "to_array")
    spec = ImageSpec(channels=1, height=size, width=size)
    flat = png(np.full((size, size), 200, np.uint8))
    assert copies * len(flat) < INLINE_BYTES  # few bytes: only the pixels could send the work to a thread
    uploads = inputs.Uploads([(f"file '{i}.png'", flat) for i in range(copies)], None)
    images = await images_for(uploads, spec, Settings(max_images=8, max_pixels=size * size).limits)
    assert isinstance(images, Deferred) and len(images) == copies and not threads  # nothing decoded yet
    array = await asyncio.to_thread(images.array)  # as the batch's worker thread does
    assert array.shape == (copies, 1, size, size) and np.allclose(array, 200 / 255)
    assert threads and all(thread is not threading.main_thread() for thread in threads)


async def test_through_the_app_the_upload_is_decoded_on_a_worker_thread(monkeypatch, settings):
    threads = _record_threads(monkeypatch, "decode_model_sized_pngs")
    async with serve(settings) as client:
        r = await client.post("/encode", content=png(size=8), headers={"content-type": "image/png"})
    assert r.status_code == 200 and threads and all(t is not threading.main_thread() for t in threads)


async def test_other_images_are_decoded_before_they_are_queued():
    jpeg_like = png(size=12)  # not the model's size: resized on the full path, now
    uploads = inputs.Uploads([("file 'a.png'", jpeg_like)], None)
    images = await images_for(uploads, GRAY8, SETTINGS)
    assert isinstance(images, np.ndarray) and images.shape == (1, 1, 8, 8)


def _fail(*args, **kwargs):
    raise AssertionError("an image was opened before the request's counts were checked")


def _json(value: object) -> bytes:
    return json.dumps(value).encode()


def test_base64_of_a_million_whitespace_separated_pieces_costs_no_string_per_piece():
    text = "QUFB " * 1_000_000  # 5 MB of text: "AAA" a million times, a space after each piece
    tracemalloc.start()
    try:
        files = b64_files([text, "data:image/png;base64,QU\nFB\r\n"], "images")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert files == [("body field 'images[0]'", b"AAA" * 1_000_000), ("body field 'images[1]'", b"AAA")]
    assert peak < 6 * len(text)  # the text's bytes, without whitespace, decoded: not a million strings
    with pytest.raises(InvalidInput, match=r"body field 'images\[0\]' is not valid base64"):
        b64_files(["QUFB\u00a0QUFB"], "images")


@pytest.mark.parametrize("copies", [2, INLINE_BYTES // len(png(np.zeros((90, 90), np.uint8))) + 1])
async def test_each_large_image_is_closed_once_decoded(monkeypatch, copies):
    """Its full-size pixels go before the next image's are loaded: a batch of large images holds one at a time."""
    opened = []
    real = inputs.open_image

    def noted(*args, **kwargs):
        opened.append(real(*args, **kwargs))
        return opened[-1]

    monkeypatch.setattr(inputs, "open_image", noted)
    uploads = inputs.Uploads([(f"file '{i}.png'", png(np.zeros((90, 90), np.uint8))) for i in range(copies)], None)
    assert (await decode_images(uploads, GRAY8, SETTINGS)).shape == (copies, 1, 8, 8)
    assert len(opened) == copies
    for image in opened:
        with pytest.raises(ValueError, match="closed"):
            image.getpixel((0, 0))
