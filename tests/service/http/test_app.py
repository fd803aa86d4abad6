"""create_app: CORS is off unless VAE_CORS_ORIGINS names origins; then preflights pass even with an API key."""

from __future__ import annotations

import pytest

from service.settings import Settings

from ..asgi import serve

pytestmark = pytest.mark.anyio
ORIGIN = "https://app.example.com"
PREFLIGHT = {"Origin": ORIGIN, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "x-api-key"}


async def test_cors_is_off_by_default(client):
    r = await client.get("/models", headers={"Origin": ORIGIN})
    assert r.status_code == 200 and "access-control-allow-origin" not in r.headers
    r = await client.options("/decode", headers=PREFLIGHT)
    assert "access-control-allow-origin" not in r.headers


async def test_allowed_origins_get_cors_headers_and_preflights_need_no_key(zoo):
    settings = Settings(models_dir=zoo, cors_origins=f"{ORIGIN}, http://localhost:3000", api_key="k")
    async with serve(settings) as client:
        r = await client.options("/decode", headers=PREFLIGHT)
        assert r.status_code == 200, r.text
        assert r.headers["access-control-allow-origin"] == ORIGIN
        assert "x-api-key" in r.headers["access-control-allow-headers"].lower()
        r = await client.get("/sample?n=1", headers={"Origin": ORIGIN, "X-API-Key": "k"})
        assert r.status_code == 200 and r.headers["access-control-allow-origin"] == ORIGIN
        exposed = {h.strip() for h in r.headers["access-control-expose-headers"].lower().split(",")}
        assert {h for h in r.headers if h.startswith("x-")} <= exposed  # X-Request-ID too: a page can read each
        r = await client.get("/sample?n=1", headers={"Origin": ORIGIN})  # a 401 the page can read
        assert r.status_code == 401 and r.headers["access-control-allow-origin"] == ORIGIN
        r = await client.get("/models", headers={"Origin": "https://evil.example", "X-API-Key": "k"})
        assert "access-control-allow-origin" not in r.headers
