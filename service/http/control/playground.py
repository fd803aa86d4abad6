"""GET /playground: one page (HTML, JS, CSS from service/http/static/) that drives the public API from a browser.

The page and its two files are open like /docs (service/http/security.py): a browser cannot add a key to the request
that opens a page, so the page asks for the key and sends it with every API call it makes. They are left out of
the OpenAPI document, which describes the API, not this client of it. The Content-Security-Policy lets the page
load and call nothing but this origin; images it shows are PNG responses (blob:) or base64 in JSON (data:).
"""

from __future__ import annotations

from functools import cache
from importlib.resources import files

from fastapi import APIRouter, HTTPException, Response
from fastapi.responses import RedirectResponse

router = APIRouter(include_in_schema=False)

PAGE = "playground.html"
ASSETS = {"playground.js": "text/javascript; charset=utf-8", "playground.css": "text/css; charset=utf-8"}
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; connect-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",  # revalidated on each visit: an upgraded service never runs yesterday's script
}


@cache
def _static(name: str) -> bytes:
    # Read from the installed package (the wheel carries service/http/static/, see pyproject.toml's package-data).
    return files("service.http").joinpath("static", name).read_bytes()


@router.get("/")
async def root() -> RedirectResponse:
    """The playground; the API itself is described at /docs."""
    # Relative, so that the redirect also holds behind a proxy that serves the service under a path prefix.
    return RedirectResponse("playground", status_code=307)


@router.get("/playground")
async def playground() -> Response:
    """The playground page: draw, upload, sample, generate, interpolate and traverse with the loaded models."""
    return Response(_static(PAGE), media_type="text/html; charset=utf-8", headers=_HEADERS)


@router.get("/playground/{asset}")
async def playground_asset(asset: str) -> Response:
    """The page's script and style sheet."""
    media_type = ASSETS.get(asset)
    if media_type is None:
        raise HTTPException(404, f"the playground has no file {asset!r}; it serves {sorted(ASSETS)}")
    return Response(_static(asset), media_type=media_type, headers=_HEADERS)
