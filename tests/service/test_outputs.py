"""outputs.py: the output format from `format=` or Accept, and the three renderings."""

import io
import json

import numpy as np
import pytest
from PIL import Image
from starlette.requests import Request

from service.errors import InvalidInput
from service.outputs import choose_format, images_response

ALL = ("png", "json", "npy")


def request(accept: str | None = None, path: str = "/sample") -> Request:
    headers = [(b"accept", accept.encode())] if accept is not None else []
    return Request({"type": "http", "method": "GET", "path": path, "headers": headers, "query_string": b""})


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
    assert choose_format(request(accept), None, ALL, "png") == expected


def test_format_parameter_wins_over_accept():
    assert choose_format(request("image/png"), "npy", ALL, "png") == "npy"


def test_format_the_route_cannot_make_is_invalid():
    with pytest.raises(InvalidInput, match="format='png' is not available on /encode"):
        choose_format(request(path="/encode"), "png", ("json", "npy"), "json")


IMAGES = np.random.default_rng(0).random((3, 1, 4, 4), dtype=np.float32)


def test_png_of_several_images_is_a_grid():
    response = images_response("png", IMAGES, fields={})
    image = Image.open(io.BytesIO(response.body))
    assert response.media_type == "image/png" and image.size == (2 + 2 * 6, 2 + 2 * 6)


def test_png_of_one_image_is_that_image():
    image = Image.open(io.BytesIO(images_response("png", IMAGES[:1], fields={}).body))
    assert image.size == (4, 4)


def test_json_holds_base64_pngs_and_the_fields():
    body = json.loads(images_response("json", IMAGES, fields={"model": "m", "seed": 3}).body)
    assert body["model"] == "m" and body["seed"] == 3 and body["shape"] == [3, 1, 4, 4] and len(body["images"]) == 3


def test_npy_is_the_float32_array():
    array = np.load(io.BytesIO(images_response("npy", IMAGES, fields={}).body))
    assert array.dtype == np.float32
    np.testing.assert_array_equal(array, IMAGES)
