"""docker/compose.yaml: a GPU service with the health check and read-only models, and a CPU profile."""

from __future__ import annotations

import pytest

from .files import DOCKER, ROOT, final_stage, yaml_documents

(COMPOSE,) = yaml_documents(DOCKER / "compose.yaml")
SERVICES = COMPOSE["services"]


def test_the_default_service_reserves_an_nvidia_gpu():
    gpu = SERVICES["vae"]
    assert "profiles" not in gpu, "`docker compose up` starts the GPU service"
    devices = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert any(d["driver"] == "nvidia" and "gpu" in d["capabilities"] for d in devices)
    assert gpu["build"]["args"]["VARIANT"] == "gpu"
    assert gpu["environment"]["VAE_REQUIRE_GPU"] == "true"


def test_the_cpu_profile_builds_the_cpu_variant_without_a_gpu():
    cpu = SERVICES["vae-cpu"]
    assert cpu["profiles"] == ["cpu"]
    assert "deploy" not in cpu
    assert cpu["build"]["args"]["VARIANT"] == "cpu"
    assert cpu["environment"]["VAE_PROVIDERS"] == "cpu"


@pytest.mark.parametrize("name", ["vae", "vae-cpu"])
def test_each_service_probes_readiness_and_mounts_the_models_read_only(name):
    service = SERVICES[name]
    test = service["healthcheck"]["test"]
    assert test[0] == "CMD" and "/ready" in test
    # The script the health check runs is where the Dockerfile puts it.
    assert f"COPY docker/healthcheck.py {test[2]}" in [f"{k} {a}" for k, a in final_stage()]
    (models,) = [v for v in service["volumes"] if v["target"] == "/models"]
    assert models["read_only"] is True and models["type"] == "bind"
    assert (DOCKER / "../models").resolve() == ROOT / "models"
    assert service["ports"] == ["${VAE_PUBLISH:-8000}:8000"]
    assert service["stop_signal"] == "SIGTERM"


@pytest.mark.parametrize("name", ["vae", "vae-cpu"])
def test_paths_resolve_from_the_compose_file(name):
    service = SERVICES[name]
    context = (DOCKER / service["build"]["context"]).resolve()
    assert (context / service["build"]["dockerfile"]).is_file()
    assert (DOCKER / service["env_file"]).is_file()


def test_the_env_file_sets_only_known_settings():
    from service.settings import Settings

    names = [
        line.split("=", 1)[0]
        for line in (DOCKER / "vae.env").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    known = {f"VAE_{field.upper()}" for field in Settings.model_fields}
    assert names and set(names) <= known, set(names) - known


@pytest.mark.parametrize("name", ["vae", "vae-cpu"])
def test_the_api_key_comes_from_the_shell_and_is_off_by_default(name):
    assert SERVICES[name]["environment"]["VAE_API_KEY"] == "${VAE_API_KEY:-}"
    settings = [
        line.split("=", 1)[0].strip()
        for line in (DOCKER / "vae.env").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert "VAE_API_KEY" not in settings, "a key belongs in the shell or a secret, not in a committed file"
