"""A fleet that loses nothing: three service processes behind Debian's HAProxy on loopback, under steady load from
the project's load generator (docker/fleet/fleet.py). An instance killed with SIGKILL mid-load, a rolling restart
(SIGTERM one instance at a time, wait until it is ready again) and a model rolled out instance by instance cost no
client a failed request; during the roll-out every answer names the old version or the new one.
`pytest -s` prints the requests sent, failed and answered per instance."""

from __future__ import annotations

import json
import os
import shutil
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
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
    # A models folder each, as each container has its own: a roll-out changes them one instance at a time.
    folders = [build_zoo(tmp_path_factory.mktemp(f"models-{i}")) for i in range(3)]
    with fleet_module.LocalFleet(folders, instances=3) as running:
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


def new_version(folder: Path, version: str) -> Callable[[], None]:
    """Replace the model folder by a new version of it, as a deployment would (a copy, then one rename)."""

    def roll_out() -> None:
        staged = folder.with_name(folder.name + ".new")
        shutil.copytree(folder, staged)
        manifest = json.loads((staged / "manifest.json").read_text())
        (staged / "manifest.json").write_text(json.dumps({**manifest, "version": version}))
        shutil.rmtree(folder)
        staged.rename(folder)

    return roll_out


def test_a_model_rolled_out_instance_by_instance_answers_from_the_old_or_the_new_version(fleet):
    old = json.loads((fleet.instances[0].models_dir / "tiny-vae" / "manifest.json").read_text())["version"]
    seen: dict[str, int] = {}
    done = threading.Event()

    def sample() -> None:  # besides the load: which version made each answer, and any failure
        with httpx.Client(base_url=fleet.url, timeout=10) as client:
            while not done.is_set():
                r = client.post("/encode?model=tiny-vae", content=png(), headers={"Content-Type": "image/png"})
                key = r.headers.get("x-model-version", "none") if r.status_code == 200 else f"status {r.status_code}"
                seen[key] = seen.get(key, 0) + 1

    def roll() -> None:
        sampler = threading.Thread(target=sample)
        sampler.start()
        for instance in fleet.instances:
            fleet.restart(instance, while_stopped=new_version(instance.models_dir / "tiny-vae", "2.0.0"))
        time.sleep(1)
        done.set()
        sampler.join()

    report = under_load(fleet, 30, roll)
    show("model roll-out", report)
    print(f"versions answering the sampler: {seen}")
    assert report["errors"] == 0 and report["requests"] > 100
    assert set(seen) == {old, "2.0.0"}, seen
