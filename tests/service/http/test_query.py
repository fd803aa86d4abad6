"""query.py: a data-plane route's query model reads values and refuses bad ones as FastAPI would, and its limits
come from the settings."""

from typing import Annotated

import httpx
import pytest
from fastapi import FastAPI
from fastapi import Query as FastAPIQuery
from pydantic import Field

from service.errors import InvalidInput
from service.http.dataplane import ROUTES
from service.http.query import Query, QueryInvalid, limit
from service.settings import Settings

pytestmark = pytest.mark.anyio
LIMITS = Settings(max_n=20).limits


class Example(Query):
    n: Annotated[int, Field(ge=1, json_schema_extra=limit("max_n"))]
    scale: Annotated[int, Field(ge=1)] = 1
    label: list[str] | None = None
    t: float = 1.0


def _fastapi() -> FastAPI:
    app = FastAPI()

    @app.get("/r")
    async def endpoint(
        n: Annotated[int, FastAPIQuery(ge=1)],
        scale: Annotated[int, FastAPIQuery(ge=1)] = 1,
        label: Annotated[list[str] | None, FastAPIQuery()] = None,
        t: float = 1.0,
    ) -> dict:
        return {"scale": scale, "n": n, "label": label, "t": t}

    return app


def test_every_data_plane_route_reads_a_query_model():
    routes = {(r.path, r.method) for r in ROUTES}
    for key in [("/encode", "POST"), ("/decode", "POST"), ("/reconstruct", "POST"), ("/sample", "GET")]:
        assert key in routes
    assert all(issubclass(r.query, Query) for r in ROUTES)


@pytest.mark.parametrize("query", ["n=2", "n=2&label=a&label=b&t=0.5&scale=3", "n=0", "", "n=x&scale=0", "n=2&t="])
async def test_a_query_model_reads_as_fastapi_does(query):
    transport = httpx.ASGITransport(app=_fastapi())
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        r = await client.get(f"/r?{query}")
    try:
        read = Example.read(query.encode(), LIMITS, "GET /r")
    except QueryInvalid as e:
        assert r.status_code == 422
        theirs = [(tuple(err["loc"]), err["msg"]) for err in r.json()["detail"]]
        assert [(tuple(err["loc"]), err["msg"]) for err in e.extra["errors"]] == theirs
    else:
        assert r.status_code == 200 and read.model_dump() == r.json()


def test_a_parameter_given_twice_is_refused_where_fastapi_would_take_the_last():
    with pytest.raises(InvalidInput, match="query parameter 'n' is given more than once on GET /r; give it once"):
        Example.read(b"n=1&n=3", LIMITS, "GET /r")
    assert Example.read(b"n=1&label=a&label=b", LIMITS, "GET /r").label == ["a", "b"]  # a list repeats by design


def test_unknown_names_are_refused_with_the_known_ones_listed():
    with pytest.raises(
        InvalidInput, match=r"unknown query parameter 'tempreature' on GET /r; it accepts: label, n, scale, t"
    ):
        Example.read(b"n=1&tempreature=2", LIMITS, "GET /r")


def test_a_limit_comes_from_the_settings_and_names_the_setting():
    assert Example.read(b"n=20", LIMITS, "GET /r").n == 20
    with pytest.raises(InvalidInput, match=r"^parameter 'n' is 21; the limit is 20 \(VAE_MAX_N\)$"):
        Example.read(b"n=21", LIMITS, "GET /r")
