"""The data plane: the inference routes on public ASGI and Starlette APIs, one module per concern.

A route is a coroutine from a `DataRequest` (service/http/request.py) to a `Reply` (service/http/reply.py); the
edge (service/http/edge.py) finds it by path, checks what every route shares (API key, body size, method) and
sends its reply. `ROUTES` is every data-plane route, in the order the OpenAPI document lists them.
"""

from __future__ import annotations

from . import generation, inference, latent, oip, scoring
from .routing import Route

ROUTES: tuple[Route, ...] = (
    *inference.routes.routes,
    *generation.routes.routes,
    *scoring.routes.routes,
    *latent.routes.routes,
    *oip.routes.routes,
)
