"""__main__.py: command-line options override the VAE_* environment; bad settings exit with a message; the
settings reach uvicorn (and its worker processes) through service/server.py."""

import pickle
import subprocess
import sys

import pytest

from service.__main__ import main, parse_args
from service.connection import GuardedHttpProtocol
from service.server import BackgroundLifespan, ServiceConfig
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


def test_main_serves_the_settings_with_the_process_count(monkeypatch):
    served = []
    monkeypatch.setattr("service.__main__.serve", lambda settings, processes: served.append((settings, processes)))
    main(["--port", "8123", "--processes", "3"])
    assert [(s.port, p) for s, p in served] == [(8123, 3)]


def test_the_uvicorn_config_carries_the_settings_to_worker_processes(zoo):
    settings = Settings(models_dir=zoo, port=8123, keep_alive_timeout_s=2, graceful_shutdown_timeout_s=4)
    config = pickle.loads(pickle.dumps(ServiceConfig(settings, processes=2)))  # what a spawned worker gets
    config.load()
    assert config.settings == settings and config.app_instance.state.settings == settings
    assert (config.port, config.workers, config.timeout_keep_alive, config.timeout_graceful_shutdown) == (8123, 2, 2, 4)
    assert config.http_protocol_class is GuardedHttpProtocol and config.lifespan_class is BackgroundLifespan
