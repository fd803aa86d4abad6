"""A real `python -m service` process refuses to start, with a message, when it cannot serve as configured."""

from pathlib import Path

import pytest

from service.providers import probe

from ..service.tiny_models import build_zoo
from .server import run_to_exit, running_process, running_server

NO_GPU = not probe("auto").gpu


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
