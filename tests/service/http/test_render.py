"""render.py: the output format from `format=` or Accept, and the three renderings."""

import asyncio
import base64
import io
import json

import numpy as np
import pytest
from PIL import Image

from service.errors import InvalidInput
from service.http.images import to_uint8
from service.http.render import Scale, choose_format, images_reply_offloaded, json_bytes
from service.offload import INLINE_PIXELS

ALL = ("png", "json", "npy")


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (None, "png"),
        ("*/*", "png"),
        ("application/json", "json"),
        ("application/x-npy", "npy"),
        ("text/html, application/json;q=0.9", "json"),
        ("image/png;q=0.1, application/json", "json"),
        ("application/json;q=0, image/*", "png"),
        ("text/html", "png"),  # nothing we make: the route's default rather than a 406
    ],
)
def test_accept_header_picks_the_best_format(accept, expected):
    assert choose_format(None, accept, ALL, "png", "/sample") == expected


def test_format_parameter_wins_over_accept():
    assert choose_format("npy", "image/png", ALL, "png", "/sample") == "npy"


def test_format_the_route_cannot_make_is_invalid():
    with pytest.raises(InvalidInput, match="format='png' is not available on /encode"):
        choose_format("png", None, ("json", "npy"), "json", "/encode")


IMAGES = np.random.default_rng(0).random((3, 1, 4, 4), dtype=np.float32)


def rendered(fmt, images, scale: Scale | None = None, **fields) -> tuple[str, bytes]:
    """Run images_reply_offloaded and send the reply as ASGI: (content type, body bytes as sent)."""
    messages = []

    async def send(message):
        messages.append(message)

    async def run():
        reply = await images_reply_offloaded(fmt, images, fields=fields, scale=scale or Scale())
        await reply.send(send)

    asyncio.run(run())
    headers = dict(messages[0]["headers"])
    body = b"".join(m.get("body", b"") for m in messages[1:])
    assert int(headers[b"content-length"]) == len(body)
    return headers[b"content-type"].decode(), body


def test_png_of_several_images_is_a_grid():
    media, body = rendered("png", IMAGES)
    assert media == "image/png" and Image.open(io.BytesIO(body)).size == (2 + 2 * 6, 2 + 2 * 6)


def test_png_of_one_image_is_that_image():
    assert Image.open(io.BytesIO(rendered("png", IMAGES[:1])[1])).size == (4, 4)


def test_json_holds_base64_pngs_and_the_fields():
    body = json.loads(rendered("json", IMAGES, model="m", seed=3)[1])
    assert body["model"] == "m" and body["seed"] == 3 and body["shape"] == [3, 1, 4, 4] and len(body["images"]) == 3


def test_npy_is_the_float32_array_byte_for_byte_as_numpy_saves_it():
    media, body = rendered("npy", IMAGES)
    saved = io.BytesIO()
    np.save(saved, IMAGES)
    assert media == "application/x-npy" and body == saved.getvalue()


def test_large_renderings_made_on_a_worker_thread_are_the_same_as_small_ones():
    many = np.random.default_rng(1).random((256, 1, 28, 28), dtype=np.float32)  # over INLINE_PIXELS
    assert many.size > INLINE_PIXELS
    grid_png = Image.open(io.BytesIO(rendered("png", many)[1]))
    assert grid_png.size == (2 + 16 * 30, 2 + 16 * 30)
    body = json.loads(rendered("json", many)[1])
    first = np.asarray(Image.open(io.BytesIO(base64.b64decode(body["images"][0]))))
    np.testing.assert_array_equal(first, to_uint8(many[0]))


def test_json_writes_numpy_arrays_including_non_contiguous_ones():
    array = np.arange(12, dtype=np.float32).reshape(3, 4)
    body = json.loads(json_bytes({"a": array, "b": array[:, ::2], "c": None}))
    assert body == {"a": array.tolist(), "b": array[:, ::2].tolist(), "c": None}


@pytest.mark.parametrize("fmt", ALL)
@pytest.mark.parametrize(("shape", "factor"), [((1, 1, 28, 28), 1), ((9, 3, 20, 20), 1), ((4, 1, 64, 64), 3)])
def test_an_answer_is_never_larger_than_reckoned(fmt, shape, factor):
    if fmt == "npy" and factor != 1:
        return
    # Uniform noise does not compress: the worst case for PNG, which the reckoning must still cover.
    noise = np.random.default_rng(2).random(shape, dtype=np.float32)
    scale = Scale(factor)
    body = rendered(fmt, noise, scale=scale)[1]
    reckoned = scale.answer_bytes(fmt, shape)
    assert len(body) <= reckoned, (len(body), reckoned)
    if factor == 1:  # and close to it: refusing answers that would have been far smaller than the limit is a defect
        assert reckoned < 1.05 * len(body) + 2048, (len(body), reckoned)
