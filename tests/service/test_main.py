"""__main__.py: command-line options override the VAE_* environment; bad settings exit with a message; the
settings reach uvicorn (and every server process) through service/http/server.py."""

import importlib.metadata
import os
import pickle
import socket
import subprocess
import sys

import pytest

from service.__main__ import main, parse_args
from service.http import seam, server
from service.http.seam import GuardedHttpProtocol
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
    supervised, single = [], []
    monkeypatch.setattr(server, "listening_socket", lambda settings: socket.socket())
    monkeypatch.setattr(server, "supervise", lambda settings, n, sock: supervised.append((settings, n)) or 0)
    monkeypatch.setattr(server, "run", lambda settings, sockets=None: single.append(settings) or 0)
    main(["--port", "8123", "--processes", "3"])
    main(["--port", "8124", "--processes", "1"])
    assert [(s.port, p) for s, p in supervised] == [(8123, 3)] and [s.port for s in single] == [8124]


def test_a_busy_port_is_one_line_and_exit_3_before_any_model_loads(tmp_path):
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        env = {**os.environ, "VAE_MODELS_DIR": str(tmp_path / "nowhere"), "VAE_PROCESSES": "1"}
        done = subprocess.run(
            [sys.executable, "-m", "service", "--port", str(port)], capture_output=True, text=True, timeout=60, env=env
        )
    assert done.returncode == 3
    assert done.stderr.strip() == (
        f"vae-serve: cannot listen on 127.0.0.1:{port}: the port is in use (another server?); choose another port "
        "with --port or VAE_PORT (make run PORT=8001)"
    )


def test_version_is_the_installed_distributions():
    done = subprocess.run([sys.executable, "-m", "service", "--version"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == f"vae-serve {importlib.metadata.version('vae-service')}"


def test_the_start_up_line_points_at_the_playground_and_the_docs():
    line = server.address_line(Settings(host="0.0.0.0", port=8001))
    assert "http://127.0.0.1:8001/playground" in line and "http://127.0.0.1:8001/docs" in line
    assert "http://[::1]:80/docs" in server.address_line(Settings(host="::1", port=80))


def test_the_uvicorn_config_carries_the_settings_to_every_server_process(zoo, monkeypatch):
    settings = pickle.loads(pickle.dumps(Settings(models_dir=zoo, port=8123, keep_alive_timeout_s=2)))  # as spawned
    configs = []

    def capture(self, sockets=None):
        configs.append(self.config)

    monkeypatch.setattr(seam.SignalledServer, "run", capture)
    assert server.run(settings) == 0
    (config,) = configs
    assert config.app.settings == settings and (config.port, config.timeout_keep_alive) == (8123, 2)
    assert issubclass(config.http, GuardedHttpProtocol) and config.http.limits == settings.http
    assert config.access_log and config.proxy_headers  # the info level logs each request, its client from proxies


def test_below_the_info_level_uvicorn_neither_logs_requests_nor_reads_proxy_headers(zoo, monkeypatch):
    configs = []
    monkeypatch.setattr(seam.SignalledServer, "run", lambda self, sockets=None: configs.append(self.config))
    assert server.run(Settings(models_dir=zoo, log_level="warning")) == 0
    (config,) = configs
    assert not config.access_log and not config.proxy_headers
