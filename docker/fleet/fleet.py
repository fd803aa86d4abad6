"""A fleet on one machine, without containers: N `python -m service` instances behind HAProxy on loopback.

    python docker/fleet/fleet.py --instances 3 --port 8080 --models-dir models

HAProxy checks each instance's `/ready` every half second and routes only to ready ones; a request that meets a
dead or stopping instance (refused connection, reset, empty answer, 503) is sent again to another one. That is
safe because every route is a pure function of its inputs and seed. The same configuration, with the instances
found by DNS, runs the compose fleet (docker/fleet/compose.yaml, haproxy.cfg).
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

ROOT = Path(__file__).resolve().parents[2]

# What makes a fleet lose nothing: health checks on /ready (a stopping instance answers 503 there first), L7
# retries of any request that failed on its way (the request is buffered so that it can be sent again), and
# redispatch of every retry to another server. With the request buffered, `timeout http-request` covers the upload
# too: it allows what the service allows (VAE_UPLOAD_TIMEOUT_S, 120 s by default; the service itself cuts off
# slow headers and uploads that crawl), and an idle keep-alive connection is closed after 10 s, not after it.
DEFAULTS = """\
defaults
    mode http
    option http-buffer-request
    timeout connect 1s
    timeout client 130s
    timeout server 60s
    timeout http-request 120s
    timeout http-keep-alive 10s
    retries 3
    option redispatch 1
    retry-on all-retryable-errors
    default-server inter 500ms fastinter 200ms downinter 500ms fall 1 rise 2
"""


def config(servers: list[str], bind: str, stats_bind: str, *, resolvers: str | None = None) -> str:
    """haproxy.cfg: `servers` (HAProxy `server` or `server-template` lines) behind `bind`, the CSV statistics on
    `stats_bind`; `resolvers`, a nameserver address, when the servers are found by DNS (compose: 127.0.0.11:53)."""
    lines = ["global", "    maxconn 4096", "", DEFAULTS]
    if resolvers is not None:
        lines += ["resolvers dns", f"    nameserver dns {resolvers}", "    hold valid 1s", ""]
    lines += [
        "frontend vae",
        f"    bind {bind}",
        "    default_backend instances",
        "",
        "backend instances",
        "    balance leastconn",
        "    option httpchk GET /ready",
        "    http-check expect status 200",
        "    http-response set-header X-Served-By %s",
        *(f"    {line}" for line in servers),
        "",
        "frontend statistics",
        f"    bind {stats_bind}",
        "    stats enable",
        "    stats uri /stats",
    ]
    return "\n".join(lines) + "\n"


def compose_config(replicas: int = 3) -> str:
    """docker/fleet/haproxy.cfg: the compose fleet's `vae` replicas, found through Docker's DNS."""
    template = f"server-template vae- {replicas} vae:8000 check resolvers dns init-addr none"
    header = (
        "# The compose fleet's HAProxy (docker/fleet/compose.yaml): `python docker/fleet/fleet.py --compose-config`.\n"
    )
    return header + config([template], "*:8000", "*:8404", resolvers="127.0.0.11:53")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/ready", timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


class Instance:
    """One `python -m service` process on its own port."""

    def __init__(self, name: str, models_dir: Path, env: dict[str, str]) -> None:
        self.name = name
        self.models_dir = models_dir
        self.env = env
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None
        self.log = Path(tempfile.mkstemp(prefix=f"vae-{name}-", suffix=".log")[1])

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "service", "--host", "127.0.0.1", "--port", str(self.port)]
                + ["--models-dir", str(self.models_dir)],
                cwd=ROOT,
                env={**os.environ, "VAE_PROCESSES": "1", **self.env},
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not ready(self.url):
            if self.process is None or self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"instance {self.name} did not become ready:\n{self.log.read_text()[-3000:]}")
            time.sleep(0.1)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None


class LocalFleet:
    """`instances` service processes and HAProxy in front of them; a context manager that stops them all."""

    def __init__(
        self,
        models_dir: Path | list[Path],
        instances: int = 3,
        port: int | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        """`models_dir`: one folder for every instance, or one each (a roll-out changes them one at a time)."""
        haproxy = shutil.which("haproxy")
        if haproxy is None:
            raise RuntimeError("haproxy is not installed (Debian: apt-get install haproxy)")
        self.haproxy = haproxy
        folders = models_dir if isinstance(models_dir, list) else [models_dir] * instances
        self.instances = [Instance(f"vae-{i + 1}", folders[i], env or {}) for i in range(instances)]
        self.port = port or free_port()
        self.stats_port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.balancer: subprocess.Popen[bytes] | None = None
        self.folder = Path(tempfile.mkdtemp(prefix="vae-fleet-"))

    def __enter__(self) -> LocalFleet:
        try:
            for instance in self.instances:
                instance.start()
            for instance in self.instances:
                instance.wait_ready()
            servers = [f"server {i.name} 127.0.0.1:{i.port} check" for i in self.instances]
            path = self.folder / "haproxy.cfg"
            path.write_text(config(servers, f"127.0.0.1:{self.port}", f"127.0.0.1:{self.stats_port}"))
            with (self.folder / "haproxy.log").open("ab") as out:
                self.balancer = subprocess.Popen([self.haproxy, "-db", "-f", str(path)], stdout=out, stderr=out)
            deadline = time.monotonic() + 15
            while not all(row["status"] == "UP" for row in self.servers().values()):
                if self.balancer.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"haproxy did not see every instance up:\n{self.haproxy_log()}")
                time.sleep(0.1)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if self.balancer is not None:
            self.balancer.terminate()
            self.balancer.wait(10)
        for instance in self.instances:
            instance.stop()
            instance.log.unlink(missing_ok=True)
        shutil.rmtree(self.folder, ignore_errors=True)

    def haproxy_log(self) -> str:
        return (self.folder / "haproxy.log").read_text()[-3000:]

    def servers(self) -> dict[str, dict[str, str]]:
        """HAProxy's statistics of each instance (`status`: UP, DOWN...; `hrsp_2xx`: answers 2xx it gave)."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.stats_port}/stats;csv", timeout=5) as response:
                text = response.read().decode().lstrip("# ")
        except OSError:
            return {}
        rows = csv.DictReader(io.StringIO(text))
        return {row["svname"]: row for row in rows if row["pxname"] == "instances" and row["svname"].startswith("vae-")}

    def restart(
        self, instance: Instance, sig: int = signal.SIGTERM, while_stopped: Callable[[], None] | None = None
    ) -> None:
        """Stop an instance (SIGTERM drains it; SIGKILL does not), run `while_stopped` (a roll-out changes its
        models then), start it again, and wait until HAProxy routes to it."""
        instance.stop(sig)
        if while_stopped is not None:
            while_stopped()
        instance.start()
        instance.wait_ready()
        deadline = time.monotonic() + 15
        while self.servers().get(instance.name, {}).get("status") != "UP":
            if time.monotonic() > deadline:
                raise RuntimeError(f"haproxy did not see {instance.name} up again:\n{self.haproxy_log()}")
            time.sleep(0.1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=3)
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--models-dir", type=Path, default=ROOT / "models")
    parser.add_argument("--compose-config", action="store_true", help="print the compose fleet's haproxy.cfg")
    args = parser.parse_args()
    if args.compose_config:
        print(compose_config(), end="")
        return
    with LocalFleet(args.models_dir.resolve(), args.instances, args.port) as fleet:
        print(f"{args.instances} instances behind HAProxy on {fleet.url}; statistics on :{fleet.stats_port}/stats")
        try:
            signal.pause()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
