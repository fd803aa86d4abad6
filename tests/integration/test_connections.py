"""Hostile clients against a real server (service/connection.py): each is cut off, and nobody else notices.

Every case talks raw sockets to `python -m service` with second-long limits, and asserts the status or the
closing, and through `watch` that a concurrent /health kept answering fast and the server's memory held.
"""

from __future__ import annotations

import io
import json
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from ..service.payloads import png
from ..tiny_models import build_zoo
from .hostile import watch
from .server import running_process

MAX_HEADER_BYTES = 8192
MIB = 1024 * 1024
TIMEOUT_S = 1.0  # header, body and keep-alive timeouts alike
MAX_CONNECTIONS = 12
UPLOAD_TIMEOUT_S = 2.5
ENV = {
    "VAE_MAX_HEADER_BYTES": str(MAX_HEADER_BYTES),
    "VAE_HEADER_TIMEOUT_S": str(TIMEOUT_S),
    "VAE_BODY_TIMEOUT_S": str(TIMEOUT_S),
    "VAE_KEEP_ALIVE_TIMEOUT_S": str(int(TIMEOUT_S)),
    "VAE_MAX_CONNECTIONS": str(MAX_CONNECTIONS),
    "VAE_UPLOAD_TIMEOUT_S": str(UPLOAD_TIMEOUT_S),
    "VAE_SEND_TIMEOUT_S": str(TIMEOUT_S),
    "VAE_PROCESSES": "1",  # the connection cap is per process: one, so that the counts below are exact
}
SLACK = 1.0  # s: a timer fires within this of its deadline on a busy, shared 2-core machine


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[tuple]:
    with running_process(build_zoo(tmp_path_factory.mktemp("zoo")), ENV) as (process, url):
        yield process, url


def connect(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=10)
    return sock


def read_until_closed(sock: socket.socket, timeout: float = 10) -> tuple[bytes, float]:
    """Everything the server sends until it closes the connection, and how long that took."""
    start = time.monotonic()
    sock.settimeout(timeout)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except ConnectionResetError:
        pass
    return data, time.monotonic() - start


def status(response: bytes) -> int:
    match = re.match(rb"HTTP/1\.1 (\d{3}) ", response)
    assert match, f"not an HTTP response: {response[:200]!r}"
    return int(match.group(1))


def requests_total(url: str, status: str) -> float:
    """vae_requests_total for POST /encode with this status, from /metrics."""
    line = f'vae_requests_total{{method="POST",route="/encode",status="{status}"}} '
    found = [row for row in httpx.get(f"{url}/metrics").text.splitlines() if row.startswith(line)]
    return float(found[0].removeprefix(line)) if found else 0.0


def server_log(process) -> str:
    return Path(f"/proc/{process.pid}/fd/1").read_text()  # the server's stdout is its log file


def test_a_huge_header_is_refused_at_the_cap_without_buffering_it(server):
    sent, refused_after = send_100_mb_after(server, b"GET /health HTTP/1.1\r\nHost: test\r\nX-Big: ")
    print(f"100 MB header: refused after {sent / 1024:.0f} KiB sent in {refused_after * 1000:.0f} ms")
    assert sent < 16 * MIB and refused_after < 2


def send_100_mb_after(server, prefix: bytes) -> tuple[int, float]:
    """Send `prefix`, then 100 MB of "a" until the server closes: bytes sent and seconds taken. The server stays
    healthy and its memory holds."""
    process, url = server
    with watch(process, url) as seen:
        sock = connect(url)
        start = time.monotonic()
        sent = 0
        sock.sendall(prefix)
        with pytest.raises(OSError):  # reset once the server has closed: the 100 MB never all go out
            while sent < 100 * MIB:
                sock.sendall(b"a" * MIB)
                sent += MIB
        refused_after = time.monotonic() - start
        sock.close()
    seen.assert_healthy(max_growth_mib=30)
    print(f"/health at worst {seen.slowest_health * 1000:.0f} ms; peak RSS growth {seen.peak_growth / MIB:.1f} MiB")
    return sent, refused_after


def test_headers_over_the_cap_get_431_with_the_setting_named(server):
    process, url = server
    with watch(process, url) as seen:
        sock = connect(url)
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: test\r\nX-Big: " + b"a" * (2 * MAX_HEADER_BYTES) + b"\r\n\r\n")
        response, _ = read_until_closed(sock)
    seen.assert_healthy()
    assert status(response) == 431 and b"VAE_MAX_HEADER_BYTES" in response


def test_headers_under_the_cap_with_a_body_in_the_same_packet_pass(server):
    process, url = server
    body = png()
    head = f"POST /encode HTTP/1.1\r\nHost: test\r\nContent-Type: image/png\r\nContent-Length: {len(body)}\r\n"
    # Headers 60 bytes under the cap; with the body in the same packet, that packet is over it.
    padding = "X-Pad: " + "a" * (MAX_HEADER_BYTES - len(head) - 90) + "\r\nConnection: close\r\n\r\n"
    with watch(process, url) as seen:
        sock = connect(url)
        assert len(head + padding) == MAX_HEADER_BYTES - 60 and len(head + padding) + len(body) > MAX_HEADER_BYTES
        sock.sendall(head.encode() + padding.encode() + body)
        response, _ = read_until_closed(sock)
    seen.assert_healthy()
    assert status(response) == 200


def test_headers_sent_a_line_at_a_time_time_out(server):
    process, url = server
    with watch(process, url) as seen:
        sock = connect(url)
        start = time.monotonic()
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: test\r\n")
        with pytest.raises(OSError):
            for i in range(100):  # slowloris: a header every 0.2 s, never the blank line
                time.sleep(0.2)
                sock.sendall(b"X-Slow-%d: 1\r\n" % i)
        response, _ = read_until_closed(sock)
        held = time.monotonic() - start
    seen.assert_healthy()
    print(f"slowloris connection kept {held:.2f} s (VAE_HEADER_TIMEOUT_S={TIMEOUT_S})")
    assert held < TIMEOUT_S + SLACK + 0.2
    assert response == b"" or status(response) == 408  # read before the reset, or lost to it


def test_a_slowloris_that_stops_sending_gets_408(server):
    process, url = server
    with watch(process, url) as seen:
        sock = connect(url)
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: test\r\n")
        response, held = read_until_closed(sock)
    seen.assert_healthy()
    assert status(response) == 408 and b"VAE_HEADER_TIMEOUT_S" in response
    assert TIMEOUT_S - 0.1 < held < TIMEOUT_S + SLACK


def test_a_silent_connection_is_closed_without_an_answer(server):
    process, url = server
    with watch(process, url) as seen:
        sock = connect(url)
        response, held = read_until_closed(sock)
    seen.assert_healthy()
    assert response == b"" and TIMEOUT_S - 0.1 < held < TIMEOUT_S + SLACK


def test_an_idle_keep_alive_connection_is_closed(server):
    process, url = server
    with watch(process, url) as seen:
        sock = connect(url)
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: test\r\n\r\n")
        response, held = read_until_closed(sock)
    seen.assert_healthy()
    assert status(response) == 200 and held < TIMEOUT_S + SLACK


def post_head(length: int) -> bytes:
    return (
        f"POST /encode HTTP/1.1\r\nHost: test\r\nContent-Type: image/png\r\nContent-Length: {length}\r\n\r\n".encode()
    )


def test_a_stalled_body_gets_408(server):
    process, url = server
    with watch(process, url) as seen:
        sock = connect(url)
        sock.sendall(post_head(10_000) + b"\0" * 100)
        response, held = read_until_closed(sock)
    seen.assert_healthy()
    assert status(response) == 408 and b"VAE_BODY_TIMEOUT_S" in response
    assert TIMEOUT_S - 0.1 < held < TIMEOUT_S + SLACK


def test_a_body_sent_a_byte_at_a_time_gets_408(server):
    process, url = server
    with watch(process, url) as seen:
        sock = connect(url)
        start = time.monotonic()
        sock.sendall(post_head(10_000))
        with pytest.raises(OSError):
            for _ in range(200):  # 10 bytes/s: never idle for a second, far under VAE_MIN_BODY_BYTES_PER_S
                sock.sendall(b"\0")
                time.sleep(0.1)
        held = time.monotonic() - start
        sock.close()
    seen.assert_healthy()
    print(f"byte-at-a-time body: connection kept {held:.2f} s")
    assert held < TIMEOUT_S + SLACK + 0.2


def test_an_upload_steadily_above_the_minimum_rate_ends_at_the_upload_deadline(server):
    process, url = server
    with watch(process, url) as seen:
        sock = connect(url)
        start = time.monotonic()
        sock.sendall(post_head(1_000_000))
        with pytest.raises(OSError):
            for _ in range(100):  # 4 KiB/s: four times VAE_MIN_BODY_BYTES_PER_S, never idle, 4 minutes to finish
                sock.sendall(b"\0" * 1024)
                time.sleep(0.25)
        held = time.monotonic() - start
        sock.close()
    seen.assert_healthy()
    print(f"steady slow upload: connection kept {held:.2f} s")
    assert UPLOAD_TIMEOUT_S - 0.1 < held < UPLOAD_TIMEOUT_S + SLACK + 0.3


def test_connections_past_the_cap_get_503_and_the_open_ones_keep_working(server):
    process, url = server
    with watch(process, url) as seen:
        while seen.health_calls == 0:  # the watcher's connection is one of the open ones
            time.sleep(0.01)
        idle = [connect(url) for _ in range(MAX_CONNECTIONS - 1)]
        time.sleep(0.1)
        extra = connect(url)
        response, held = read_until_closed(extra)
        for sock in idle:
            sock.close()
    seen.assert_healthy()
    assert status(response) == 503 and b"VAE_MAX_CONNECTIONS" in response and held < 0.5


def test_a_client_hanging_up_mid_upload_counts_as_499_and_logs_one_line(server):
    process, url = server
    before = requests_total(url, "499")
    with watch(process, url) as seen:
        sock = connect(url)
        sock.sendall(post_head(100_000) + b"\0" * 1000)
        time.sleep(0.2)  # the route is reading the body
        sock.close()
        time.sleep(0.3)
    seen.assert_healthy()
    assert requests_total(url, "499") == before + 1 and requests_total(url, "500") == 0
    log = server_log(process)
    assert "POST /encode: the client disconnected before sending its whole body" in log
    assert "Traceback" not in log and "Exception in ASGI application" not in log


CHUNKED_HEAD = (
    b"POST /encode HTTP/1.1\r\nHost: test\r\nContent-Type: image/png\r\nTransfer-Encoding: chunked\r\n"
    b"Connection: close\r\n"
)


def chunked(body: bytes, trailers: bytes = b"") -> bytes:
    """`body` as one chunk, the last chunk, then `trailers` (complete lines) and the end of the message."""
    return f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n" + trailers + b"\r\n"


def test_a_chunked_body_with_small_trailers_is_served(server):
    process, url = server
    with watch(process, url) as seen:
        sock = connect(url)
        sock.sendall(CHUNKED_HEAD + b"\r\n" + chunked(png(), b"X-Checksum: 1234\r\n"))
        response, _ = read_until_closed(sock)
    seen.assert_healthy()
    assert status(response) == 200


def test_huge_trailers_are_refused_at_the_header_cap_without_buffering_them(server):
    head = CHUNKED_HEAD + b"\r\n" + chunked(png())[: -len(b"\r\n")] + b"X-Big: "  # a trailer field begins
    sent, refused_after = send_100_mb_after(server, head)
    print(f"100 MB of trailers: refused after {sent / 1024:.0f} KiB sent in {refused_after * 1000:.0f} ms")
    assert sent < 16 * MIB and refused_after < 2


def test_many_small_trailer_fields_are_refused_too(server):
    process, url = server
    fields = b"".join(b"X-T%d: %s\r\n" % (i, b"v" * 100) for i in range(2 * MAX_HEADER_BYTES // 100))
    with watch(process, url) as seen:
        sock = connect(url)
        sock.sendall(CHUNKED_HEAD + b"\r\n" + chunked(png(), fields))
        response, _ = read_until_closed(sock)
    seen.assert_healthy()
    assert status(response) == 431 and b"trailer" in response and b"VAE_MAX_HEADER_BYTES" in response


def test_a_body_of_tiny_chunks_is_refused_once_they_outnumber_its_bytes(server):
    process, url = server
    body = png()
    one_byte_chunks = b"".join(b"1\r\n%c\r\n" % byte for byte in body) + b"0\r\n\r\n"
    sock = connect(url)
    sock.sendall(CHUNKED_HEAD + b"\r\n" + one_byte_chunks)  # a few hundred chunks: served, however small
    assert len(body) < 1024 and status(read_until_closed(sock)[0]) == 200
    # 10 MiB of 1-byte chunks (60 MiB sent) would be ten million calls into the parser's callbacks.
    with watch(process, url) as seen:
        sock = connect(url)
        sock.sendall(CHUNKED_HEAD + b"\r\n")
        start, sent = time.monotonic(), 0
        with pytest.raises(OSError):  # refused and closed well before the body's end
            while sent < 60 * MIB:
                sock.sendall(b"1\r\n\0\r\n" * 10_000)
                sent += 60_000
        response, _ = read_until_closed(sock)
        held = time.monotonic() - start
    seen.assert_healthy()
    print(f"1-byte chunks: refused after {sent / 1024:.0f} KiB sent in {held * 1000:.0f} ms")
    assert sent < 8 * MIB and held < 2
    assert re.search(r"refused a request from .*: \d+ chunks for \d+ bytes of body", server_log(process))
    assert not response or (status(response) == 400 and b"chunks" in response)  # or reset, with data unread


def test_an_upload_refused_mid_body_closes_its_connection(server):
    process, url = server
    limit = 10 * 1024 * 1024  # VAE_MAX_BODY_BYTES's default: a chunked body declares no length, so it is counted
    piece = f"{64 * 1024:x}\r\n".encode() + b"\0" * (64 * 1024) + b"\r\n"
    with watch(process, url) as seen:
        sock = connect(url)
        sock.sendall(CHUNKED_HEAD + b"\r\n")
        start = time.monotonic()
        sent = 0
        with pytest.raises(OSError):  # the server stops reading and closes: sending fails well before 100 MB
            while sent < 10 * limit and time.monotonic() - start < 30:
                sock.sendall(piece)
                sent += len(piece)
        held = time.monotonic() - start
        sock.close()
    seen.assert_healthy(max_growth_mib=60)
    print(f"chunked upload past the body limit: {sent / 2**20:.1f} MiB sent, connection closed after {held:.2f} s")
    assert sent < 3 * limit and held < 5


def test_an_api_key_sent_as_a_trailer_never_authenticates(tmp_path):
    key = "trailer-test-key-0123456789abcdef"
    with running_process(build_zoo(tmp_path), {**ENV, "VAE_API_KEY": key}) as (process, url):
        answers = []
        for head, trailer in ((b"", f"X-API-Key: {key}\r\n".encode()), (f"X-API-Key: {key}\r\n".encode(), b"")):
            sock = connect(url)
            sock.sendall(CHUNKED_HEAD + head + b"\r\n" + chunked(png(), trailer))
            answers.append(status(read_until_closed(sock)[0]))
    assert answers == [401, 200]


def test_unauthenticated_slow_uploads_are_answered_401_at_once_and_cannot_hold_the_slots(tmp_path):
    key = "slot-test-key-0123456789abcdef"
    head = b"POST /encode HTTP/1.1\r\nHost: test\r\nContent-Type: image/png\r\nContent-Length: %d\r\n\r\n" % (5 * MIB)
    with running_process(build_zoo(tmp_path), {**ENV, "VAE_API_KEY": key}) as (process, url):
        with watch(process, url) as seen:
            crawlers = [connect(url) for _ in range(MAX_CONNECTIONS - 1)]  # every slot but the watcher's
            start = time.monotonic()
            for sock in crawlers:
                sock.sendall(head)
            answers = {status(sock.recv(65536)) for sock in crawlers}  # before any body byte was sent
            answered = time.monotonic() - start
            while crawlers and time.monotonic() - start < 10:  # crawling just above the minimum rate
                for sock in crawlers:
                    try:
                        sock.sendall(b"\0" * 1500)
                    except OSError:
                        sock.close()
                crawlers = [sock for sock in crawlers if sock.fileno() != -1]
                time.sleep(1)
            held = time.monotonic() - start
            served = httpx.post(f"{url}/encode", content=png(), headers={"Content-Type": "image/png", "X-API-Key": key})
        seen.assert_healthy()
    print(f"slow uploads without a key: 401 in {answered * 1000:.0f} ms, all closed in {held:.1f} s")
    assert answers == {401} and answered < 1
    assert not crawlers and held < 2.0 + 1.0 + SLACK + 1  # DRAIN_S, then LINGER_S
    assert served.status_code == 200


def test_a_client_that_never_reads_its_answers_is_dropped(server):
    process, url = server
    z = json.dumps({"z": [[0.0] * 4] * 1024}).encode()  # 1024 latents: 256 KiB of float32 images an answer
    request = (
        f"POST /decode?model=tiny-vae&format=npy HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(z)}\r\n\r\n"
    ).encode() + z
    dropped = "unread for 1 s (VAE_SEND_TIMEOUT_S)"
    before = server_log(process).count(dropped)
    with watch(process, url) as seen:
        sock = connect(url)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.sendall(request * 200)  # asks for 50 MiB of answers, and reads none
        start = time.monotonic()
        while server_log(process).count(dropped) == before and time.monotonic() - start < 10:
            time.sleep(0.05)
        held = time.monotonic() - start
        sock.close()
    seen.assert_healthy(max_growth_mib=60)
    print(f"a client reading none of its answers: dropped {held:.2f} s after asking")
    assert server_log(process).count(dropped) == before + 1 and held < TIMEOUT_S + SLACK + 0.5


def test_clients_that_never_read_cannot_hold_more_than_the_unsent_cap_together(tmp_path):
    # 16 clients each ask for a 4 MiB answer and read none of it: without a cap on the total, 64 MiB would wait
    # in send buffers for VAE_SEND_TIMEOUT_S (30 s here), and 512 such clients would hold 2 GiB.
    cap = 8 * MIB
    env = {**ENV, "VAE_MAX_LATENTS": "16384", "VAE_MAX_UNSENT_BYTES": str(cap), "VAE_SEND_TIMEOUT_S": "30"}
    env["VAE_MAX_CONNECTIONS"] = "64"
    z = np.zeros((16384, 4), np.float32)  # 16384 images of 8x8: 4 MiB of npy
    buffer = io.BytesIO()
    np.save(buffer, z)
    request = (
        "POST /decode?model=tiny-vae&format=npy HTTP/1.1\r\nHost: test\r\nContent-Type: application/x-npy\r\n"
        f"Content-Length: {len(buffer.getvalue())}\r\n\r\n"
    ).encode() + buffer.getvalue()
    with running_process(build_zoo(tmp_path), env) as (process, url):
        with watch(process, url) as seen:
            clients = []
            start = time.monotonic()
            for _ in range(16):  # one after another, as such clients pile up
                sock = connect(url)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                sock.sendall(request)
                clients.append(sock)
                time.sleep(0.1)
            while server_log(process).count("(VAE_MAX_UNSENT_BYTES is") < 14 and time.monotonic() - start < 10:
                time.sleep(0.05)
            dropped = server_log(process).count("(VAE_MAX_UNSENT_BYTES is")
            held = time.monotonic() - start
            for sock in clients:
                sock.close()
        seen.assert_healthy(max_growth_mib=40)
    print(
        f"16 clients not reading 4 MiB answers: {dropped} dropped within {held:.2f} s, "
        f"peak +{seen.peak_growth / MIB:.0f} MiB"
    )
    assert dropped >= 14 and held < 5  # at most 8 MiB, two answers, wait at any time


def test_a_request_answered_before_its_body_was_read_keeps_its_connection(server):
    process, url = server
    with watch(process, url) as seen, httpx.Client(base_url=url, timeout=10) as client:
        for _ in range(20):  # the same keep-alive connection: refused (404) before the upload is read
            body = png() * 50
            r = client.post("/encode?model=nope", content=body, headers={"Content-Type": "image/png"})
            assert r.status_code == 404
        assert client.post("/encode", content=png(), headers={"Content-Type": "image/png"}).status_code == 200
    seen.assert_healthy()
