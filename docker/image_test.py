"""`make image-test`: build the CPU image from the local base, run it with podman, and use it from the host.

    python docker/image_test.py [--base localhost/vae-base:bookworm] [--tag localhost/vae-service:cpu-test]

Checks what a user relies on: the image builds from the Dockerfile; it holds no training code, torch or compiler;
it runs as a non-root user on a read-only root filesystem; it serves the shipped models (/ready, /models, /encode,
/sample, /generate) on a published port; its HEALTHCHECK passes; a folder mounted on /models replaces the
shipped models; and SIGTERM (`podman stop`) lets an in-flight request finish, then ends the server with exit
code 0. Containers are removed whatever happens. Prints the time of each step and the image's size.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
READY_TIMEOUT = 120.0  # s: loading and warming 4 small models takes a few seconds on 2 CPU cores
# The same restrictions as docker/k8s/deployment.yaml's securityContext.
HARDENING = ["--read-only", "--cap-drop=ALL", "--security-opt=no-new-privileges"]

TIMINGS: list[tuple[str, float]] = []


class Failure(Exception):
    """A check that failed; the message says what was expected and what came back."""


@contextmanager
def step(name: str) -> Iterator[None]:
    """Time one step and print it as it ends."""
    start = time.monotonic()
    print(f"--- {name}", flush=True)
    try:
        yield
    finally:
        TIMINGS.append((name, time.monotonic() - start))
        print(f"--- {name}: {TIMINGS[-1][1]:.1f} s", flush=True)


def check(condition: bool, message: str) -> None:
    if not condition:
        raise Failure(message)


def podman(*args: str, capture: bool = True, check_rc: bool = True) -> subprocess.CompletedProcess:
    """Run `podman ARGS` (15 minutes at most); captured output comes back as text."""
    result = subprocess.run(["podman", *args], capture_output=capture, text=True, timeout=900)
    if check_rc and result.returncode != 0:
        raise Failure(f"podman {' '.join(args)} exited {result.returncode}:\n{result.stdout}{result.stderr}")
    return result


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def build(base: str, tag: str) -> None:
    """podman build of the CPU variant FROM the local base; the host CA bundle goes in as a build secret."""
    args = [
        "build",
        "--format=docker",
        "--pull=never",
        "--layers",
        "--file",
        str(ROOT / "Dockerfile"),
        "--build-arg",
        f"BASE_IMAGE={base}",
        "--build-arg",
        "VARIANT=cpu",
        "--tag",
        tag,
    ]
    if CA_BUNDLE.is_file():
        args += ["--secret", f"id=ca,src={CA_BUNDLE}"]
    # Proxies of the host, if any, for pip inside the build (build args are not kept in the final image).
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy"):
        if name in os.environ:
            args += ["--build-arg", name]
    podman(*args, str(ROOT), capture=False)


def inspect_image(tag: str) -> None:
    """The image's own metadata: numeric non-root user, port, health check, exec-form command."""
    fmt = "{{.User}}|{{json .Config.ExposedPorts}}|{{json .HealthCheck}}|{{json .Config.Cmd}}"
    user, ports, health, cmd = podman("image", "inspect", "--format", fmt, tag).stdout.strip().split("|")
    print(f"user={user} ports={ports} cmd={cmd}\nhealthcheck={health}")
    uid = user.split(":")[0]
    check(uid.isdigit() and uid != "0", f"USER should be a numeric non-root uid: {user!r}")
    check("8000/tcp" in ports, f"port 8000 should be exposed: {ports}")
    check("/ready" in health, f"the HEALTHCHECK should probe /ready: {health}")
    check(cmd == '["vae-serve"]', f"CMD should be exec form: {cmd}")
    variant, size = (
        podman("image", "inspect", "--format", '{{index .Labels "vae-service.variant"}}|{{.Size}}', tag)
        .stdout.strip()
        .split("|")
    )
    check(variant == "cpu", f"the image under test should be the cpu variant: label {variant!r}")
    print(f"variant {variant}; image size: {int(size) / 1e6:.0f} MB")


@contextmanager
def container(tag: str, name: str, *extra: str) -> Iterator[str]:
    """Run the image detached on a free loopback port; yield its base URL; remove it at the end."""
    port = free_port()
    try:
        podman("run", "--detach", "--name", name, "--publish", f"127.0.0.1:{port}:8000", *HARDENING, *extra, tag)
        yield f"http://127.0.0.1:{port}"
    finally:
        podman("rm", "--force", "--time=0", name, check_rc=False)


def logs(name: str) -> str:
    result = podman("logs", name, check_rc=False)
    return result.stdout + result.stderr


def wait_ready(url: str, name: str) -> float:
    """Poll /ready until 200; fail with the container's log if it exits or never gets there."""
    start = time.monotonic()
    while time.monotonic() - start < READY_TIMEOUT:
        state = podman("inspect", "--format", "{{.State.Status}}", name).stdout.strip()
        check(state == "running", f"container {name} is {state}:\n{logs(name)}")
        try:
            if httpx.get(f"{url}/ready", timeout=2).status_code == 200:
                return time.monotonic() - start
        except httpx.TransportError:
            pass
        time.sleep(0.25)
    raise Failure(f"/ready not 200 after {READY_TIMEOUT} s:\n{logs(name)}")


def exec_in(name: str, *command: str) -> str:
    return podman("exec", name, *command).stdout.strip()


def check_inside(name: str) -> None:
    """The server process is not root, and the image holds nothing of training."""
    uid = exec_in(name, "id", "-u")
    status = exec_in(name, "cat", "/proc/1/status")
    pid1_uid = next(line.split()[1] for line in status.splitlines() if line.startswith("Uid:"))
    cmdline = exec_in(name, "cat", "/proc/1/cmdline").replace("\0", " ")
    print(f"exec uid={uid}; PID 1 uid={pid1_uid}: {cmdline}")
    check(uid != "0" and pid1_uid != "0", f"the server runs as root (exec uid {uid}, PID 1 uid {pid1_uid})")
    check("vae-serve" in cmdline, f"PID 1 should be the server itself (exec form), not a shell: {cmdline!r}")
    # Training (torch, the training package, onnx) stays out; so do the CUDA libraries in the cpu variant.
    found = exec_in(
        name,
        "python",
        "-c",
        "import importlib.util as u; print([m for m in ('torch', 'training', 'onnx', 'nvidia') if u.find_spec(m)])",
    )
    check(found == "[]", f"the CPU image should hold no training code and no CUDA libraries: found {found}")
    compilers = podman("exec", name, "sh", "-c", "command -v gcc cc c++ || true").stdout.strip()
    check(not compilers, f"the image should hold no compiler: {compilers}")
    health = podman("healthcheck", "run", name, check_rc=False)
    check(health.returncode == 0, f"HEALTHCHECK failed: {health.stdout}{health.stderr}")
    print("healthcheck: healthy")


def png_size(body: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(body)) as image:
        check(image.format == "PNG", f"expected a PNG, got {image.format}")
        return image.size


def check_png(r: httpx.Response, route: str) -> None:
    check(r.status_code == 200 and r.headers["content-type"] == "image/png", f"{route}: {r.status_code} {r.text[:300]}")


def check_endpoints(http: httpx.Client) -> bytes:
    """The routes a client uses, against the shipped models; returns one generated digit as a PNG."""
    health = http.get("/health").json()
    check(health["status"] == "ok" and health["ready"] is True, f"/health: {health}")
    models = {m["name"]: m for m in http.get("/models").json()["models"]}
    shipped = sorted(p.parent.name for p in (ROOT / "models").glob("*/manifest.json"))
    check(sorted(models) == shipped, f"/models should list the shipped models {shipped}: {sorted(models)}")
    print(f"/models: {sorted(models)}")

    r = http.get("/sample", params={"n": 16, "seed": 1})
    check_png(r, "/sample")
    print(f"/sample?n=16: {len(r.content)} bytes, a {png_size(r.content)} PNG grid")
    again = http.get("/sample", params={"n": 16, "seed": 1})
    check(again.content == r.content, "/sample with the same seed should give the same images")

    r = http.get("/generate", params={"label": 7, "n": 4})
    check_png(r, "/generate")
    print(f"/generate?label=7&n=4: a {png_size(r.content)} PNG grid")
    digit = http.get("/generate", params={"label": 7, "n": 1, "seed": 0}).content
    check(png_size(digit) == (28, 28), f"/generate n=1 should be a 28 x 28 digit: {png_size(digit)}")

    r = http.post("/encode", files={"file": ("digit.png", digit, "image/png")})
    check(r.status_code == 200, f"/encode: {r.status_code} {r.text[:300]}")
    body = r.json()
    latent_dim = models[body["model"]]["latent_dim"]
    check(len(body["mu"]) == 1 and len(body["mu"][0]) == latent_dim, f"/encode mu should be [1, {latent_dim}]")
    print(f"/encode (multipart): model {body['model']}, mu [1, {latent_dim}]")

    r = http.post("/encode", content=b"GIF89a not an image", headers={"Content-Type": "image/gif"})
    check(r.status_code == 415, f"a GIF upload should be refused with 415, got {r.status_code}")
    return digit


def check_graceful_stop(url: str, name: str, digit: bytes) -> None:
    """SIGTERM while a request is in flight: the request still gets its answer, then the server exits 0."""
    uploading, release = threading.Event(), threading.Event()
    answer: dict[str, object] = {}

    def slow_body() -> Iterator[bytes]:  # the upload pauses half-way until the server is stopping
        yield digit[: len(digit) // 2]
        uploading.set()
        release.wait(30)
        yield digit[len(digit) // 2 :]

    def request() -> None:
        try:
            r = httpx.post(f"{url}/encode", content=slow_body(), headers={"Content-Type": "image/png"}, timeout=60)
            answer["status"] = r.status_code
        except httpx.HTTPError as e:
            answer["error"] = repr(e)

    client = threading.Thread(target=request)
    client.start()
    check(uploading.wait(10), "the in-flight request never started")
    time.sleep(0.5)  # the server has the request's headers and is waiting for the rest of the body
    start = time.monotonic()
    stop = subprocess.Popen(["podman", "stop", "--time=20", name], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    # Finish the upload only once the server has begun to shut down, so the request really is in flight then.
    deadline = time.monotonic() + 15
    while "Shutting down" not in logs(name) and time.monotonic() < deadline:
        time.sleep(0.2)
    shutting_down = "Shutting down" in logs(name)
    time.sleep(0.5)
    release.set()
    client.join(30)
    stop.wait(40)
    elapsed = time.monotonic() - start
    exit_code = podman("inspect", "--format", "{{.State.ExitCode}}", name).stdout.strip()
    log = logs(name)
    print(f"podman stop: {elapsed:.1f} s; in-flight request: {answer}; exit code {exit_code}")
    print("\n".join(line for line in log.splitlines()[-5:]))
    check(shutting_down, f"no graceful shutdown began within 15 s of SIGTERM:\n{log}")
    check(answer.get("status") == 200, f"the request in flight at SIGTERM should finish with 200: {answer}")
    check(exit_code == "0", f"the server should exit 0 on SIGTERM, exited {exit_code}:\n{log}")
    check(elapsed < 15, f"podman stop took {elapsed:.1f} s: SIGTERM did not end the server (SIGKILL after 20 s?)")
    # "Waiting for connections to close": uvicorn held the shutdown for the open request.
    for line in (
        "Shutting down",
        "Waiting for connections to close",
        "Application shutdown complete",
        "Finished server process",
    ):
        check(line in log, f"the log should show uvicorn's graceful shutdown ({line!r}):\n{log}")


def check_models_mount(tag: str, name: str) -> None:
    """A folder mounted read-only on /models replaces the shipped models."""
    with tempfile.TemporaryDirectory(prefix="vae-models-") as tmp:
        mounted = Path(tmp) / "models"
        shutil.copytree(ROOT / "models" / "mnist-cvae", mounted / "mnist-cvae")
        for path in [mounted, *mounted.rglob("*")]:  # readable by the image's non-root user
            path.chmod(0o755 if path.is_dir() else 0o644)
        Path(tmp).chmod(0o755)
        with container(tag, name, "--volume", f"{mounted}:/models:ro") as url:
            wait_ready(url, name)
            names = [m["name"] for m in httpx.get(f"{url}/models", timeout=10).json()["models"]]
            print(f"with {mounted} on /models: {names}")
            check(names == ["mnist-cvae"], f"the mounted folder should replace the shipped models: {names}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="localhost/vae-base:bookworm", help="local base image (docker/local-base.sh)")
    parser.add_argument("--tag", default="localhost/vae-service:cpu-test", help="tag for the image under test")
    args = parser.parse_args(argv)
    os.environ.setdefault("CONTAINERS_CONF", str(ROOT / "docker" / "podman" / "containers.conf"))
    name = f"vae-image-test-{os.getpid()}"
    total = time.monotonic()
    try:
        with step("build the CPU image"):
            build(args.base, args.tag)
        with step("inspect the image"):
            inspect_image(args.tag)
        with container(args.tag, name) as url:
            with step("start the container until /ready"):
                print(f"ready after {wait_ready(url, name):.1f} s at {url}")
            with step("inside the container"):
                check_inside(name)
            with step("endpoints from the host"), httpx.Client(base_url=url, timeout=30) as http:
                digit = check_endpoints(http)
            with step("SIGTERM with a request in flight"):
                check_graceful_stop(url, name, digit)
        with step("models mounted on /models"):
            check_models_mount(args.tag, f"{name}-mount")
    except (Failure, subprocess.TimeoutExpired) as e:
        print(f"\nFAILED: {e}", file=sys.stderr)
        return 1
    finally:
        print("\ntimings:")
        for label, seconds in TIMINGS:
            print(f"  {seconds:7.1f} s  {label}")
        print(f"  {time.monotonic() - total:7.1f} s  image test")
    print("\nimage test passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
