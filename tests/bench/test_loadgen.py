"""bench/loadgen.py: requests are framed and counted right, errors are counted apart, clients split over processes."""

import asyncio
import threading

import pytest

from bench.loadgen import Request, _read_response, _split, sweep


def read(raw: bytes) -> tuple[int, bytes]:
    async def go():
        reader = asyncio.StreamReader()
        reader.feed_data(raw)
        reader.feed_eof()
        status = await _read_response(reader)
        return status, await reader.read()  # what is left is the next response

    return asyncio.run(go())


def test_content_length_and_chunked_bodies_are_read_exactly():
    assert read(b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nabcNEXT") == (200, b"NEXT")
    chunked = b"HTTP/1.1 503 X\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\nNEXT"
    assert read(chunked) == (503, b"NEXT")


def test_request_bytes_carry_the_body_and_its_length():
    wire = Request("POST", "/encode", b"\x89PNG", {"Content-Type": "image/png"}).wire("127.0.0.1", 8000)
    head, body = wire.split(b"\r\n\r\n")
    assert head.startswith(b"POST /encode HTTP/1.1\r\n") and b"Content-Length: 4" in head and body == b"\x89PNG"


@pytest.mark.parametrize(("clients", "processes", "shares"), [(1, 2, [1]), (8, 2, [4, 4]), (9, 2, [5, 4])])
def test_clients_are_split_over_processes(clients, processes, shares):
    assert _split(clients, processes) == shares


def test_a_sweep_counts_every_answer_and_separates_errors():
    answered = []

    async def handle(reader, writer):
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError:
                return
            answered.append(head)
            status = b"200 OK" if len(answered) % 2 else b"503 Busy"
            writer.write(b"HTTP/1.1 " + status + b"\r\nContent-Length: 2\r\n\r\nok")
            await writer.drain()

    ready = threading.Event()
    port = []

    def serve():
        async def main():
            server = await asyncio.start_server(handle, "127.0.0.1", 0)
            port.append(server.sockets[0].getsockname()[1])
            ready.set()
            await asyncio.sleep(10)

        asyncio.run(main())

    threading.Thread(target=serve, daemon=True).start()
    ready.wait(5)
    result = sweep("127.0.0.1", port[0], Request("GET", "/x"), clients=4, seconds=0.3, processes=2)
    measured = result["requests"] + result["errors"]
    assert result["loadgen_processes"] == 2 and result["error_statuses"] == [503]
    assert measured > 0 and len(answered) >= measured + 4  # +1 untimed set-up request per connection
    assert abs(result["requests"] - result["errors"]) <= 5  # the server alternates 200 and 503
