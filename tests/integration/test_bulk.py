"""Bulk work without loops, against a real server of the shipped models: the client cuts what is too large for one
request, and `vae-client` encodes a folder to an .npy, resuming after an interruption."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import httpx
import numpy as np
import pytest
from PIL import Image
from vae_client import Client

from .server import running_server
from .test_shipped_models import MANIFESTS, MODELS

pytestmark = pytest.mark.skipif(not MANIFESTS, reason=f"no model in {MODELS} yet: `make models` exports them")
KEY = "bulk-test-key"


@pytest.fixture(scope="module")
def url():
    with running_server(MODELS, env={"VAE_API_KEY": KEY}) as base:
        yield base


@pytest.fixture(scope="module")
def client(url):
    with Client(url, api_key=KEY, timeout=120) as client:
        yield client


@pytest.fixture(scope="module")
def folder(mnist, tmp_path_factory):
    """2,000 real digits as PNG files, named so that natural order is the digits' order."""
    images, _ = mnist
    root = tmp_path_factory.mktemp("digits")
    for i, image in enumerate(images[:2000]):
        Image.fromarray(image).save(root / f"digit-{i}.png")
    return root


def test_encode_of_1000_images_is_one_call_and_matches_small_requests(client, mnist):
    images, _ = mnist
    batch = images[::5][:1000]
    limits = client.limits().limits
    assert len(batch) > limits["max_images"]  # one request alone would be refused
    whole = client.encode(batch, model="mnist-vae")
    assert whole.mu.shape == (1000, 16) and whole.logvar.shape == (1000, 16)
    for start in (0, 500, 936):
        part = client.encode(batch[start : start + 64], model="mnist-vae")
        np.testing.assert_array_equal(part.mu, whole.mu[start : start + 64])


def test_decode_of_10000_latents_and_a_large_sample(client):
    z = np.random.default_rng(0).standard_normal((10_000, 16)).astype(np.float32)
    images = client.decode(z, model="mnist-vae")
    assert images.shape == (10_000, 1, 28, 28) and images.dtype == np.float32
    np.testing.assert_array_equal(images[9_990:], client.decode(z[9_990:], model="mnist-vae"))
    drawn = client.sample(600, seed=3, model="mnist-vae")
    assert drawn.images.shape == (600, 1, 28, 28) and drawn.seed == 3
    assert not np.array_equal(drawn.images[:256], drawn.images[256:512])  # each request its own seed


def test_score_of_many_images_keeps_their_order(client, mnist):
    images, _ = mnist
    scores = client.score(images[:150], samples=8, seed=1, model="mnist-vae")
    assert len(scores.scores) == 150
    # Requests of VAE_MAX_IMAGES (64) images, request i with seed + i: each part is what that request alone gives.
    first = client.score(images[:64], samples=8, seed=1, model="mnist-vae")
    second = client.score(images[64:128], samples=8, seed=2, model="mnist-vae")
    assert [s.nll for s in first.scores + second.scores] == [s.nll for s in scores.scores[:128]]


def _command(url, *args):
    env = {**os.environ, "VAE_API_KEY": KEY}
    return [sys.executable, "-m", "vae_client.cli", "--url", url, *args], env


def test_the_batch_command_encodes_a_folder_like_the_client_and_resumes(client, url, folder, tmp_path):
    files = sorted(folder.iterdir(), key=lambda p: int(p.stem.split("-")[1]))
    expected = client.encode(files, model="mnist-vae").mu
    out = tmp_path / "latents.npy"
    command, env = _command(url, "--model", "mnist-vae", "encode", str(folder), "-o", str(out))
    # Interrupted once its first part is written, then run again: it goes on from there.
    first = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    part = tmp_path / "latents.npy.parts" / "000000.npy"
    deadline = time.monotonic() + 120
    while not part.is_file() and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    first.kill()
    first.communicate()
    assert part.is_file() and not out.exists()
    again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert "resuming: 1 of 2 parts already done" in again.stderr
    np.testing.assert_array_equal(np.load(out), expected)
    listed = (tmp_path / "latents.files.txt").read_text().split()
    assert listed == [f.name for f in files] and not (tmp_path / "latents.npy.parts").exists()


def test_the_batch_command_decodes_and_scores(url, tmp_path, folder):
    latents = tmp_path / "z.npy"
    np.save(latents, np.zeros((3, 16), np.float32))
    command, env = _command(
        url, "--quiet", "--model", "mnist-vae", "decode", str(latents), "-o", str(tmp_path / "x.npy")
    )
    assert subprocess.run(command, env=env, timeout=120).returncode == 0
    assert np.load(tmp_path / "x.npy").shape == (3, 1, 28, 28)
    small = tmp_path / "few"
    small.mkdir()
    for f in sorted(folder.iterdir())[:5]:
        (small / f.name).write_bytes(f.read_bytes())
    command, env = _command(url, "--quiet", "score", str(small), "--samples", "4", "-o", str(tmp_path / "s.csv"))
    assert subprocess.run(command, env=env, timeout=120).returncode == 0
    rows = (tmp_path / "s.csv").read_text().splitlines()
    assert rows[0] == "file,nll,squared_error,percentile,anomalous" and len(rows) == 6


def test_the_batch_command_says_when_the_service_cannot_be_reached(tmp_path, folder):
    command, env = _command("http://127.0.0.1:9", "encode", str(folder), "-o", str(tmp_path / "z.npy"))
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and "cannot reach the service at http://127.0.0.1:9" in done.stderr


def test_the_models_document_says_the_samples_score_draws_when_a_call_gives_none(url, client, mnist):
    said = httpx.get(f"{url}/models", headers={"X-API-Key": KEY}, timeout=30).json()["defaults"]["samples"]
    assert client.limits().default_samples == said  # what the client plans its requests with
    assert client.score(mnist[0][:2], model="mnist-cvae").samples == said
