"""The OpenAPI document and the pages built on it: limits from the settings, every status a route answers,
examples that work as they stand, refusal of unknown query parameters, and /docs served without internet."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from service.http.app import create_app
from service.http.examples import EXAMPLE_CONDITIONAL_MODEL, EXAMPLE_MODEL
from service.http.query import LIMIT
from service.settings import Settings

from ..asgi import serve

pytestmark = pytest.mark.anyio
SHIPPED = Path(__file__).resolve().parents[3] / "models"


@pytest.fixture(scope="module")
async def document(client) -> dict:
    r = await client.get("/openapi.json")
    assert r.status_code == 200
    return r.json()


def _query(document: dict, path: str, method: str, name: str) -> dict:
    (parameter,) = [p for p in document["paths"][path][method]["parameters"] if p["name"] == name]
    return parameter["schema"]


def _json_body(document: dict, path: str, method: str = "post") -> dict:
    return document["paths"][path][method]["requestBody"]["content"]["application/json"]


async def test_limits_come_from_the_settings(document, settings):
    assert _query(document, "/sample", "get", "n")["maximum"] == settings.max_n == 64
    assert _query(document, "/generate", "get", "n")["maximum"] == settings.max_n
    assert _query(document, "/sample", "get", "temperature")["maximum"] == settings.max_temperature
    assert _query(document, "/encode", "post", "samples")["maximum"] == settings.max_samples
    generate = _json_body(document, "/generate")["schema"]["properties"]
    assert generate["labels"]["maxItems"] == settings.max_n
    assert generate["temperature"]["maximum"] == settings.max_temperature
    assert _json_body(document, "/decode")["schema"]["properties"]["z"]["maxItems"] == settings.max_latents
    for path in ("/encode", "/reconstruct"):
        assert _json_body(document, path)["schema"]["properties"]["images"]["maxItems"] == settings.max_images == 8
        multipart = document["paths"][path]["post"]["requestBody"]["content"]["multipart/form-data"]
        assert multipart["schema"]["properties"]["file"]["maxItems"] == settings.max_images
    assert LIMIT not in json.dumps(document), "every limit marker is resolved"


def test_each_app_states_its_own_limits(zoo):
    """Two apps in one process, two sets of limits (the routes' static documentation is shared)."""
    small = create_app(Settings(models_dir=zoo, max_n=7)).openapi()
    large = create_app(Settings(models_dir=zoo, max_n=900)).openapi()
    assert _query(small, "/sample", "get", "n")["maximum"] == 7
    assert _query(large, "/sample", "get", "n")["maximum"] == 900


async def test_reconstruct_documents_409(document, client):
    assert "409" in document["paths"]["/reconstruct"]["post"]["responses"]
    r = await client.post("/reconstruct?label=1", files={"file": ("a.png", _png())})  # label for a vae
    assert r.status_code == 409, r.text


async def test_every_status_is_a_problem_detail_not_fastapis_default(document):
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            assert PROBLEM in operation["responses"]["422"]["content"], (method, path)
    assert "HTTPValidationError" not in document.get("components", {}).get("schemas", {})


def test_decode_examples_fit_the_shipped_models():
    dims = {p.parent.name: json.loads(p.read_text())["latent_dim"] for p in SHIPPED.glob("*/manifest.json")}
    unconditional, conditional = dims[EXAMPLE_MODEL], dims[EXAMPLE_CONDITIONAL_MODEL]
    document = create_app(Settings(models_dir=SHIPPED)).openapi()
    examples = _json_body(document, "/decode")["examples"]
    assert [len(z) for z in examples["unconditional"]["value"]["z"]] == [unconditional]
    assert [len(z) for z in examples["conditional"]["value"]["z"]] == [conditional]
    encode = document["paths"]["/encode"]["post"]["responses"]["200"]["content"]["application/json"]["example"]
    assert encode["model"] == EXAMPLE_MODEL
    assert encode["latent_dim"] == len(encode["mu"][0]) == len(encode["logvar"][0]) == unconditional


def _swagger_sample(schema: dict) -> object:
    # What Swagger UI's "Try it out" pre-fills a form field with: the example, else the default, else a
    # placeholder by type ("string" for a string); an empty value is left out of the request.
    return schema.get("example", schema.get("default", "string" if schema.get("type") == "string" else None))


@pytest.mark.parametrize("path", ["/encode", "/reconstruct"])
def test_try_it_out_form_leaves_label_empty(document, path):
    form = document["paths"][path]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert _swagger_sample(form["properties"]["label"]) == ""


async def test_empty_label_field_means_no_label(client):
    r = await client.post("/reconstruct?format=json", files={"file": ("a.png", _png())}, data={"label": ""})
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("temperature", [False, True, "1"])
async def test_post_generate_refuses_a_temperature_that_is_not_a_number(client, temperature):
    r = await client.post("/generate", json={"labels": [1], "temperature": temperature})
    assert r.status_code == 422, r.text
    assert "temperature" in r.json()["detail"]


async def test_post_generate_takes_an_integer_temperature(client):
    r = await client.post("/generate?format=json", json={"labels": [1], "temperature": 1, "seed": 3})
    assert r.status_code == 200, r.text


@pytest.mark.parametrize(
    ("url", "unknown"),
    [("/sample?n=2&tempreature=0.5", "'tempreature'"), ("/models?x=1", "'x'"), ("/models/tiny-vae?a=&b=2", "'a', 'b'")],
)
async def test_unknown_query_parameter_is_refused_by_name(client, url, unknown):
    r = await client.get(url)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == PROBLEM
    assert f"unknown query parameter {unknown}" in r.json()["detail"]


async def test_unknown_query_parameter_error_lists_the_known_ones(client):
    r = await client.post("/generate?n=3", json={"labels": [1]})  # n is GET /generate's, not POST's
    assert r.status_code == 422
    assert "it accepts: format, model" in r.json()["detail"]
    assert r.json()["errors"] == [{"loc": ["query", "n"], "msg": "unknown query parameter"}]


async def test_declared_query_parameters_pass(client):
    r = await client.get("/sample?n=2&seed=1&temperature=0.5&format=json&model=tiny-vae")
    assert r.status_code == 200, r.text
    r = await client.get("/generate?label=one&label=two&n=1&format=npy")
    assert r.status_code == 200, r.text


async def test_405_on_generate_allows_get_and_post(client):
    r = await client.put("/generate")
    assert r.status_code == 405
    assert {m.strip() for m in r.headers["allow"].split(",")} >= {"GET", "POST"}
    assert "GET" in r.json()["detail"] and "POST" in r.json()["detail"]
    r = await client.delete("/sample")
    assert {m.strip() for m in r.headers["allow"].split(",")} == {"GET", "HEAD"}


class _Assets(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = {"script": "src", "link": "href", "img": "src"}
        for name, value in attrs:
            if name == names.get(tag) and value:
                self.urls.append(value)


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
async def test_docs_pages_load_their_assets_from_the_service(client, page):
    r = await client.get(page)
    assert r.status_code == 200
    parser = _Assets()
    parser.feed(r.text)
    scripts = [u for u in parser.urls if u.endswith(".js")]
    assert scripts, f"{page} loads no script"
    for url in parser.urls:
        assert url.startswith("/"), f"{page} loads {url} from elsewhere: it would be blank without internet"
        asset = await client.get(url)
        assert asset.status_code == 200 and asset.content, url
    assert not re.search(r"https?://(?!localhost)[^\s\"']+\.(js|css)", r.text), "no CDN URL anywhere in the page"


def _png() -> bytes:
    from ..payloads import png

    return png()


PROBLEM = "application/problem+json"


# What each route needs of the model it serves: a key of the capabilities GET /models lists.
CAPABILITY = {
    "/encode": "encode",
    "/decode": "decode",
    "/reconstruct": "reconstruct",
    "/sample": "sample",
    "/generate": "generate",
    "/score": "score",
    "/interpolate": "decode",
    "/attribute": "encode",
    "/edit": "decode",
    "/traverse": "decode",
}


def _values(holder: dict) -> list:
    """Example values a parameter or media type gives: `example`, and `examples` as a list or a named map."""
    found = [holder["example"]] if "example" in holder else []
    examples = holder.get("examples", [])
    found += [e.get("value") for e in examples.values()] if isinstance(examples, dict) else list(examples)
    return found


def _example_models(operation: dict) -> list[str]:
    """Model names an operation's examples give: its model and name parameters, and its 2xx JSON bodies'."""
    names = [
        value
        for p in operation.get("parameters", [])
        if p["name"] in ("model", "name")
        for value in _values(p) + _values(p.get("schema", {}))
    ]
    for status, response in operation.get("responses", {}).items():
        for media in response.get("content", {}).values() if status.startswith("2") else []:
            names += [v["model"] for v in _values(media) if isinstance(v, dict) and "model" in v]
    return names


async def test_every_example_names_a_shipped_model_that_can_do_what_the_route_does():
    async with serve(Settings(models_dir=SHIPPED)) as c:
        document = (await c.get("/openapi.json")).json()
        listing = (await c.get("/models")).json()
        capabilities = {m["name"]: m["capabilities"] for m in listing["models"]}
        checked = set()
        for path, item in document["paths"].items():
            for method, operation in item.items():
                for name in _example_models(operation):
                    route = f"{method.upper()} {path}"
                    assert name in capabilities, f"{route}: example model {name!r} is not in models/"
                    need = CAPABILITY.get(path)
                    assert need is None or capabilities[name][need], f"{route}: {name!r} cannot {need}"
                    checked.add(route)
        assert {"GET /generate", "POST /generate", "GET /sample", "POST /decode", "POST /encode"} <= checked
        assert {"GET /models/{name}", "GET /models/{name}/reports/{file}"} <= checked
        # /models' example shows the defaults and capabilities these models really have
        example = document["paths"]["/models"]["get"]["responses"]["200"]["content"]["application/json"]["example"]
        assert (example["default"], example["default_conditional"]) == (
            listing["default"],
            listing["default_conditional"],
        )
        (summary,) = example["models"]
        assert summary["capabilities"] == capabilities[summary["name"]]
        # and the report route's example parameters fetch a real report
        report = document["paths"]["/models/{name}/reports/{file}"]["get"]["parameters"]
        name, file = ([*_values(p), *_values(p["schema"])][0] for p in report)
        assert (await c.get(f"/models/{name}/reports/{file}")).status_code == 200


async def test_generate_examples_work_as_they_stand():
    # Swagger's "Try it out" sends the parameters' examples: the /generate example must be a request that works.
    async with serve(Settings(models_dir=SHIPPED)) as c:
        document = (await c.get("/openapi.json")).json()
        parameters = document["paths"]["/generate"]["get"]["parameters"]
        query = {p["name"]: [*_values(p), *_values(p["schema"])][0] for p in parameters if _values(p["schema"])}
        r = await c.get("/generate", params=query)
        assert r.status_code == 200, (query, r.text)
        body = _json_body(document, "/generate")["example"]
        r = await c.post("/generate?format=json", json=body)
        assert r.status_code == 200 and r.json()["model"] == "mnist-cvae", r.text


@pytest.mark.parametrize("path", ["/health", "/ready", "/models", "/models/tiny-vae", "/metrics", "/v2/health/live"])
async def test_head_answers_every_get_route_of_the_control_plane_with_the_get_headers_and_no_body(client, path):
    got, head = await client.get(path), await client.head(path)
    assert got.status_code == head.status_code == 200 and head.content == b""
    assert head.headers["content-type"] == got.headers["content-type"]
    r = await client.head("/v2/repository/index")  # a POST route: HEAD is still not allowed
    assert r.status_code == 405


async def test_an_empty_model_name_and_a_repeated_control_parameter_are_refused_by_name(client):
    r = await client.get("/generate", params={"model": "", "label": "one"})
    assert r.status_code == 422 and "'model'" in r.json()["detail"], r.text
    r = await client.get("/models/tiny-vae?version=1&version=2")
    assert r.status_code == 422 and "'version' is given more than once" in r.json()["detail"], r.text
