"""The Makefile as a newcomer meets it: where `make run` listens, the Python it needs, a venv an older Python made."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def make(*args: str, env: dict[str, str] | None = None, timeout: int = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["make", "--no-print-directory", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def fake_python(path: Path, version: str) -> Path:
    """An interpreter that says it is `version` and fails every check, as an old Python fails the version check."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f'#!/bin/sh\n[ "$1" = --version ] && echo "Python {version}" && exit 0\nexit 1\n')
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return path


def test_make_run_listens_where_the_variables_say():
    assert "--port 8001 " in make("-n", "run", "PORT=8001").stdout
    planned = make("-n", "run", env={"VAE_PORT": "8002", "VAE_HOST": "0.0.0.0", "VAE_MODELS_DIR": "/srv/models"})
    assert "--host 0.0.0.0 --port 8002 --models-dir /srv/models" in planned.stdout


def test_an_old_python_gets_a_message_naming_the_version_needed(tmp_path):
    old = fake_python(tmp_path / "bin" / "python3.10", "3.10.12")
    done = make("setup-serve", f"VENV={tmp_path / 'venv'}", f"PYTHON={old}")
    assert done.returncode != 0
    assert f"make: Python 3.11 or newer is needed, and {old} is Python 3.10.12" in done.stderr
    assert not (tmp_path / "venv").exists()


def test_a_venv_an_old_python_made_is_made_again(tmp_path):
    venv = tmp_path / "venv"
    fake_python(venv / "bin" / "python", "3.10.12")
    (venv / "pyvenv.cfg").write_text("version = 3.10.12\n")
    done = make("-n", "setup-serve", f"VENV={venv}", f"PYTHON={sys.executable}")
    assert "was made by a Python older than 3.11 (or one no longer there); making it again" in done.stdout
    assert not venv.exists() and f"-m venv {venv}" in done.stdout


def test_make_run_on_a_busy_port_says_so_in_one_line_and_fails():
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        venv = Path(sys.executable).parents[1]  # the suite's own, installed: -o keeps make from installing again
        done = make("-o", f"{venv}/.installed-serve", "run", f"PORT={port}", f"VENV={venv}", timeout=120)
    assert done.returncode != 0
    assert f"vae-serve: cannot listen on 127.0.0.1:{port}: the port is in use" in done.stderr
    assert "loading" not in done.stderr  # refused before any model was looked at
