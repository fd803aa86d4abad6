"""Every command of the README, as pasted, against a real server of the shipped models: each curl (it must succeed
and its file must be what it says) and the Python client example."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from .server import ROOT, running_server
from .test_shipped_models import MANIFESTS, MODELS

pytestmark = pytest.mark.skipif(not MANIFESTS, reason=f"no model in {MODELS} yet: `make models` exports them")

README = ROOT / "README.md"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)


def blocks(language: set[str]) -> list[str]:
    return [body for lang, body in FENCE.findall(README.read_text()) if lang in language]


def commands(program: str) -> list[str]:
    joined = [line for body in blocks({"sh", "bash"}) for line in body.replace("\\\n", " ").splitlines()]
    return [line.split("  #")[0].strip() for line in joined if line.startswith(f"{program} ")]


def curls() -> list[str]:
    return commands("curl")


@pytest.fixture(scope="module")
def url():
    with running_server(MODELS) as base:
        yield base


@pytest.fixture
def workdir(tmp_path):
    """A folder where the README's paths resolve (docs/ as in the repository) and its outputs land."""
    (tmp_path / "docs").symlink_to(ROOT / "docs")
    return tmp_path


def test_the_readme_has_commands_to_run():
    assert len(curls()) >= 6 and all("--fail" in c for c in curls())  # an error must not land in a file
    assert len(blocks({"python"})) == 1


@pytest.mark.parametrize("command", curls())
def test_each_curl_works_as_pasted(command, url, workdir):
    done = subprocess.run(
        ["bash", "-c", command.replace("localhost:8000", url.removeprefix("http://"))],
        cwd=workdir,
        capture_output=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    written = re.search(r"-o (\S+)", command)
    if written:
        assert (workdir / written[1]).read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    else:
        assert json.loads(done.stdout)


def test_the_batch_commands_run_as_pasted_one_after_another(url, workdir):
    env = {**os.environ, "VAE_URL": url, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    pasted = commands("vae-client")
    assert len(pasted) >= 4
    for command in pasted:
        done = subprocess.run(
            ["bash", "-c", command], cwd=workdir, capture_output=True, text=True, timeout=120, env=env
        )
        assert done.returncode == 0, f"{command}: {done.stderr[-2000:]}"
    assert np.load(workdir / "latents.npy").shape == (10, 16) and np.load(workdir / "images.npy").shape == (
        10,
        1,
        28,
        28,
    )
    assert np.load(workdir / "samples.npy").shape == (1000, 1, 28, 28)
    assert len((workdir / "scores.csv").read_text().splitlines()) == 11


def test_the_python_client_example_runs_as_pasted(url, workdir):
    (example,) = blocks({"python"})
    script = example.replace("http://localhost:8000", url)
    done = subprocess.run([sys.executable, "-c", script], cwd=workdir, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    steps = sorted(workdir.glob("step-*.png"))
    assert len(steps) == 8 and all(p.read_bytes().startswith(b"\x89PNG") for p in steps)


def test_the_client_example_comment_gives_the_real_shape(url):
    from vae_client import Client

    (example,) = blocks({"python"})
    stated = re.search(r"ends\.mu, ends\.logvar: \[(\d+), (\d+)\]", example)
    assert stated is not None
    with Client(url) as client:
        ends = client.encode([str(ROOT / "docs/latent/two.png"), str(ROOT / "docs/latent/seven.png")])
    assert ends.mu.shape == (int(stated[1]), int(stated[2]))


def test_the_readme_speaks_of_the_product_only():
    text = README.read_text()
    assert not re.search(r"\bissue \d+|\b[0-9a-f]{7,40}\b|build machine|H100", text), "history in the README"
    assert len(text.splitlines()) < 250
    assert Path(ROOT / "LICENSE").is_file()
