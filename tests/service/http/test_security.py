"""The optional API key: off by default; when set, 401 without a valid key, except probes, metrics and docs."""

from __future__ import annotations

import hmac

import pytest

from service.errors import StartupError
from service.http import security
from service.http.security import key_matches, load_api_keys
from service.settings import Settings

from ..asgi import serve

pytestmark = pytest.mark.anyio
PROTECTED = ["/models", "/models/tiny-vae", "/sample?n=1"]
OPEN = ["/health", "/ready", "/metrics", "/docs", "/redoc", "/openapi.json", "/static-offline-docs/swagger-ui.css"]


@pytest.fixture(scope="module")
async def keyed(zoo):
    async with serve(Settings(models_dir=zoo, api_key="first-key, second-key")) as c:
        yield c


async def test_no_key_is_needed_by_default(client):
    assert (await client.get("/models")).status_code == 200
    document = (await client.get("/openapi.json")).json()
    assert "security" not in document and "securitySchemes" not in document.get("components", {})


@pytest.mark.parametrize("url", PROTECTED)
async def test_without_a_key_401_says_how_to_send_one(keyed, url):
    r = await keyed.get(url)
    assert r.status_code == 401
    assert r.headers["content-type"] == "application/problem+json"
    assert r.headers["www-authenticate"].startswith("Bearer")
    assert "X-API-Key: KEY" in r.json()["detail"] and "Authorization: Bearer KEY" in r.json()["detail"]


async def test_a_wrong_key_is_refused(keyed):
    for headers, words in [
        ({"X-API-Key": "third-key"}, "not one of"),
        ({"Authorization": "Bearer first-ke"}, "not one of"),
        ({"Authorization": "first-key"}, "needs an API key"),  # no Bearer scheme: no key sent
    ]:
        r = await keyed.get("/models", headers=headers)
        assert r.status_code == 401 and words in r.json()["detail"], headers


@pytest.mark.parametrize(
    "headers", [{"X-API-Key": "first-key"}, {"x-api-key": "second-key"}, {"Authorization": "Bearer second-key"}]
)
async def test_either_header_with_any_key_passes(keyed, headers):
    r = await keyed.get("/sample?n=1&format=json", headers=headers)
    assert r.status_code == 200, r.text


async def test_post_routes_check_the_key_before_reading_the_body(keyed):
    r = await keyed.post("/generate?model=tiny-cvae", json={"labels": [1]})
    assert r.status_code == 401
    r = await keyed.post("/generate?model=tiny-cvae", json={"labels": [1]}, headers={"X-API-Key": "first-key"})
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("url", OPEN)
async def test_probes_metrics_and_docs_need_no_key(keyed, url):
    assert (await keyed.get(url)).status_code == 200, url


async def test_swagger_offers_authorize_when_a_key_is_set(keyed):
    document = (await keyed.get("/openapi.json")).json()
    schemes = document["components"]["securitySchemes"]
    assert schemes["apiKey"] == {**schemes["apiKey"], "type": "apiKey", "in": "header", "name": "X-API-Key"}
    assert schemes["bearer"]["scheme"] == "bearer"
    assert document["security"] == [{"apiKey": []}, {"bearer": []}]
    assert "401" in document["paths"]["/sample"]["get"]["responses"]
    assert document["paths"]["/health"]["get"]["security"] == []
    assert "401" not in document["paths"]["/health"]["get"]["responses"]


def test_keys_from_a_file_with_comments(tmp_path, zoo):
    path = tmp_path / "keys"
    path.write_text("# rotated 2026-11\nalpha\n\n  beta  # the old one, until Friday\n")
    digests = load_api_keys(Settings(models_dir=zoo, api_key_file=path, api_key="gamma"))
    assert len(digests) == 3
    assert all(key_matches(k, digests) for k in (b"alpha", b"beta", b"gamma"))
    assert not key_matches(b"# rotated 2026-11", digests) and not key_matches(b"", digests)


@pytest.mark.parametrize(("content", "words"), [(None, "cannot read it"), ("# none yet\n\n", "holds no key")])
def test_an_unusable_key_file_stops_start_up(tmp_path, zoo, content, words):
    path = tmp_path / "keys"
    if content is not None:
        path.write_text(content)
    with pytest.raises(StartupError, match=words) as e:
        load_api_keys(Settings(models_dir=zoo, api_key_file=path))
    assert "VAE_API_KEY_FILE" in str(e.value)


def test_keys_from_the_environment(monkeypatch, zoo):
    monkeypatch.setenv("VAE_API_KEY", "key-one,key-two\nkey-three")
    settings = Settings(models_dir=zoo)
    assert len(load_api_keys(settings)) == 3
    assert "key-one" not in repr(settings), "the key is a secret: never in logs or reprs"
    monkeypatch.setenv("VAE_API_KEY", "")
    assert load_api_keys(Settings(models_dir=zoo)) == ()


def test_keys_are_compared_in_constant_time(monkeypatch):
    """Every key is compared with compare_digest, also after a match: no early exit to time."""
    digests = load_api_keys(Settings(api_key="a,b,c"))
    calls = []
    compare = hmac.compare_digest

    def counting(x, y):
        calls.append((x, y))
        return compare(x, y)

    monkeypatch.setattr(security.hmac, "compare_digest", counting)
    assert key_matches(b"a", digests)
    assert len(calls) == 3
    assert {len(x) for x, _ in calls} == {32}, "digests, so the key's length does not show either"
