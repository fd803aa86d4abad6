"""GET /models, /models/{name}, /health, /ready, /metrics, and the OpenAPI document."""

import httpx
import pytest

from service.http.app import create_app

from ...asgi import serve
from ...payloads import png

pytestmark = pytest.mark.anyio


async def test_models_lists_manifests_and_real_providers(client):
    body = (await client.get("/models")).json()
    assert body["default"] == "tiny-vae" and body["default_conditional"] == "tiny-cvae" and body["refused"] == []
    by_name = {m["name"]: m for m in body["models"]}
    assert by_name["tiny-ae"]["capabilities"]["sample"] is False
    assert by_name["tiny-cvae"]["labels"] == ["zero", "one", "two"]
    assert by_name["tiny-vae"]["providers"]["encoder"][-1] == "CPUExecutionProvider"


async def test_model_details_carry_metrics_and_provenance_but_not_the_test_indices(client):
    body = (await client.get("/models/tiny-cvae")).json()
    assert body["metrics"]["recon_squared_error"] == 1.0
    assert "test_indices" not in body["training"]["split"] and body["training"]["split"]["test_size"] == 2
    assert body["files"]["decoder"]["inputs"][1]["name"] == "label"
    assert (await client.get("/models/absent")).status_code == 404


async def test_health_and_ready_report_providers(client):
    health = (await client.get("/health")).json()
    assert health["ready"] is True and health["gpu"] in (True, False)
    assert set(health["providers"]) == {"tiny-ae", "tiny-vae", "tiny-cvae"}
    assert (await client.get("/ready")).json()["default"] == "tiny-vae"


async def test_before_startup_ready_is_503_with_retry_after_and_health_is_200(settings):
    app = create_app(settings)  # lifespan not run: nothing is loaded
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
        ready = await client.get("/ready")
        sample = await client.get("/sample")
        health = await client.get("/health")
    assert ready.status_code == 503 and ready.headers["retry-after"] and sample.status_code == 503
    assert health.status_code == 200 and health.json()["ready"] is False


async def test_refused_folders_are_listed(models_dir, settings):
    (models_dir / "tiny-ae" / "encoder.onnx").write_bytes(b"tampered")
    async with serve(settings.model_copy(update={"models_dir": models_dir})) as client:
        body = (await client.get("/models")).json()
    assert [m["name"] for m in body["models"]] == ["tiny-cvae", "tiny-vae"]
    assert "files.encoder.sha256" in body["refused"][0]["reason"]


async def test_metrics_count_requests_inference_and_images(settings):
    async with serve(settings) as client:  # a fresh app: counts start at zero
        await client.get("/sample?n=5&seed=0")
        await client.get("/sample?model=tiny-ae")
        await client.post("/encode", content=png(), headers={"content-type": "image/png"})
        text = (await client.get("/metrics")).text
    assert 'vae_requests_total{method="GET",route="/sample",status="200"} 1.0' in text
    assert 'vae_requests_total{method="GET",route="/sample",status="409"} 1.0' in text
    assert 'vae_images_produced_total{model="tiny-vae",version="0.0.1"} 5.0' in text
    assert 'vae_inference_batch_size_count{graph="decoder",model="tiny-vae",version="0.0.1"} 1.0' in text
    assert 'vae_inference_seconds_count{graph="encoder",model="tiny-vae",version="0.0.1"} 1.0' in text
    assert 'provider="CPUExecutionProvider"' in text or 'provider="CUDAExecutionProvider"' in text


async def test_openapi_documents_every_route_with_examples(client):
    spec = (await client.get("/openapi.json")).json()
    routes = {(path, method) for path, item in spec["paths"].items() for method in item}
    expected = {
        ("/encode", "post"),
        ("/decode", "post"),
        ("/reconstruct", "post"),
        ("/sample", "get"),
        ("/generate", "get"),
        ("/generate", "post"),
        ("/models", "get"),
        ("/models/{name}", "get"),
        ("/health", "get"),
        ("/ready", "get"),
        ("/metrics", "get"),
    }
    assert expected <= routes
    for path, method in expected:
        op = spec["paths"][path][method]
        text = str(op)
        assert "example" in text, f"{method.upper()} {path} has no example"
        assert op.get("description") or op.get("summary")
    assert "multipart/form-data" in spec["paths"]["/encode"]["post"]["requestBody"]["content"]
    assert (await client.get("/docs")).status_code == 200


async def test_once_shutdown_begins_ready_is_503_and_the_rest_still_works(settings):
    app = create_app(settings)
    async with app.lifespan():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
            assert (await client.get("/ready")).status_code == 200
            app.state.begin_shutdown()  # what the server does at SIGTERM (service/http/server.py)
            ready = await client.get("/ready")
            health = await client.get("/health")
            models = await client.get("/models")
    assert ready.status_code == 503 and int(ready.headers["retry-after"]) > 0
    assert "shutting down" in ready.json()["detail"]
    assert health.status_code == 200 and health.json()["ready"] is False
    assert models.status_code == 200  # requests already on their way are still answered
