"""bench/peer_requests.py: the bodies every server gets are well formed and carry the same content."""

import io
import json

import numpy as np
from PIL import Image

from bench.load import ROOT
from bench.peer_requests import (
    DECODE_ROWS,
    HEADER_LENGTH,
    latent_dim,
    latents,
    npy_array,
    npy_decode,
    oip_decode,
    oip_encode,
    oip_outputs,
    service_decode,
    service_encode,
)
from bench.workloads import ENCODE, digit_png
from service.http.oip import parse_request
from vaeformat.manifest import TensorSpec

MODEL = ROOT / "models" / "mnist-vae"


def test_the_npy_body_is_the_seeded_latents_at_the_models_size():
    dim = latent_dim(MODEL)
    assert dim == json.loads((MODEL / "manifest.json").read_text())["latent_dim"]
    z = latents(dim)
    for request in (npy_decode(z), service_decode(z, "mnist-vae")):
        body = np.load(io.BytesIO(request.body), allow_pickle=False)
        assert body.shape == (DECODE_ROWS, dim) and body.dtype == np.float32
        assert np.array_equal(body, z) and np.array_equal(z, latents(dim))  # seeded: the same every run
        assert request.headers == {"Content-Type": "application/x-npy", "Accept": "application/x-npy"}
    assert abs(float(z.mean())) < 0.1 and abs(float(z.std()) - 1) < 0.1  # standard normal draws


def test_the_service_and_mosec_get_the_same_png():
    assert service_encode("mnist-vae").body == ENCODE.body == digit_png()
    assert service_encode("mnist-vae").path == "/encode?model=mnist-vae"


def test_the_oip_decode_request_parses_with_the_services_own_parser():
    z = latents(16)
    request = oip_decode(z)
    spec = [TensorSpec(name="z", dtype="float32", shape=["N", 16])]
    outputs = [TensorSpec(name=n, dtype="float32", shape=["N", 1, 28, 28]) for n in ("image", "logits")]
    parsed = parse_request(request.body, request.headers[HEADER_LENGTH], spec, outputs, 1024, "VAE_MAX_LATENTS")
    assert np.array_equal(parsed.feeds["z"], z)
    assert parsed.outputs == ["image"] and parsed.binary == {"image": True}
    assert request.path == "/v2/models/decoder/infer"


def test_the_oip_encode_request_holds_the_png_as_one_bytes_element():
    request = oip_encode()
    size = int(request.headers[HEADER_LENGTH])
    header, binary = json.loads(request.body[:size]), request.body[size:]
    (tensor,) = header["inputs"]
    assert (tensor["name"], tensor["datatype"], tensor["shape"]) == ("image", "BYTES", [1, 1])
    assert tensor["parameters"]["binary_data_size"] == len(binary) == 4 + len(digit_png())
    assert int.from_bytes(binary[:4], "little") == len(digit_png()) and binary[4:] == digit_png()
    assert Image.open(io.BytesIO(binary[4:])).size == (28, 28)
    assert [o["name"] for o in header["outputs"]] == ["mu", "logvar"]  # as JSON: no binary_data asked for
    wire = request.wire("127.0.0.1", 8000)
    assert f"Content-Length: {len(request.body)}".encode() in wire and wire.endswith(digit_png())


def test_oip_answers_are_read_from_json_data_and_from_binary_parts():
    image = np.arange(2 * 4, dtype=np.float32).reshape(2, 1, 2, 2)
    header = {
        "outputs": [
            {"name": "mu", "datatype": "FP32", "shape": [1, 2], "data": [0.5, -1.5]},
            {"name": "image", "datatype": "FP32", "shape": [2, 1, 2, 2], "parameters": {"binary_data_size": 32}},
        ]
    }
    head = json.dumps(header).encode()
    arrays = oip_outputs(head + image.tobytes(), str(len(head)))
    assert np.array_equal(arrays["mu"], [[0.5, -1.5]]) and np.array_equal(arrays["image"], image)
    assert np.array_equal(
        oip_outputs(json.dumps({"outputs": header["outputs"][:1]}).encode(), None)["mu"], [[0.5, -1.5]]
    )


def test_npy_array_reads_what_numpy_saves():
    z = latents(3, rows=2)
    assert np.array_equal(npy_array(npy_decode(z).body), z)
