"""One data-plane request: its scope and body on public ASGI, its query read into the route's model, its model.

The body is read here, within VAE_MAX_BODY_BYTES (the edge has already refused a larger declared Content-Length);
a multipart body goes through Starlette's form parser with the same bound. Nothing here decodes: the readers in
service/http/uploads.py count what the body holds, and the batch workers decode it.
"""

from __future__ import annotations

from typing import TypeVar

import orjson
from starlette.datastructures import FormData
from starlette.requests import ClientDisconnect, Request
from starlette.types import Message, Receive, Scope

from ..errors import InvalidInput, PayloadTooLarge
from ..models.model import ServedModel
from ..models.registry import GENERATE, ModelRegistry
from ..offload import cpu_bound
from . import body_params
from .query import Query
from .state import ServiceState

Q = TypeVar("Q", bound=Query)


def too_large(size: str, limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"the request body is {size}; the limit is {limit} bytes (VAE_MAX_BODY_BYTES)")


class DataRequest:
    """What a data-plane route reads: headers, query, body, and the loaded models (503 until they are)."""

    __slots__ = ("scope", "receive", "state", "path", "path_params", "content_type", "accept", "held", "_body")

    def __init__(
        self,
        scope: Scope,
        receive: Receive,
        state: ServiceState,
        path_params: dict[str, str],
        content_type: bytes | None = None,
        accept: bytes | None = None,
    ) -> None:
        self.scope = scope
        self.receive = receive
        self.state = state
        self.path: str = scope["path"]
        self.path_params = path_params
        # The two headers every route reads, found by the edge in its one pass over the headers.
        self.content_type = content_type
        self.accept = accept.decode("latin-1") if accept is not None else None
        self.held: list[ServedModel] = []  # the models this request uses, which an unload waits for
        self._body: bytes | None = None  # the body once read whole (a JSON body's parameters taken out)

    @property
    def where(self) -> str:
        return f"{self.scope['method']} {self.path}"

    def header(self, name: bytes) -> str | None:
        """A request header's value (`name` in lower case, as servers give them), or None."""
        for key, value in self.scope["headers"]:
            if key == name:
                return value.decode("latin-1")
        return None

    @property
    def media_type(self) -> str:
        """The Content-Type without its parameters, in lower case; '' when there is none."""
        if self.content_type is None:
            return ""
        return self.content_type.partition(b";")[0].strip().lower().decode("latin-1")

    def query(self, kind: type[Q]) -> Q:
        return kind.read(self.scope["query_string"], self.state.limits, self.where)

    @property
    def registry(self) -> ModelRegistry:
        return self.state.loaded_registry()

    def model(self, name: str | None, version: str | None = None) -> ServedModel:
        """The named model (its newest version, or `version`), or the default one (404 for a name or version that
        is not served), held for this request: an unload of it waits until the request is answered (the edge lets
        go, `release`)."""
        return self._hold(self.state.loaded_registry().get(name, version))

    def conditional_model(self, name: str | None, version: str | None = None, task: str = GENERATE) -> ServedModel:
        """As `model`, but the default is the default conditional model, and an unconditional one is a 409."""
        return self._hold(self.state.loaded_registry().get_conditional(name, version, task))

    def _hold(self, model: ServedModel) -> ServedModel:
        self.state.in_flight.enter(model)
        self.held.append(model)
        return model

    def release(self) -> None:
        """Let go of the models this request held."""
        for model in self.held:
            self.state.in_flight.leave(model)
        self.held.clear()

    async def take_body_params(self, kind: type[Query]) -> None:
        """A JSON body's query parameters, moved into the query (service/http/body_params.py)."""
        body = self._body = await self.body()
        if not body_params.named(body, kind):
            return
        limits = self.state.limits
        dims = max((m.manifest.latent_dim for m in self.registry.served()), default=1)
        body_params.check_count(body, limits.max_latents * dims + 3 * limits.max_images + limits.max_steps + 1000)
        try:
            document = await cpu_bound(orjson.loads, body, nbytes=len(body))
        except orjson.JSONDecodeError as e:  # left in the body, its parameters would be refused as unknown fields
            raise InvalidInput(
                f"the JSON body could not be read ({e}); send standard JSON, whose numbers are finite (no NaN, "
                "Infinity or 1e999)"
            ) from None
        found = body_params.split(document, kind, self.scope["query_string"])
        if found is not None:
            self._body, query_string = found
            self.scope = {**self.scope, "query_string": query_string}

    async def body(self) -> bytes:
        """The whole body, refused (413) as soon as it passes VAE_MAX_BODY_BYTES."""
        if self._body is not None:
            return self._body
        limit = self.state.limits.max_body_bytes
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                raise ClientDisconnect()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise too_large(f"over {limit} bytes", limit)
            chunks.append(chunk)
            if not message.get("more_body", False):
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    async def form(self, max_files: int, max_fields: int) -> FormData:
        """A multipart body parsed by Starlette, within the body limit as it streams in."""
        limit = self.state.limits.max_body_bytes
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await self.receive()
            received += len(message.get("body", b""))
            if received > limit:
                raise too_large(f"over {limit} bytes", limit)
            return message

        return await Request(self.scope, limited).form(max_files=max_files, max_fields=max_fields)
