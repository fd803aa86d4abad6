"""bench/peer_runtime.py: the peers decode a PNG to the very array the service makes of it."""

import io

import numpy as np
import pytest
from PIL import Image

from bench.peer_runtime import png_to_array
from bench.workloads import digit_png
from service.http.images import decode_image
from vaeformat.manifest import ImageSpec


def png(array: np.ndarray, mode: str) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array, mode).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("data", "channels"),
    [
        (digit_png(), 1),
        (png(np.random.default_rng(1).integers(0, 256, (28, 28, 3), dtype=np.uint8), "RGB"), 3),
    ],
)
def test_a_png_becomes_the_services_array(data, channels):
    spec = {"channels": channels, "height": 28, "width": 28}
    ours = png_to_array(data, spec)
    assert ours.shape == (channels, 28, 28) and ours.dtype == np.float32
    assert np.array_equal(ours, decode_image(data, ImageSpec(**spec), 10**6))


def test_an_image_of_another_size_is_refused_with_both_sizes():
    with pytest.raises(ValueError, match="32x28.*28x28"):
        png_to_array(png(np.zeros((28, 32), np.uint8), "L"), {"channels": 1, "height": 28, "width": 28})
