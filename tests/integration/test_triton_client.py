"""Triton's own HTTP client (`tritonclient.http`, unmodified) against a real `python -m service` process (issue 15).

The client checks liveness, readiness and metadata, runs the conditional decoder and encoder with JSON and with
binary tensors (outputs equal to /decode and /encode for the same inputs), gets an inference error for a tensor of
the wrong shape, and drives the model repository API; the service's own routes follow each unload and load. The
server serves a copy of the shipped models, so that nothing here changes `models/`.
"""

from __future__ import annotations

import base64
import io
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from vaeformat.manifest import load_manifest

from .. import oip_spec
from .server import ROOT, running_server

tritonclient_http = pytest.importorskip("tritonclient.http")
from tritonclient.utils import InferenceServerException  # noqa: E402

MODELS = ("mnist-ae", "mnist-cvae", "mnist-vae")
VAE_LATENT_DIM = load_manifest(ROOT / "models" / "mnist-vae").latent_dim


@pytest.fixture(scope="module")
def url(tmp_path_factory) -> Iterator[str]:
    models = tmp_path_factory.mktemp("models")
    for name in MODELS:
        shutil.copytree(ROOT / "models" / name, models / name)
    # One process: statistics are each process's own, and the metrics merged across processes only every second.
    env = {"VAE_MODEL_CONTROL": "explicit", "VAE_STRICT_MODELS": "false", "VAE_PROCESSES": "1"}
    with running_server(Path(models), env) as base:
        yield base


@pytest.fixture(scope="module")
def client(url):
    triton = tritonclient_http.InferenceServerClient(url.removeprefix("http://"))
    yield triton
    triton.close()


def _npy(response: httpx.Response) -> np.ndarray:
    assert response.status_code == 200, response.text
    return np.load(io.BytesIO(response.content))


def _digits(n: int) -> tuple[np.ndarray, list[str]]:
    """n random 28x28 grey images as uint8 pixels and as base64 PNGs (what /encode takes)."""
    pixels = np.random.default_rng(7).integers(0, 256, (n, 28, 28), dtype=np.uint8)
    files = []
    for p in pixels:
        buffer = io.BytesIO()
        Image.fromarray(p, mode="L").save(buffer, format="PNG")
        files.append(base64.b64encode(buffer.getvalue()).decode())
    return pixels, files


def test_health_and_metadata(client, url):
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("mnist-cvae.decoder") and not client.is_model_ready("mnist-cvae.nothing")
    server = client.get_server_metadata()
    oip_spec.server_metadata(server)
    assert {"binary_tensor_data", "model_repository"} <= set(server["extensions"])
    meta = client.get_model_metadata("mnist-cvae.decoder")
    oip_spec.model_metadata(meta)
    assert meta["inputs"] == [
        {"name": "z", "datatype": "FP32", "shape": [-1, 32]},
        {"name": "label", "datatype": "INT64", "shape": [-1]},
    ]
    assert [t["name"] for t in meta["outputs"]] == ["image", "logits"]
    for path in ("/v2/health/live", "/v2/health/ready", "/v2/models/mnist-cvae.decoder/ready"):
        body = httpx.get(url + path).json()
        {"/v2/health/live": oip_spec.server_live, "/v2/health/ready": oip_spec.server_ready}.get(
            path, oip_spec.model_ready
        )(body)


@pytest.mark.parametrize("binary", [False, True])
def test_decoder_equals_decode(client, url, binary):
    z = np.random.default_rng(3).standard_normal((5, 32)).astype(np.float32)
    labels = np.array([0, 3, 7, 9, 3], np.int64)
    inputs = [tritonclient_http.InferInput("z", [5, 32], "FP32"), tritonclient_http.InferInput("label", [5], "INT64")]
    inputs[0].set_data_from_numpy(z, binary_data=binary)
    inputs[1].set_data_from_numpy(labels, binary_data=binary)
    outputs = [tritonclient_http.InferRequestedOutput("image", binary_data=binary)]
    result = client.infer("mnist-cvae.decoder", inputs, outputs=outputs, request_id="r1")
    response = result.get_response()
    oip_spec.inference_response(response)
    assert response["id"] == "r1" and response["model_name"] == "mnist-cvae.decoder"
    expected = _npy(
        httpx.post(f"{url}/decode?model=mnist-cvae&format=npy", json={"z": z.tolist(), "labels": labels.tolist()})
    )
    np.testing.assert_allclose(result.as_numpy("image"), expected, atol=1e-5)


@pytest.mark.parametrize("binary", [False, True])
def test_conditional_encoder_equals_encode(client, url, binary):
    pixels, files = _digits(4)
    labels = np.array([1, 2, 3, 4], np.int32)  # INT32, as a client may hold them: converted without loss
    inputs = [
        tritonclient_http.InferInput("image", [4, 1, 28, 28], "FP32"),
        tritonclient_http.InferInput("label", [4], "INT32"),
    ]
    inputs[0].set_data_from_numpy((pixels[:, None] / np.float32(255)).astype(np.float32), binary_data=binary)
    inputs[1].set_data_from_numpy(labels, binary_data=binary)
    result = client.infer("mnist-cvae.encoder", inputs)  # no outputs named: every output, binary (tritonclient)
    oip_spec.inference_response(result.get_response())
    expected = _npy(
        httpx.post(f"{url}/encode?model=mnist-cvae&format=npy", json={"images": files, "labels": labels.tolist()})
    )
    np.testing.assert_allclose(result.as_numpy("mu"), expected, atol=1e-5)
    assert result.as_numpy("logvar").shape == (4, 32)


def test_statistics_in_tritons_shape_and_the_queue_and_stage_metrics(client, url):
    # The decoder tests above ran mnist-cvae's decoder through OIP and through /decode.
    stats = client.get_inference_statistics("mnist-cvae.decoder")
    (decoder,) = stats["model_stats"]
    inference = decoder["inference_stats"]
    version = load_manifest(ROOT / "models" / "mnist-cvae").version
    assert decoder["name"] == "mnist-cvae.decoder" and decoder["version"] == version
    assert decoder["inference_count"] >= 4 and 1 <= decoder["execution_count"] <= decoder["inference_count"]
    assert inference["success"]["count"] == decoder["inference_count"] and inference["queue"]["count"] >= 4
    assert inference["compute_infer"]["ns"] > 0 and inference["success"]["ns"] >= inference["compute_infer"]["ns"]
    assert sum(b["compute_infer"]["count"] for b in decoder["batch_stats"]) == decoder["execution_count"]
    everything = client.get_inference_statistics()["model_stats"]
    assert {m["name"] for m in everything} == {f"{m}{g}" for m in MODELS for g in ("", ".encoder", ".decoder")}
    with pytest.raises(InferenceServerException, match="no model named"):
        client.get_inference_statistics("mnist-gan.decoder")
    metrics = httpx.get(f"{url}/metrics").text
    labels = f'graph="decoder",model="mnist-cvae",version="{version}"'
    bucket = f'vae_queue_seconds_bucket{{graph="decoder",le="+Inf",model="mnist-cvae",version="{version}"}} '
    queued = [row for row in metrics.splitlines() if row.startswith(bucket)]
    assert queued and float(queued[0].rsplit(" ", 1)[1]) == inference["queue"]["count"]
    for stage in ("queue", "decode", "compute", "render"):
        assert f'vae_stage_seconds_total{{graph="decoder",model="mnist-cvae",stage="{stage}",version="{version}"}}' in (
            metrics
        )
    assert f"vae_queue_depth{{{labels}}} 0.0" in metrics and "vae_requests_in_flight 1.0" in metrics


def test_a_tensor_of_the_wrong_shape_is_an_inference_error(client, url):
    z = tritonclient_http.InferInput("z", [2, 31], "FP32")
    z.set_data_from_numpy(np.zeros((2, 31), np.float32))
    with pytest.raises(InferenceServerException, match=rf"expects \[-1, {VAE_LATENT_DIM}\]") as caught:
        client.infer("mnist-vae.decoder", [z])
    assert caught.value.status() == "400"
    body = httpx.post(f"{url}/v2/models/mnist-vae.decoder/infer", json={"inputs": []})
    assert body.status_code == 400
    oip_spec.error(body.json())


def test_repository_index_unload_and_load(client, url):
    index = client.get_model_repository_index()
    oip_spec.repository_index(index)
    assert {(e["name"], e["state"]) for e in index} == {(name, "READY") for name in MODELS}
    client.unload_model("mnist-ae")
    assert not client.is_model_ready("mnist-ae.encoder")
    assert httpx.get(f"{url}/models/mnist-ae").status_code == 404
    assert httpx.post(f"{url}/encode?model=mnist-ae", json={"images": _digits(1)[1]}).status_code == 404
    states = {e["name"]: e["state"] for e in client.get_model_repository_index()}
    assert states["mnist-ae"] == "UNAVAILABLE"
    client.load_model("mnist-ae")
    assert client.is_model_ready("mnist-ae.encoder")
    assert httpx.get(f"{url}/models/mnist-ae").status_code == 200
    with pytest.raises(InferenceServerException, match="no model folder"):
        client.load_model("no-such-model")


def test_two_versions_of_a_model_side_by_side_through_tritonclient(tmp_path):
    """mnist-vae as version 1 and, from another folder, a version 2 whose decoder is mnist-beta-vae's (other
    weights, other latent size): each version answers on the protocol's and the service's routes."""
    models = tmp_path / "models"
    shutil.copytree(ROOT / "models" / "mnist-vae", models / "mnist-vae")
    second = shutil.copytree(ROOT / "models" / "mnist-beta-vae", models / "mnist-vae-2")
    manifest = (second / "manifest.json").read_text()
    (second / "manifest.json").write_text(
        manifest.replace('"name": "mnist-beta-vae"', '"name": "mnist-vae"').replace('"version": "1"', '"version": "2"')
    )
    with running_server(models, {"VAE_VERSION_POLICY": "all", "VAE_PROCESSES": "1"}) as base:
        triton = tritonclient_http.InferenceServerClient(base.removeprefix("http://"))
        try:
            assert triton.is_model_ready("mnist-vae", "1") and triton.is_model_ready("mnist-vae", "2")
            assert triton.get_model_metadata("mnist-vae")["versions"] == ["2", "1"]
            index = {(m["name"], m["version"]) for m in triton.get_model_repository_index()}
            assert {("mnist-vae", "1"), ("mnist-vae", "2")} <= index
            for version, dim in (("1", VAE_LATENT_DIM), ("2", 32)):
                z = np.random.default_rng(1).standard_normal((3, dim)).astype(np.float32)
                tensor = tritonclient_http.InferInput("z", [3, dim], "FP32")
                tensor.set_data_from_numpy(z)
                result = triton.infer("mnist-vae.decoder", [tensor], model_version=version)
                assert result.get_response()["model_version"] == version
                ours = httpx.post(
                    f"{base}/decode?model=mnist-vae&version={version}&format=npy",
                    content=_npy_bytes(z),
                    headers={"content-type": "application/x-npy"},
                )
                assert ours.headers["x-model-version"] == version
                np.testing.assert_allclose(result.as_numpy("image"), _npy(ours), atol=1e-6)
            triton.infer("mnist-vae.decoder", [tensor], model_version="2")  # one more call, of version 2 only
            for version, calls in (("1", 2), ("2", 3)):  # each version's statistics count its own calls
                (decoder,) = triton.get_inference_statistics("mnist-vae.decoder", version)["model_stats"]
                assert decoder["version"] == version and decoder["inference_count"] == calls
        finally:
            triton.close()


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()
