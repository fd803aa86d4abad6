"""__main__.py: command-line options override the VAE_* environment; bad settings exit with a message."""

import subprocess
import sys

import pytest

from service.__main__ import main, parse_args
from service.settings import Settings


def test_options_become_settings_overrides(monkeypatch):
    monkeypatch.setenv("VAE_PORT", "9000")
    monkeypatch.setenv("VAE_MODELS_DIR", "/from/env")
    args = parse_args(["--port", "8123", "--host", "0.0.0.0"])
    settings = Settings(**{k: v for k, v in vars(args).items() if v is not None})
    assert (settings.port, settings.host, str(settings.models_dir)) == (8123, "0.0.0.0", "/from/env")


def test_invalid_settings_exit_with_the_reason(monkeypatch):
    monkeypatch.setenv("VAE_MAX_N", "-4")
    with pytest.raises(SystemExit, match="max_n"):
        main(["--port", "8000"])


def test_help_names_the_options():
    result = subprocess.run([sys.executable, "-m", "service", "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "--models-dir" in result.stdout and "VAE_" in result.stdout
