"""The base install resolves where Python runs: onnxruntime-gpu where it has wheels, onnxruntime elsewhere, never
both. uv resolves pyproject.toml for each target (pip's --platform would judge every marker by this machine), wheels
only, from the package index."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import cast

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
RUNTIMES = {"onnxruntime", "onnxruntime-gpu"}

# uv's target name, then the markers the target's Python would report, then the runtime it must get.
PLATFORMS = {
    "linux-x86_64": (
        "x86_64-manylinux_2_28",
        {"sys_platform": "linux", "platform_machine": "x86_64"},
        "onnxruntime-gpu",
    ),
    "linux-aarch64": (
        "aarch64-manylinux_2_28",
        {"sys_platform": "linux", "platform_machine": "aarch64"},
        "onnxruntime",
    ),
    "macos-arm64": ("aarch64-apple-darwin", {"sys_platform": "darwin", "platform_machine": "arm64"}, "onnxruntime"),
    "windows-x64": (
        "x86_64-pc-windows-msvc",
        {"sys_platform": "win32", "platform_machine": "AMD64"},
        "onnxruntime-gpu",
    ),
}


def base_dependencies() -> list[Requirement]:
    import tomllib

    with (ROOT / "pyproject.toml").open("rb") as f:
        return [Requirement(line) for line in tomllib.load(f)["project"]["dependencies"]]


def selected_runtimes(markers: dict[str, str]) -> set[str]:
    env = {**default_environment(), **markers}
    return {
        r.name
        for r in base_dependencies()
        if r.name in RUNTIMES and (r.marker is None or r.marker.evaluate(cast(dict[str, str], env)))
    }


@pytest.mark.parametrize("platform", PLATFORMS)
def test_the_markers_choose_exactly_one_runtime(platform):
    _, markers, runtime = PLATFORMS[platform]
    assert selected_runtimes(markers) == {runtime}


def _uv() -> str:
    found = shutil.which("uv") or str(Path(sys.executable).with_name("uv"))
    if not Path(found).exists():
        pytest.fail("uv is not installed: `make setup` installs it with the test extra")
    return found


@pytest.mark.parametrize("platform", PLATFORMS)
def test_the_base_install_resolves_to_wheels_with_its_runtime(platform, tmp_path):
    target, _, runtime = PLATFORMS[platform]
    command = [_uv(), "pip", "compile", str(ROOT / "pyproject.toml"), "--python-platform", target]
    command += ["--python-version", "3.11", "--only-binary", ":all:", "--no-header", "--quiet"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    if done.returncode != 0 and "Failed to fetch" in done.stderr and not os.environ.get("CI"):
        pytest.skip(f"the package index cannot be reached: {done.stderr.strip()[-300:]}")
    assert done.returncode == 0, done.stderr[-3000:]
    pinned = {m[1].lower() for m in re.finditer(r"^([A-Za-z0-9._-]+)==", done.stdout, re.M)}
    assert pinned & RUNTIMES == {runtime}, done.stdout
    assert {"fastapi", "uvicorn", "numpy", "pillow"} <= pinned
