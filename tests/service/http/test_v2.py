"""The Open Inference Protocol routes (/v2) and the model repository API through httpx on the ASGI app.

Every answer is also checked against the protocol's response shapes (tests/oip_spec.py).
"""

import json
import shutil

import httpx
import numpy as np
import pytest

from service.http.app import create_app
from service.settings import Settings

from ... import oip_spec
from ..asgi import serve
from ..payloads import load_npy

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def settings(zoo):
    return Settings(models_dir=zoo, max_images=8, max_latents=64, max_body_bytes=200_000, model_control="explicit")


def _binary_request(inputs: dict[str, np.ndarray], outputs: list[str] | None = None) -> tuple[bytes, dict]:
    """A request in the binary tensor data extension, as tritonclient builds it (and with no Content-Type)."""
    datatypes = {np.dtype(np.float32): "FP32", np.dtype(np.int64): "INT64", np.dtype(np.int32): "INT32"}
    header = {
        "inputs": [
            {
                "name": n,
                "shape": list(a.shape),
                "datatype": datatypes[a.dtype],
                "parameters": {"binary_data_size": a.nbytes},
            }
            for n, a in inputs.items()
        ],
        "parameters": {} if outputs else {"binary_data_output": True},
    }
    if outputs:
        header["outputs"] = [{"name": n, "parameters": {"binary_data": True}} for n in outputs]
    text = json.dumps(header).encode()
    body = text + b"".join(a.tobytes() for a in inputs.values())
    return body, {"Inference-Header-Content-Length": str(len(text))}


def _binary_outputs(response) -> dict[str, np.ndarray]:
    n = int(response.headers["inference-header-content-length"])
    header = json.loads(response.content[:n])
    oip_spec.inference_response(header)
    arrays, offset = {}, n
    for out in header["outputs"]:
        size = out["parameters"]["binary_data_size"]
        arrays[out["name"]] = np.frombuffer(response.content[offset : offset + size], np.float32).reshape(out["shape"])
        offset += size
    assert offset == len(response.content)
    return arrays


async def test_server_metadata_and_health(client):
    meta = (await client.get("/v2")).json()
    oip_spec.server_metadata(meta)
    assert {"binary_tensor_data", "model_repository"} <= set(meta["extensions"])
    live, ready = await client.get("/v2/health/live"), await client.get("/v2/health/ready")
    assert live.status_code == ready.status_code == 200
    oip_spec.server_live(live.json()), oip_spec.server_ready(ready.json())
    assert live.json() == {"live": True} and ready.json() == {"ready": True}


async def test_model_metadata_lists_the_manifest_tensors_with_oip_datatypes(client):
    for path in ("/v2/models/tiny-cvae.decoder", "/v2/models/tiny-cvae.decoder/versions/0.0.1"):
        r = await client.get(path)
        assert r.status_code == 200, r.text
        oip_spec.model_metadata(r.json())
    body = r.json()
    assert body["name"] == "tiny-cvae.decoder" and body["platform"] == "onnx_onnxv1" and body["versions"] == ["0.0.1"]
    assert body["inputs"] == [
        {"name": "z", "datatype": "FP32", "shape": [-1, 4]},
        {"name": "label", "datatype": "INT64", "shape": [-1]},
    ]
    assert body["outputs"][0] == {"name": "image", "datatype": "FP32", "shape": [-1, 1, 8, 8]}
    encoder = (await client.get("/v2/models/tiny-vae.encoder")).json()
    assert [t["name"] for t in encoder["outputs"]] == ["mu", "logvar"]
    ready = await client.get("/v2/models/tiny-vae.encoder/ready")
    oip_spec.model_ready(ready.json())
    assert ready.json() == {"name": "tiny-vae.encoder", "ready": True}


@pytest.mark.parametrize(
    "path", ["/v2/models/nope", "/v2/models/nope.encoder", "/v2/models/tiny-vae.encoder/versions/9", "/v2/nope"]
)
async def test_unknown_models_and_routes_are_404_with_an_error_object(client, path):
    for r in (await client.get(path), await client.get(path + "/ready")):
        assert r.status_code == 404 and r.headers["content-type"] == "application/json"
        oip_spec.error(r.json())
    assert "tiny-vae.encoder" in (await client.get("/v2/models/nope.encoder")).json()["error"]


async def test_json_infer_equals_decode_and_echoes_the_id(client):
    z = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)
    request = {
        "id": "req-7",
        "inputs": [{"name": "z", "shape": [3, 4], "datatype": "FP32", "data": z.tolist()}],  # nested data
        "outputs": [{"name": "image"}],
    }
    r = await client.post("/v2/models/tiny-vae.decoder/versions/0.0.1/infer", json=request)
    assert r.status_code == 200, r.text
    body = r.json()
    oip_spec.inference_response(body)
    assert body["id"] == "req-7" and body["model_name"] == "tiny-vae.decoder" and body["model_version"] == "0.0.1"
    (out,) = body["outputs"]
    assert out["name"] == "image" and out["datatype"] == "FP32" and out["shape"] == [3, 1, 8, 8]
    expected = load_npy((await client.post("/decode?model=tiny-vae&format=npy", json={"z": z.tolist()})).content)
    np.testing.assert_allclose(np.array(out["data"], np.float32).reshape(3, 1, 8, 8), expected, atol=1e-6)


async def test_the_whole_model_counts_its_own_inferences_in_the_statistics(settings):
    """The bare model name is an OIP model of its own (encoder then decoder): its requests are its statistics."""
    image = np.zeros((1, 1, 8, 8), np.float32)
    request = {"inputs": [{"name": "image", "shape": [1, 1, 8, 8], "datatype": "FP32", "data": image.ravel().tolist()}]}
    async with serve(settings) as c:
        for _ in range(3):
            assert (await c.post("/v2/models/tiny-vae/infer", json=request)).status_code == 200
        (whole,) = (await c.get("/v2/models/tiny-vae/stats")).json()["model_stats"]
        assert whole["name"] == "tiny-vae" and whole["inference_count"] == 3
        assert whole["inference_stats"]["compute_infer"]["ns"] > 0
        every = {m["name"]: m["inference_count"] for m in (await c.get("/v2/models/stats")).json()["model_stats"]}
        assert every["tiny-vae"] == 3 and {"tiny-vae.encoder", "tiny-vae.decoder"} <= set(every)


async def test_binary_infer_of_the_conditional_encoder_equals_encode(client):
    images = np.random.default_rng(1).random((2, 1, 8, 8), dtype=np.float32)
    labels = np.array([2, 0], np.int32)  # INT32 labels, as a client may send them: converted without loss
    body, headers = _binary_request({"image": images, "label": labels})
    r = await client.post("/v2/models/tiny-cvae.encoder/infer", content=body, headers=headers)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/octet-stream"
    arrays = _binary_outputs(r)
    assert set(arrays) == {"mu", "logvar"} and arrays["mu"].shape == (2, 4)
    # The same rows through the service's own graph call (what /encode runs after decoding its images).
    also = await client.post(
        "/v2/models/tiny-cvae.encoder/infer",
        json={
            "inputs": [
                {
                    "name": "image",
                    "shape": [2, 1, 8, 8],
                    "datatype": "FP64",
                    "data": images.astype(np.float64).ravel().tolist(),
                },
                {"name": "label", "shape": [2], "datatype": "INT64", "data": [2, 0]},
            ],
            "outputs": [{"name": "mu", "parameters": {"binary_data": False}}],
        },
    )
    np.testing.assert_allclose(np.array(also.json()["outputs"][0]["data"]).reshape(2, 4), arrays["mu"], atol=1e-6)


async def test_raw_single_input_request(client):
    z = np.zeros((5, 4), np.float32)
    r = await client.post(
        "/v2/models/tiny-vae.decoder/infer", content=z.tobytes(), headers={"Inference-Header-Content-Length": "0"}
    )
    assert r.status_code == 200, r.text
    assert _binary_outputs(r)["image"].shape == (5, 1, 8, 8)


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ([{"name": "z", "shape": [1, 5], "datatype": "FP32", "data": [0] * 5}], "expects [-1, 4]"),
        ([{"name": "z", "shape": [2, 4], "datatype": "FP32", "data": [0] * 7}], "holds 7 values"),
        ([{"name": "z", "shape": [65, 4], "datatype": "FP32", "data": [0] * 260}], "VAE_MAX_LATENTS"),
        ([{"name": "z", "shape": [1, 4], "datatype": "BYTES", "data": ["a"] * 4}], "datatype 'BYTES'"),
        ([{"name": "z", "shape": [1, 4], "datatype": "FP32", "data": ["a"] * 4}], "numbers only"),
        ([{"name": "z", "shape": [1, 4], "datatype": "FP32", "data": [[0, 0], [0]]}], "rectangular"),
        ([{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [0] * 4}], "exactly ['z']"),
        ([{"name": "z", "shape": [1, 4], "datatype": "FP32", "parameters": {"binary_data_size": 16}}], "add up to 16"),
        ([{"name": "z", "shape": [1, 4], "datatype": "FP32", "data": [float("nan"), 0, 0, 0]}], "NaN or infinity"),
    ],
)
async def test_bad_tensors_are_400_with_an_error_object(client, inputs, message):
    body = json.dumps({"inputs": inputs})  # Python's json writes NaN, as some clients do
    r = await client.post("/v2/models/tiny-vae.decoder/infer", content=body)
    assert r.status_code == 400, r.text
    oip_spec.error(r.json())
    assert message in r.json()["error"]


async def test_labels_must_name_a_class_and_counts_are_checked_before_parsing(client):
    request = {
        "inputs": [
            {"name": "z", "shape": [1, 4], "datatype": "FP32", "data": [0, 0, 0, 0]},
            {"name": "label", "shape": [1], "datatype": "INT64", "data": [3]},
        ]
    }
    r = await client.post("/v2/models/tiny-cvae.decoder/infer", json=request)
    assert r.status_code == 400 and "0..2" in r.json()["error"]
    # 80,000 numbers: more than 64 rows of 4 (+ labels) can hold; refused before any is parsed.
    flood = b'{"inputs":[{"name":"z","shape":[1,4],"datatype":"FP32","data":[' + b"0," * 79_999 + b"0]}]}"
    r = await client.post("/v2/models/tiny-vae.decoder/infer", content=flood)
    assert r.status_code == 413 and "VAE_MAX_LATENTS" in r.json()["error"]
    # A binary size that the body does not hold, and a header length past the body.
    body, headers = _binary_request({"z": np.zeros((2, 4), np.float32)})
    r = await client.post("/v2/models/tiny-vae.decoder/infer", content=body[:-4], headers=headers)
    assert r.status_code == 400 and "binary part holds 28" in r.json()["error"]
    r = await client.post(
        "/v2/models/tiny-vae.decoder/infer", content=b"{}", headers={"Inference-Header-Content-Length": "99"}
    )
    assert r.status_code == 400 and "body holds only 2 bytes" in r.json()["error"]
    # Latin-1 "²": a digit to str.isdigit, not to int().
    headers = [(b"Inference-Header-Content-Length", b"\xb2")]
    r = await client.post("/v2/models/tiny-vae.decoder/infer", content=b"{}", headers=headers)
    assert r.status_code == 400 and "is not a byte count" in r.json()["error"]


async def test_a_wrong_method_is_405_with_an_error_object(client):
    r = await client.get("/v2/models/tiny-vae.decoder/infer")
    assert r.status_code == 405 and "POST" in r.headers["allow"]
    oip_spec.error(r.json())
    r = await client.post("/v2/models/tiny-vae.decoder")  # a control route: the same kind of answer
    assert (
        r.status_code == 405 and r.json()["error"] == "POST is not allowed on /v2/models/tiny-vae.decoder; allowed: GET"
    )


async def test_oip_routes_are_counted_under_their_templates(client):
    await client.get("/v2/models/tiny-vae.encoder")
    text = (await client.get("/metrics")).text
    assert 'route="/v2/models/{name}"' in text and 'route="/v2/models/{name}/infer"' in text


async def test_repository_index_unload_and_load(client):
    r = await client.post("/v2/repository/index")
    oip_spec.repository_index(r.json())
    assert {(e["name"], e["state"]) for e in r.json()} == {
        ("tiny-ae", "READY"),
        ("tiny-cvae", "READY"),
        ("tiny-vae", "READY"),
    }
    r = await client.post("/v2/repository/models/tiny-ae/unload", json={"parameters": {"unload_dependents": False}})
    assert r.status_code == 200, r.text
    assert (await client.get("/v2/models/tiny-ae.encoder/ready")).status_code == 404
    assert (await client.get("/models/tiny-ae")).status_code == 404
    index = {e["name"]: e for e in (await client.post("/v2/repository/index")).json()}
    assert index["tiny-ae"]["state"] == "UNAVAILABLE" and index["tiny-ae"]["reason"] == "unloaded"
    assert (await client.post("/v2/repository/models/tiny-ae/load")).status_code == 200
    assert (await client.get("/models/tiny-ae")).status_code == 200
    assert (await client.get("/v2/models/tiny-ae.decoder/ready")).status_code == 200


async def test_the_default_model_and_unknown_folders(client):
    # tiny-vae is the default (the best unconditional generative model): unloading it moves the default.
    assert (await client.post("/v2/repository/models/tiny-vae/unload")).status_code == 200
    assert (await client.get("/models")).json()["default"] == "tiny-ae"
    assert (await client.post("/v2/repository/models/tiny-vae/load")).status_code == 200
    assert (await client.get("/models")).json()["default"] == "tiny-vae"
    assert (await client.post("/v2/repository/models/tiny-ae/unload")).status_code == 200
    assert (await client.post("/v2/repository/models/tiny-ae/load")).status_code == 200
    listed = [m["name"] for m in (await client.get("/models")).json()["models"]]
    assert listed == sorted(listed) and "tiny-ae" in listed  # a reloaded model is listed in its place, not last
    names = (("nope", 404), (".hidden", 400), ("tiny-ae%2F..%2Ftiny-vae", 404), ("a" * 255, 404))
    for name, status in (*names, ("a" * 300, 400), ("a" * 10_000, 400), ("tab%09name", 400)):
        r = await client.post(f"/v2/repository/models/{name}/load")
        assert r.status_code == status, (name, r.text)
        oip_spec.error(r.json())


async def test_a_broken_folder_fails_to_load_and_the_others_keep_serving(models_dir):
    shutil.copytree(models_dir / "tiny-vae", models_dir / "second")
    manifest = json.loads((models_dir / "second" / "manifest.json").read_text())
    manifest["name"] = "second"
    manifest["latent_dim"] = 5  # no longer what the graphs declare
    (models_dir / "second" / "manifest.json").write_text(json.dumps(manifest))
    async with serve(Settings(models_dir=models_dir, model_control="explicit")) as c:
        r = await c.post("/v2/repository/models/second/load")
        assert r.status_code == 400 and "second/manifest.json" in r.json()["error"], r.text
        index = {e["name"]: e for e in (await c.post("/v2/repository/index")).json()}
        assert index["second"]["state"] == "UNAVAILABLE" and "manifest.json" in index["second"]["reason"]
        assert (await c.get("/v2/models/tiny-vae.decoder/ready")).status_code == 200
        # A reload that fails keeps the model it would have replaced.
        (models_dir / "tiny-ae" / "decoder.onnx").write_bytes(b"not a graph")
        assert (await c.post("/v2/repository/models/tiny-ae/load")).status_code == 400
        assert (await c.get("/models/tiny-ae")).status_code == 200


async def test_model_control_none_refuses_load_and_unload(zoo):
    async with serve(Settings(models_dir=zoo)) as c:
        for action in ("load", "unload"):
            r = await c.post(f"/v2/repository/models/tiny-ae/{action}")
            assert r.status_code == 409 and "VAE_MODEL_CONTROL=explicit" in r.json()["error"]
        assert (await c.post("/v2/repository/index")).status_code == 200


async def test_api_key_errors_are_error_objects_under_v2(zoo):
    async with serve(Settings(models_dir=zoo, api_key="k")) as c:
        r = await c.get("/v2/models/tiny-vae.encoder")
        assert r.status_code == 401
        oip_spec.error(r.json())
        assert (await c.get("/v2/models/tiny-vae.encoder", headers={"X-API-Key": "k"})).status_code == 200
        for probe in ("/v2/health/live", "/v2/health/ready"):  # probes send no key, as for /health and /ready
            assert (await c.get(probe)).status_code == 200
        assert (await c.get("/models")).json()["type"].startswith("urn:")  # the service's own routes: unchanged


async def test_not_ready_is_503_with_an_error_object_while_live_stays_200(zoo):
    app = create_app(Settings(models_dir=zoo))  # lifespan not entered: the models are not loaded
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as c:
        r = await c.get("/v2/health/ready")
        assert r.status_code == 503 and "retry-after" in r.headers
        oip_spec.error(r.json())
        assert (await c.get("/v2/health/live")).json() == {"live": True}
        assert (await c.post("/v2/models/tiny-vae.decoder/infer", json={})).status_code == 503


async def test_an_answer_larger_than_the_limit_is_refused_before_the_model_runs(zoo):
    z = np.zeros((1, 4), np.float32)

    def request(rows: int, binary: bool) -> dict:
        return {
            "inputs": [{"name": "z", "shape": [rows, 4], "datatype": "FP32", "data": np.zeros((rows, 4)).tolist()}],
            "outputs": [{"name": "image", "parameters": {"binary_data": binary}}],
        }

    async with serve(Settings(models_dir=zoo, max_response_bytes=1024)) as c:
        # One 8x8 image: 64 numbers, up to 1536 bytes as JSON, 256 as binary FP32.
        r = await c.post("/v2/models/tiny-vae.decoder/infer", json=request(len(z), binary=False))
        assert r.status_code == 413 and "VAE_MAX_RESPONSE_BYTES" in r.json()["error"], r.text
        oip_spec.error(r.json())
        assert (await c.post("/v2/models/tiny-vae.decoder/infer", json=request(1, binary=True))).status_code == 200
        r = await c.post("/v2/models/tiny-vae.decoder/infer", json=request(16, binary=True))
        assert r.status_code == 413 and "4096 bytes" in r.json()["error"], r.text
        runs = 'vae_inference_seconds_count{graph="decoder",model="tiny-vae",version="0.0.1"} '
        (line,) = [row for row in (await c.get("/metrics")).text.splitlines() if row.startswith(runs)]
        assert float(line.removeprefix(runs)) == 1  # the one answer within the limit: the refused never ran
