"""docker/fleet/: the compose fleet's HAProxy configuration is the one the local fleet runs, and HAProxy accepts it."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from .files import DOCKER, load_script, yaml_documents

fleet = load_script(DOCKER / "fleet" / "fleet.py")


def test_haproxy_cfg_is_what_the_fleet_script_writes():
    assert (DOCKER / "fleet" / "haproxy.cfg").read_text() == fleet.compose_config(), (
        "docker/fleet/haproxy.cfg is stale: python docker/fleet/fleet.py --compose-config > docker/fleet/haproxy.cfg"
    )


@pytest.mark.skipif(shutil.which("haproxy") is None, reason="Debian's haproxy is not installed (.ci/haproxy.sh)")
def test_haproxy_accepts_the_compose_configuration():
    checked = subprocess.run(["haproxy", "-c", "-f", str(DOCKER / "fleet" / "haproxy.cfg")], capture_output=True)
    assert checked.returncode == 0, checked.stdout.decode() + checked.stderr.decode()


def test_the_compose_fleet_runs_three_cpu_replicas_behind_the_balancer():
    (compose,) = yaml_documents(DOCKER / "fleet" / "compose.yaml")
    vae, balancer = compose["services"]["vae"], compose["services"]["balancer"]
    assert vae["deploy"]["replicas"] == 3 and "server-template vae- 3 vae:8000" in fleet.compose_config()
    assert vae["build"]["context"] == "../.." and vae["build"]["args"]["VARIANT"] == "cpu"
    assert "/ready" in vae["healthcheck"]["test"] and vae["stop_signal"] == "SIGTERM"
    (config,) = balancer["volumes"]
    assert config["source"] == "./haproxy.cfg" and config["target"] == "/usr/local/etc/haproxy/haproxy.cfg"
    assert "ports" not in vae, "only the balancer is published"


def test_the_balancer_waits_for_an_upload_as_long_as_the_service_does():
    """HAProxy buffers the request, so its http-request timeout covers the upload: shorter than the service's
    VAE_UPLOAD_TIMEOUT_S, it would cut off (408) slow uploads the service accepts."""
    from service.settings import Settings

    timeouts = dict(line.split()[1:3] for line in fleet.DEFAULTS.splitlines() if line.strip().startswith("timeout"))
    seconds = {name: float(value.removesuffix("s")) for name, value in timeouts.items()}
    upload = Settings().http.upload_timeout_s
    assert seconds["http-request"] >= upload and seconds["client"] > upload
    assert seconds["http-keep-alive"] <= seconds["http-request"]
