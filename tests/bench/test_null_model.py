"""bench/null_model.py: the service's own loader accepts the null model, and a real server answers on it."""

import io
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np

from bench.load import free_port, server
from bench.null_model import LATENT, NAME, SIZE, null_models_dir, write_null_model
from bench.workloads import digit_png
from service.metrics import Metrics
from service.settings import Settings
from vaeformat.manifest import load_manifest, verify_files

from ..registries import load_registry


def test_the_registry_serves_the_null_model_as_its_default(tmp_path):
    folder = write_null_model(tmp_path)
    manifest = load_manifest(folder)
    verify_files(folder, manifest)  # the recorded sha256s are the files'
    registry = load_registry(Settings(models_dir=tmp_path), ThreadPoolExecutor(1), Metrics())
    assert registry.refused == [] and sorted(registry.models) == [NAME] and registry.default == NAME
    assert (manifest.image.height, manifest.latent_dim, manifest.likelihood) == (SIZE, LATENT, "bernoulli")


def test_two_builds_write_identical_graphs(tmp_path):
    a, b = write_null_model(tmp_path / "a"), write_null_model(tmp_path / "b")
    for name in ("encoder.onnx", "decoder.onnx", "manifest.json"):
        assert (a / name).read_bytes() == (b / name).read_bytes()


def test_a_real_server_samples_and_encodes_with_it():
    with null_models_dir() as models_dir:
        port = free_port()
        argv = ["-m", "service", "--port", str(port), "--models-dir", str(models_dir), "--log-level", "warning"]
        with server(argv, port) as s:
            sample = httpx.get(f"{s.url}/sample", params={"n": 3, "format": "npy"}, timeout=10)
            encode = httpx.post(
                f"{s.url}/encode", content=digit_png(), headers={"Content-Type": "image/png"}, timeout=10
            )
            assert s.cpu_seconds() > 0 and s.rss_mib() > 0
    assert sample.status_code == 200, sample.text
    images = np.load(io.BytesIO(sample.content))
    assert images.shape == (3, 1, SIZE, SIZE) and 0 <= images.min() and images.max() <= 1
    assert encode.status_code == 200, encode.text
    body = encode.json()
    assert np.asarray(body["mu"]).shape == (1, LATENT) and np.asarray(body["logvar"]).shape == (1, LATENT)
