"""The seam with uvicorn's internals (service/http/seam.py): the canary that fails with a clear message when a
uvicorn release moves a name the seam relies on. The behaviour itself is tested against a real server in
tests/integration/test_connections.py and test_startup.py."""

from __future__ import annotations

import asyncio
import importlib.metadata
import inspect
import re
from pathlib import Path

import pytest
import uvicorn
from uvicorn.protocols.http import httptools_impl
from uvicorn.server import ServerState

from service.http.seam import GuardedHttpProtocol, SignalledServer, guarded_protocol
from service.settings import Settings

pytestmark = pytest.mark.anyio
ROOT = Path(__file__).resolve().parents[3]
# What the seam overrides or calls on uvicorn's httptools protocol, its request cycle and its server.
PROTOCOL_METHODS = [
    "connection_made",
    "connection_lost",
    "data_received",
    "on_message_begin",
    "on_header",
    "on_headers_complete",
    "on_body",
    "on_message_complete",
    "on_response_complete",
    "pause_writing",
    "resume_writing",
    "shutdown",
]
PROTOCOL_ATTRIBUTES = ["connections", "client", "cycle", "transport", "flow", "tasks", "loop"]
CYCLE_ATTRIBUTES = ["response_complete", "response_started", "keep_alive"]


def test_uvicorn_is_the_pinned_minor_version():
    pinned = re.search(r'"uvicorn\[standard\]>=([0-9.]+),<([0-9.]+)"', (ROOT / "pyproject.toml").read_text())
    assert pinned, "pyproject.toml must pin uvicorn to one minor version: service/http/seam.py uses its internals"
    installed = tuple(int(p) for p in importlib.metadata.version("uvicorn").split(".")[:2])
    low = tuple(int(p) for p in pinned.group(1).split(".")[:2])
    assert installed == low, (
        f"uvicorn {importlib.metadata.version('uvicorn')} is installed but the seam was written for {pinned.group(1)}: "
        "check service/http/seam.py against the new release, then move the pin"
    )


@pytest.mark.parametrize("name", PROTOCOL_METHODS)
def test_the_protocol_methods_the_seam_overrides_exist(name):
    method = getattr(httptools_impl.HttpToolsProtocol, name, None)
    assert callable(method), f"uvicorn's HttpToolsProtocol has no {name}(): service/http/seam.py overrides it"


def test_the_status_lines_and_server_hooks_exist():
    assert httptools_impl.STATUS_LINE[503].startswith(b"HTTP/1.1 503"), "uvicorn's STATUS_LINE table moved"
    assert "handle_exit" in vars(uvicorn.Server), "uvicorn.Server.handle_exit moved: SignalledServer overrides it"
    assert list(inspect.signature(uvicorn.Server.handle_exit).parameters) == ["self", "sig", "frame"]
    assert hasattr(uvicorn.Server(uvicorn.Config(app=None)), "should_exit"), "uvicorn.Server.should_exit moved"


async def answer(scope, receive, send):
    await send({"type": "http.response.start", "status": 204, "headers": []})
    await send({"type": "http.response.body", "body": b""})


async def test_a_connection_has_the_attributes_the_seam_reads():
    config = uvicorn.Config(app=answer, http=guarded_protocol(Settings().http, Settings().max_body_bytes))
    config.load()
    protocol = config.http_protocol_class(config=config, server_state=ServerState(), app_state={})
    assert isinstance(protocol, GuardedHttpProtocol)

    class Transport(asyncio.Transport):
        def get_extra_info(self, name, default=None):
            return ("127.0.0.1", 8000) if name in ("sockname", "peername") else default

        def write(self, data):
            pass

        def is_closing(self):
            return False

        def close(self):
            pass

        def pause_reading(self):
            pass

        def resume_reading(self):
            pass

    protocol.connection_made(Transport())
    try:
        for name in PROTOCOL_ATTRIBUTES:
            assert hasattr(protocol, name), f"uvicorn's HttpToolsProtocol has no .{name}: service/http/seam.py reads it"
        assert hasattr(protocol.flow, "read_paused"), "uvicorn's FlowControl has no .read_paused"
        protocol.data_received(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        for name in CYCLE_ATTRIBUTES:
            assert hasattr(protocol.cycle, name), f"uvicorn's RequestResponseCycle has no .{name}: the seam reads it"
    finally:
        protocol.connection_lost(None)


def test_the_signalled_server_calls_back_before_uvicorn_shuts_down():
    calls = []
    server = SignalledServer(uvicorn.Config(app=None), on_exit=lambda: calls.append("marked"))
    server.handle_exit(15, None)
    assert calls == ["marked"] and server.should_exit
