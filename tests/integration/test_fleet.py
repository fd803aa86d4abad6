"""A fleet that loses nothing: three service processes behind Debian's HAProxy on loopback, under steady load from
the project's load generator (docker/fleet/fleet.py). An instance killed with SIGKILL mid-load, and a rolling
restart (SIGTERM one instance at a time, wait until it is ready again), cost no client a failed request.
`pytest -s` prints the requests sent, failed and answered per instance."""

from __future__ import annotations

import os
import shutil
import signal
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from bench.loadgen import Request, sweep

from ..docker.files import DOCKER, load_script
from ..service.payloads import png
from ..tiny_models import build_zoo

fleet_module = load_script(DOCKER / "fleet" / "fleet.py")

pytestmark = pytest.mark.skipif(
    shutil.which("haproxy") is None and not os.environ.get("CI"),
    reason="Debian's haproxy is not installed (.ci/debian.sh installs it; CI fails without it)",
)
ENCODE = Request("POST", "/encode?model=tiny-vae", png(), {"Content-Type": "image/png"})


@pytest.fixture(scope="module")
def fleet(tmp_path_factory) -> Iterator[Any]:
    with fleet_module.LocalFleet(build_zoo(tmp_path_factory.mktemp("zoo")), instances=3) as running:
        yield running


def under_load(fleet: Any, seconds: float, during: Callable[[], None]) -> dict[str, Any]:
    """Steady load on the fleet for `seconds` while `during()` runs; the load's report, with the 2xx answers each
    instance gave (from HAProxy's statistics)."""
    host, port = fleet.url.removeprefix("http://").split(":")
    before = {name: int(row["hrsp_2xx"]) for name, row in fleet.servers().items()}
    report: dict[str, Any] = {}
    load = threading.Thread(target=lambda: report.update(sweep(host, int(port), ENCODE, 8, seconds, processes=1)))
    load.start()
    time.sleep(1.5)  # the load is steady before anything happens
    during()
    load.join()
    after = {name: int(row["hrsp_2xx"]) for name, row in fleet.servers().items()}
    report["per_instance"] = {name: after[name] - before.get(name, 0) for name in sorted(after)}
    return report


def show(case: str, report: dict[str, Any]) -> None:
    print(
        f"\n{case}: {report['requests'] + report['errors']} requests, {report['errors']} failed "
        f"{report['error_statuses']}, answers per instance {report['per_instance']}"
    )


def test_an_instance_killed_mid_load_costs_no_request(fleet):
    victim = fleet.instances[1]
    report = under_load(fleet, 6, lambda: victim.stop(signal.SIGKILL))
    show("SIGKILL of one instance", report)
    assert report["errors"] == 0 and report["requests"] > 100
    assert all(report["per_instance"][i.name] > 0 for i in fleet.instances if i is not victim)
    fleet.restart(victim)  # back for the next case


def test_a_rolling_restart_costs_no_request(fleet):
    def roll() -> None:
        for instance in fleet.instances:
            fleet.restart(instance)

    started = time.monotonic()
    report = under_load(fleet, 30, roll)
    show(f"rolling restart ({time.monotonic() - started:.0f} s)", report)
    assert report["errors"] == 0 and report["requests"] > 100
    assert all(count > 0 for count in report["per_instance"].values())
