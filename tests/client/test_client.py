"""client/vae_client: what it imports, how it puts images and arrays on the wire, and how it reads a problem detail.

The client against a real server is tests/integration/test_client.py.
"""

import io
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image
from vae_client import ServiceError, to_image, to_images
from vae_client.calls import edit, interpolate, query, ready
from vae_client.errors import error_from
from vae_client.wire import each_image, file_bytes, image_files, npy_bytes, read_npy

ROOT = Path(__file__).resolve().parents[2]

CHECK = """
import sys
from vae_client import AsyncClient, Client, ServiceError, to_images
heavy = ("onnxruntime", "torch", "fastapi", "starlette", "pydantic", "uvicorn", "training", "service", "vaeformat")
bad = sorted(n for n in sys.modules if n.split(".")[0] in heavy)
print("FORBIDDEN", bad)
"""


def test_importing_the_client_loads_neither_onnxruntime_torch_fastapi_nor_anything_of_the_service():
    result = subprocess.run([sys.executable, "-c", CHECK], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "FORBIDDEN []" in result.stdout, result.stdout


def _response(status: int, **kwargs) -> httpx.Response:
    return httpx.Response(status, request=httpx.Request("POST", "http://vae/encode"), **kwargs)


def test_a_problem_detail_becomes_a_service_error_with_every_field():
    problem = {
        "type": "urn:vae-service:problem:invalid-input",
        "title": "Invalid input",
        "status": 422,
        "detail": "parameter 'n': Input should be greater than or equal to 1",
        "instance": "/sample",
        "errors": [{"loc": ["query", "n"], "msg": "Input should be greater than or equal to 1"}],
    }
    response = _response(422, json=problem, headers={"content-type": "application/problem+json"})
    error = error_from(response)
    assert isinstance(error, ServiceError)
    assert (error.status, error.title, error.detail, error.type, error.instance) == (
        422,
        "Invalid input",
        problem["detail"],
        problem["type"],
        "/sample",
    )
    assert error.errors == problem["errors"] and error.body == response.content and error.retry_after is None
    assert str(error) == f"422 Invalid input: {problem['detail']}"


def test_an_answer_that_is_no_problem_detail_keeps_its_status_and_text_and_retry_after_is_read():
    error = error_from(_response(502, text="upstream down", headers={"retry-after": "3"}))
    assert (error.status, error.title, error.detail, error.type) == (502, "Bad Gateway", "upstream down", "about:blank")
    assert error.retry_after == 3.0


def test_a_success_that_is_not_npy_is_a_service_error_naming_what_came():
    with pytest.raises(ServiceError, match=r"answered text/html, not application/x-npy") as caught:
        read_npy(_response(200, text="<html>", headers={"content-type": "text/html"}))
    assert caught.value.status == 200


def test_npy_bytes_are_float32_and_read_back_exactly():
    z = np.random.default_rng(0).normal(size=(3, 5))
    body = npy_bytes(z)
    back = read_npy(_response(200, content=body, headers={"content-type": "application/x-npy"}))
    assert back.dtype == np.float32
    np.testing.assert_array_equal(back, z.astype(np.float32))


def test_arrays_of_two_dimensions_are_one_image_and_of_three_or_four_a_batch():
    assert len(each_image(np.zeros((28, 28)))) == 1
    assert len(each_image(np.zeros((5, 28, 28)))) == 5  # [N, H, W], as MNIST arrays come
    assert len(each_image(np.zeros((5, 1, 28, 28)))) == 5  # [N, C, H, W], as the service answers
    assert len(each_image([np.zeros((1, 28, 28)), b"\x89PNG..."])) == 2
    with pytest.raises(ValueError, match=r"shape \(1, 1, 1, 1, 1\)"):
        each_image(np.zeros((1, 1, 1, 1, 1)))


def test_image_arrays_become_pngs_with_their_values_scaled_to_8_bits():
    gray = np.linspace(0, 1, 28 * 28, dtype=np.float32).reshape(1, 28, 28)
    data, media = file_bytes(gray)
    assert media == "image/png"
    decoded = np.asarray(Image.open(io.BytesIO(data)))
    assert decoded.shape == (28, 28)
    np.testing.assert_array_equal(decoded, np.rint(gray[0] * 255).astype(np.uint8))
    rgb = to_image(np.zeros((3, 4, 5), dtype=np.uint8))
    assert (rgb.mode, rgb.size) == ("RGB", (5, 4))
    with pytest.raises(ValueError, match="int32"):
        to_image(np.full((2, 2), 1000, dtype=np.int32))


def test_files_and_bytes_go_as_they_are_with_their_media_type(tmp_path):
    jpeg = io.BytesIO()
    Image.new("L", (8, 8)).save(jpeg, format="JPEG")
    path = tmp_path / "digit.jpg"
    path.write_bytes(jpeg.getvalue())
    assert file_bytes(path) == (jpeg.getvalue(), "image/jpeg")
    assert file_bytes(str(path))[0] == jpeg.getvalue()
    parts = image_files([jpeg.getvalue(), Image.new("L", (8, 8))], "with")
    assert [(field, name, media) for field, (name, _, media) in parts] == [
        ("with", "0.jpeg", "image/jpeg"),
        ("with", "1.png", "image/png"),
    ]


def test_to_images_flattens_leading_axes_in_row_order():
    grid = np.zeros((2, 3, 1, 4, 4), dtype=np.float32)
    grid[1, 0] = 1.0
    images = to_images(grid)
    assert len(images) == 6 and images[3].getpixel((0, 0)) == 255 and images[2].getpixel((0, 0)) == 0


def test_query_leaves_out_none_and_repeats_lists():
    assert query(model=None, n=4, label=[1, "7"], dims=np.array([0, 3])) == [
        ("n", "4"),
        ("label", "1"),
        ("label", "7"),
        ("dims", "0"),
        ("dims", "3"),
    ]


def test_interpolate_and_edit_refuse_ambiguous_ends_and_vectors_before_sending():
    with pytest.raises(ValueError, match="give one of them"):
        interpolate(None, None, None, None, None, None)
    with pytest.raises(ValueError, match="give one of them"):
        interpolate(np.zeros((2, 28, 28)), np.zeros((2, 4)), None, None, None, None)
    with pytest.raises(ValueError, match="not both"):
        edit(np.zeros((28, 28)), np.zeros(4), np.zeros((28, 28)), None, None, None, None)
    with pytest.raises(ValueError, match="needs a vector"):
        edit(np.zeros((28, 28)), None, np.zeros((28, 28)), None, None, None, None)


def test_ready_is_false_while_the_service_answers_503_and_other_errors_raise():
    assert ready().result(_response(200, json={"ready": True})) is True
    assert ready().result(_response(503, json={"status": 503}, headers={"retry-after": "5"})) is False
    with pytest.raises(ServiceError, match="^500"):
        ready().result(_response(500, text="boom"))


def test_a_rerun_resumes_only_when_its_inputs_and_answer_options_are_the_same(tmp_path):
    from vae_client.cli import Parts, _parser, job_of

    latents = tmp_path / "z.npy"
    np.save(latents, np.zeros((3, 4), np.float32))
    out = tmp_path / "x.npy"

    def parts_after(*options: str) -> list[str]:
        a = _parser().parse_args([*options, "decode", str(latents), "-o", str(out)])
        stat = latents.stat()
        parts = Parts(out, job_of(a, [str(latents), stat.st_size, stat.st_mtime_ns]))
        found = sorted(p.name for p in parts.folder.glob("*.npy"))
        np.save(parts.path(0), np.zeros(1))  # a finished part of this job
        return found

    assert parts_after("--model", "mnist-cvae", "--label", "1") == []
    assert parts_after("--model", "mnist-cvae", "--label", "1") == ["000000.npy"]  # the same job: resumed
    assert parts_after("--model", "mnist-cvae", "--label", "7") == []  # another label: afresh
    assert parts_after("--model", "fashion-cvae", "--label", "7") == []  # another model: afresh
    assert parts_after("--quiet", "--model", "fashion-cvae", "--label", "7") == ["000000.npy"]  # no other answer
