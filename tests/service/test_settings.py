"""settings.py: environment variables with the VAE_ prefix, read when Settings() is built, not at import."""

import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from service.settings import GIB, Settings, available_memory, cpu_cores


def test_defaults_serve_models_from_the_working_directory():
    settings = Settings()
    assert settings.models_dir == Path("models") and settings.providers == "auto" and not settings.require_gpu


def test_environment_is_read_with_the_vae_prefix(monkeypatch):
    monkeypatch.setenv("VAE_MODELS_DIR", "/srv/models")
    monkeypatch.setenv("VAE_MAX_N", "12")
    monkeypatch.setenv("VAE_PROVIDERS", "cpu")
    settings = Settings()
    assert settings.models_dir == Path("/srv/models") and settings.max_n == 12 and settings.providers == "cpu"


def test_explicit_values_win_over_the_environment(monkeypatch):
    monkeypatch.setenv("VAE_PORT", "9000")
    assert Settings(port=8123).port == 8123


@pytest.mark.parametrize(("key", "value"), [("VAE_PROVIDERS", "gpu"), ("VAE_MAX_N", "0"), ("VAE_PORT", "http")])
def test_bad_values_name_the_setting(monkeypatch, key, value):
    monkeypatch.setenv(key, value)
    with pytest.raises(ValidationError, match=key.removeprefix("VAE_").lower()):
        Settings()


def test_onnxruntime_threads_share_the_cores_between_processes(monkeypatch):
    monkeypatch.setattr("service.settings.cpu_cores", lambda: 16)
    monkeypatch.setattr("service.settings.available_memory", lambda: 64 * GIB)
    assert Settings().session_threads() == 1 and not Settings().thread_spinning  # large batches split instead
    assert Settings(threads=0, processes=4).session_threads() == 4
    assert Settings(threads=0, processes=32).session_threads() == 1  # never zero: onnxruntime's "all cores"
    assert Settings(processes=4, threads=3).session_threads() == 3


def test_auto_processes_are_one_per_core_within_the_memory(monkeypatch):
    monkeypatch.setattr("service.settings.cpu_cores", lambda: 16)
    monkeypatch.setattr("service.settings.available_memory", lambda: 64 * GIB)
    assert Settings().process_count() == 16 and Settings(processes=0).process_count() == 16
    monkeypatch.setattr("service.settings.available_memory", lambda: 3 * GIB + 5)
    assert Settings(processes="auto").process_count() == 3
    monkeypatch.setattr("service.settings.available_memory", lambda: 100)
    assert Settings().process_count() == 1 and Settings(processes=2).process_count() == 2


def test_the_cores_and_memory_read_from_this_machine_are_plausible():
    assert 1 <= cpu_cores() <= (os.cpu_count() or 1)
    memory = available_memory()
    assert memory is None or memory > 0
