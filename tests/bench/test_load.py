"""bench/load.py: a server is ready when each of its readiness requests answers 200, with any interpreter."""

import sys

import httpx
import pytest

from bench.load import free_port, server
from bench.loadgen import Request


def test_readiness_can_be_other_requests_and_the_interpreter_is_named():
    port = free_port()
    ready = (Request("GET", "/empty"), Request("GET", "/bytes?n=3"))
    with server(["-m", "bench.empty", str(port)], port, python=sys.executable, ready=ready) as s:
        assert s.ready_seconds > 0 and httpx.get(f"{s.url}/bytes?n=3").content == bytes(3)


def test_a_readiness_request_that_never_answers_200_names_itself():
    port = free_port()
    with pytest.raises(RuntimeError, match="GET /missing"):
        with server(["-m", "bench.empty", str(port)], port, timeout=1, ready=(Request("GET", "/missing"),)):
            pass
