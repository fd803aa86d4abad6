"""bench/peer_check.py: every kind of answer is read into arrays, and the expected arrays have the answers' shapes."""

import json

import httpx
import numpy as np
import pytest

from bench.load import ROOT
from bench.peer_check import expected_answers, read_answer
from bench.peer_requests import HEADER_LENGTH, latents, npy_bytes

MODEL = ROOT / "models" / "mnist-vae"


def answer(status: int = 200, **kwargs) -> httpx.Response:
    return httpx.Response(status, request=httpx.Request("POST", "http://127.0.0.1/infer"), **kwargs)


def test_the_expected_answers_have_the_shapes_of_one_encode_and_256_decodes():
    expected = expected_answers(MODEL, latents(16))
    assert {k: v.shape for k, v in expected.items()} == {"mu": (1, 16), "logvar": (1, 16), "image": (256, 1, 28, 28)}
    assert 0 <= expected["image"].min() and expected["image"].max() <= 1  # the Bernoulli mean


def test_npy_json_and_oip_answers_are_read():
    image = np.ones((2, 1, 28, 28), np.float32)
    npy = answer(200, content=npy_bytes(image), headers={"content-type": "application/x-npy"})
    assert np.array_equal(read_answer(npy)["image"], image)
    encoded = answer(200, json={"mu": [[1.0, 2.0]], "logvar": [[0.0, 0.0]], "seed": None})
    assert {k: v.tolist() for k, v in read_answer(encoded).items()} == {"mu": [[1.0, 2.0]], "logvar": [[0.0, 0.0]]}
    outputs = {"outputs": [{"name": "mu", "datatype": "FP32", "shape": [1, 2], "data": [1.0, 2.0]}]}
    assert read_answer(answer(200, json=outputs))["mu"].tolist() == [[1.0, 2.0]]
    head = json.dumps(
        {
            "outputs": [
                {
                    "name": "image",
                    "datatype": "FP32",
                    "shape": [2, 1, 28, 28],
                    "parameters": {"binary_data_size": image.nbytes},
                }
            ]
        }
    ).encode()
    binary = answer(200, content=head + image.tobytes(), headers={HEADER_LENGTH: str(len(head))})
    assert np.array_equal(read_answer(binary)["image"], image)


def test_an_error_answer_is_an_error():
    with pytest.raises(httpx.HTTPStatusError):
        read_answer(answer(500, json={"detail": "no"}))
