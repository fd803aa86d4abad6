"""A real `python -m service` process: it refuses to start, with a message, when it cannot serve as configured;
it listens while its models load (/ready 503 meanwhile); SIGTERM drains it (/ready 503) and it exits 0."""

import json
import os
import signal
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from service.engine.providers import probe

from ..service.payloads import png
from ..tiny_models import build_model, build_zoo
from .server import run_to_exit, running_process, running_server, start

NO_GPU = not probe("auto").gpu
# Every batch size bucket up to 4096 rows is run before /ready: loading takes long enough to look at meanwhile.
SLOW_WARM_UP = {"VAE_MAX_BATCH_ROWS": "4096", "VAE_WARM_BUCKETS": "all"}


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    return build_zoo(tmp_path_factory.mktemp("zoo"))


@pytest.mark.skipif(not NO_GPU, reason="a GPU is usable here, so require_gpu is satisfied")
def test_require_gpu_without_a_gpu_refuses_to_start(zoo):
    code, output = run_to_exit(zoo, {"VAE_REQUIRE_GPU": "true"})
    assert code != 0
    assert "VAE_REQUIRE_GPU=true" in output and "CPUExecutionProvider" in output


def test_missing_models_dir_refuses_to_start(tmp_path):
    code, output = run_to_exit(tmp_path / "absent", {})
    assert code != 0 and "does not exist" in output


def test_tiny_models_serve_over_real_http(zoo):
    import httpx

    with running_server(zoo) as url:
        health = httpx.get(f"{url}/health").json()
        assert health["ready"] and set(health["providers"]) == {"tiny-ae", "tiny-vae", "tiny-cvae"}
        assert httpx.get(f"{url}/sample?n=4").headers["content-type"] == "image/png"


def test_several_worker_processes_each_load_the_models_and_serve(zoo):
    import httpx

    with running_process(zoo, {"VAE_PROCESSES": "2"}) as (process, url):
        children = Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text().split()
        commands = [Path(f"/proc/{pid}/cmdline").read_bytes() for pid in children]
        workers = [c for c in commands if b"spawn_main" in c]  # uvicorn's workers, beside a resource tracker
        assert len(workers) == 2
        for _ in range(20):  # each request on a new connection, which either worker may accept
            response = httpx.get(f"{url}/sample?n=2&format=npy&model=tiny-vae")
            assert response.status_code == 200 and response.headers["content-type"] == "application/x-npy"
        time.sleep(1.5)  # each process writes its metrics for the others every second
        line = 'vae_requests_total{method="GET",route="/sample",status="200"} '
        for _ in range(3):  # whichever process answers, the count is both processes'
            counts = [x for x in httpx.get(f"{url}/metrics").text.splitlines() if x.startswith(line)]
            assert counts == [line + "20.0"], counts


def worker_pids(supervisor: int) -> list[int]:
    children = Path(f"/proc/{supervisor}/task/{supervisor}/children").read_text().split()
    return [int(pid) for pid in children if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()]


def peer_ports(pid: int) -> set[int]:
    """The remote ports of a process's TCP connections on loopback (its clients' own ports)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = fd.readlink().name
        except FileNotFoundError:  # closed since the listing (a process that is starting opens and closes many)
            continue
        if target.startswith("socket:"):
            inodes.add(target[8:-1])
    ports = set()
    for row in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = row.split()
        if fields[9] in inodes and fields[3] == "01":  # ESTABLISHED
            ports.add(int(fields[2].split(":")[1], 16))
    return ports


def dead(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def test_a_worker_killed_with_sigkill_is_replaced_and_the_others_serve_on(zoo):
    """Each of the two is killed in turn (so the first process, which listens while it loads at start-up, is one of
    them): the victim's clients reconnect to the survivor, and the replacement takes no connection before it has
    loaded its models, so no request is answered 503 meanwhile."""
    encode = {"content": png(), "headers": {"Content-Type": "image/png"}}
    with running_process(zoo, {"VAE_PROCESSES": "2", **SLOW_WARM_UP}) as (process, url):
        for victim in worker_pids(process.pid):
            survivor = next(pid for pid in worker_pids(process.pid) if pid != victim)
            kill_while_serving(victim, url, encode)
            deadline = time.monotonic() + 30
            while len(worker_pids(process.pid)) < 2 and time.monotonic() < deadline:
                time.sleep(0.1)
            workers = worker_pids(process.pid)
            assert len(workers) == 2 and survivor in workers and victim not in workers, workers
            # Rounds of 8 new connections at once while the replacement starts and loads, until it has served one:
            # every request is served (a process that took connections while it loaded would answer them 503).
            replacement = next(pid for pid in workers if pid != survivor)
            statuses: list[int] = []
            with ThreadPoolExecutor(8) as pool:
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline:
                    answers = list(pool.map(post_once, [url] * 8, [encode] * 8, [replacement] * 8))
                    statuses += [status for status, _ in answers]
                    if (200, True) in answers:
                        break
            assert set(statuses) == {200}, statuses


def post_once(url: str, encode: dict, pid: int) -> tuple[int, bool]:
    """One request on a new connection: its status, and whether `pid` served it."""
    with httpx.Client(base_url=url, timeout=10) as client:
        response = client.post("/encode", **encode)
        return response.status_code, served_by(pid, response)


def served_by(pid: int, response: httpx.Response) -> bool:
    """Whether `pid` holds the connection that `response` came on (ask before the connection closes)."""
    return response.extensions["network_stream"].get_extra_info("client_addr")[1] in peer_ports(pid)


def kill_while_serving(victim: int, url: str, encode: dict) -> None:
    """SIGKILL `victim` while 16 keep-alive clients hold connections on it and on the other process."""
    clients = [httpx.Client(base_url=url, timeout=10) for _ in range(16)]
    try:
        ports = []
        for client in clients:
            r = client.post("/encode", **encode)
            assert r.status_code == 200
            ports.append(r.extensions["network_stream"].get_extra_info("client_addr")[1])
        on_victim = {i for i, port in enumerate(ports) if port in peer_ports(victim)}
        assert 0 < len(on_victim) < len(clients), "both workers must hold connections for this to test anything"
        os.kill(victim, signal.SIGKILL)
        while not dead(victim):
            time.sleep(0.01)
        for i, client in enumerate(clients):
            if i in on_victim:  # its server is gone mid-connection: the client may see it once, then reconnects
                try:
                    client.post("/encode", **encode)
                except httpx.TransportError:
                    pass
            # The survivor's connections are not affected; the victim's clients are served on a new one.
            assert client.post("/encode", **encode).status_code == 200
    finally:
        for client in clients:
            client.close()


def test_startup_failure_in_a_worker_process_ends_the_service(tmp_path):
    code, output = run_to_exit(tmp_path / "absent", {"VAE_PROCESSES": "2"})
    assert code != 0 and "does not exist" in output


@pytest.fixture(scope="module")
def many_models(tmp_path_factory):
    """Enough small models that loading and warming them takes a while (about a second on 2 cores with
    SLOW_WARM_UP): long enough to look at the server meanwhile."""
    root = tmp_path_factory.mktemp("many")
    for i in range(10):
        build_model(root / f"small-{i}", name=f"small-{i}", kind="vae", seed=i, size=28)
    return root


def test_the_port_answers_while_models_load_with_ready_503(many_models):
    process, url, log = start(many_models, {**SLOW_WARM_UP, "VAE_LOG_LEVEL": "warning"})
    try:
        deadline = time.monotonic() + 60
        with httpx.Client(base_url=url, timeout=5) as client:
            while True:  # the first answers of all, as soon as the port accepts
                assert process.poll() is None and time.monotonic() < deadline, log.read_text()
                try:
                    ready, health = client.get("/ready"), client.get("/health")
                    break
                except httpx.TransportError:
                    time.sleep(0.01)
            first_answer = time.monotonic()
            while client.get("/ready").status_code != 200:
                assert process.poll() is None and time.monotonic() < deadline, log.read_text()
                time.sleep(0.02)
        print(f"listening {time.monotonic() - first_answer:.2f} s before the models were ready")
        assert ready.status_code == 503 and int(ready.headers["retry-after"]) > 0
        assert health.status_code == 200 and health.json()["ready"] is False
    finally:
        process.terminate()
        process.wait(10)
        log.unlink(missing_ok=True)


def test_sigterm_while_models_load_ends_the_server_with_status_0(many_models):
    process, url, log = start(many_models, SLOW_WARM_UP)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None and time.monotonic() < deadline, log.read_text()
            try:
                assert httpx.get(f"{url}/ready", timeout=5).status_code == 503
                break
            except httpx.TransportError:
                time.sleep(0.01)
        process.send_signal(signal.SIGTERM)
        assert process.wait(20) == 0, log.read_text()
        assert "Application shutdown complete" in log.read_text()  # what it had loaded was freed
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        log.unlink(missing_ok=True)


def test_sigterm_ends_the_server_with_status_0(zoo):
    with running_process(zoo) as (process, url):
        process.send_signal(signal.SIGTERM)
        assert process.wait(10) == 0


def head(length: int) -> bytes:
    return f"POST /encode HTTP/1.1\r\nHost: t\r\nContent-Type: image/png\r\nContent-Length: {length}\r\n\r\n".encode()


def test_after_sigterm_ready_is_503_while_a_request_finishes_then_exit_0(zoo):
    body = png()
    # One process: its connections are the ones this test holds (each process drains its own).
    with running_process(zoo, {"VAE_PROCESSES": "1"}) as (process, url), httpx.Client(base_url=url) as kept_alive:
        assert kept_alive.get("/ready").status_code == 200
        port = int(url.rsplit(":", 1)[1])
        upload = socket.create_connection(("127.0.0.1", port), timeout=10)
        upload.sendall(head(len(body)) + body[:10])  # in flight: headers in, body half-way
        time.sleep(0.2)
        process.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        ready = kept_alive.get("/ready")  # a load balancer's pooled connection sees the instance leave
        assert ready.status_code == 503 and int(ready.headers["retry-after"]) > 0
        assert "shutting down" in ready.json()["detail"] and ready.headers["connection"] == "close"
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{url}/health", timeout=2)  # no new connections
        upload.sendall(body[10:])
        answer = upload.recv(65536)
        assert answer.startswith(b"HTTP/1.1 200 "), answer[:300]
        assert process.wait(10) == 0


def test_with_several_processes_sigterm_lets_a_request_finish_refuses_new_ones_and_exits_0(zoo):
    body = png()
    with running_process(zoo, {"VAE_PROCESSES": "2"}) as (process, url):
        port = int(url.rsplit(":", 1)[1])
        upload = socket.create_connection(("127.0.0.1", port), timeout=10)
        upload.sendall(head(len(body)) + body[:10])  # in flight in one of the processes
        time.sleep(0.2)
        process.send_signal(signal.SIGTERM)  # to the supervisor, which passes it on
        time.sleep(0.3)
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{url}/health", timeout=2)  # no new connections
        upload.sendall(body[10:])
        assert upload.recv(65536).startswith(b"HTTP/1.1 200 ")
        assert process.wait(15) == 0


def test_the_graceful_shutdown_timeout_bounds_a_never_ending_upload(zoo):
    env = {"VAE_GRACEFUL_SHUTDOWN_TIMEOUT_S": "1", "VAE_BODY_TIMEOUT_S": "60"}
    with running_process(zoo, env) as (process, url):
        port = int(url.rsplit(":", 1)[1])
        upload = socket.create_connection(("127.0.0.1", port), timeout=10)
        upload.sendall(head(100_000) + b"\0" * 1000)  # and nothing more, ever
        time.sleep(0.2)
        start = time.monotonic()
        process.send_signal(signal.SIGTERM)
        assert process.wait(10) == 0
        assert time.monotonic() - start < 3
        upload.close()


@pytest.mark.parametrize("form", ["text", "json"])
def test_every_log_line_of_a_request_carries_its_request_id(zoo, form):
    with running_process(zoo, {"VAE_PROCESSES": "1", "VAE_LOG_FORMAT": form}) as (process, url):
        r = httpx.post(f"{url}/encode?model=nope", content=png(), headers={"X-Request-ID": "log-test-7"})
        assert r.status_code == 404 and r.headers["x-request-id"] == "log-test-7"
        time.sleep(0.2)
        lines = Path(f"/proc/{process.pid}/fd/1").read_text().splitlines()
    if form == "json":
        records = [json.loads(line) for line in lines if line.startswith("{")]
        assert len(records) == len([line for line in lines if line.strip()]), lines[:5]  # every line is JSON
        mine = [r for r in records if r["request_id"] == "log-test-7"]
        assert any(r["logger"] == "uvicorn.access" and "POST /encode" in r["message"] for r in mine), mine
        assert all(r["request_id"] == "-" for r in records if "loaded model" in r["message"])  # outside requests
    else:
        access = [line for line in lines if "POST /encode?model=nope" in line]
        assert access and all("[log-test-7]" in line for line in access), access
