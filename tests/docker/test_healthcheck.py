"""docker/healthcheck.py, the image's HEALTHCHECK: healthy on 200 only, on the port VAE_PORT names."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from .files import DOCKER, load_script

healthcheck = load_script(DOCKER / "healthcheck.py")


@contextmanager
def server(statuses: dict[str, int]) -> Iterator[int]:
    """A loopback HTTP server answering each path with the given status; yields its port."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's name)
            self.send_response(statuses.get(self.path, 404))
            self.end_headers()

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield httpd.server_address[1]
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.mark.parametrize(("status", "healthy"), [(200, True), (503, False), (500, False)])
def test_ready_decides(monkeypatch, status, healthy):
    with server({"/ready": status}) as port:
        monkeypatch.setenv("VAE_PORT", str(port))
        assert (healthcheck.main(["healthcheck.py"]) == 0) is healthy


def test_another_path_can_be_probed(monkeypatch):
    with server({"/health": 200, "/ready": 503}) as port:
        monkeypatch.setenv("VAE_PORT", str(port))
        assert healthcheck.main(["healthcheck.py", "/health"]) == 0
        assert healthcheck.main(["healthcheck.py", "/ready"]) == 1


def test_nothing_listening_is_unhealthy(monkeypatch):
    with server({}) as port:
        pass  # closed again: the port is free
    monkeypatch.setenv("VAE_PORT", str(port))
    assert healthcheck.main(["healthcheck.py"]) == 1
