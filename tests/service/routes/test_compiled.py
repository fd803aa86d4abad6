"""routes/compiled.py: routes answered by a parameter plan made once, with FastAPI's values and 422 messages."""

from typing import Annotated

import httpx
import pytest
from fastapi import APIRouter, Depends, FastAPI, Query, Request, Response
from fastapi.routing import APIRoute

from service.routes import ROUTERS
from service.routes.compiled import CompiledRoute, compile_handler

pytestmark = pytest.mark.anyio


def test_every_inference_and_generation_route_is_compiled():
    routes = {(r.path, m): r for router in ROUTERS for r in router.routes if isinstance(r, APIRoute) for m in r.methods}
    for key in [("/encode", "POST"), ("/decode", "POST"), ("/reconstruct", "POST"), ("/sample", "GET")]:
        assert isinstance(routes[key], CompiledRoute) and compile_handler(routes[key].dependant) is not None
    assert compile_handler(routes[("/models/{name}", "GET")].dependant) is None  # a path parameter: FastAPI's


def _router(route_class: type[APIRoute]) -> APIRouter:
    calls: list[str] = []

    async def settings(request: Request) -> str:
        calls.append("settings")
        return request.url.path

    async def scaled(
        where: Annotated[str, Depends(settings)], factor: Annotated[int, Query(alias="scale", ge=1)] = 1
    ) -> int:
        return factor

    router = APIRouter(route_class=route_class)

    @router.get("/r")
    async def endpoint(
        where: Annotated[str, Depends(settings)],
        scale: Annotated[int, Depends(scaled)],
        n: Annotated[int, Query(ge=1)],
        label: Annotated[list[str] | None, Query()] = None,
        t: float = 1.0,
    ) -> Response:
        return Response(f"{where} {scale} {n} {label} {t} {len(calls)}")

    return router


def _app(route_class: type[APIRoute]) -> FastAPI:
    app = FastAPI()
    app.include_router(_router(route_class))
    return app


def test_the_test_route_is_one_a_plan_covers():
    (route,) = _router(CompiledRoute).routes
    assert isinstance(route, CompiledRoute) and compile_handler(route.dependant) is not None


@pytest.mark.parametrize(
    "query", ["n=2", "n=2&label=a&label=b&t=0.5&scale=3", "n=0", "", "n=x&scale=0", "n=2&t=", "n=1&n=3"]
)
async def test_a_plan_answers_as_fastapi_does(query):
    answers = []
    for route_class in (APIRoute, CompiledRoute):
        transport = httpx.ASGITransport(app=_app(route_class))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            r = await client.get(f"/r?{query}")
            answers.append((r.status_code, r.text))
    assert answers[0] == answers[1]
