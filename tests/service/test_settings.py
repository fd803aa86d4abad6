"""settings.py: environment variables with the VAE_ prefix, read when Settings() is built, not at import."""

from pathlib import Path

import pytest
from pydantic import ValidationError

from service.settings import Settings


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
    monkeypatch.setattr("os.cpu_count", lambda: 16)
    assert Settings().session_threads() == 16 and not Settings().thread_spinning
    assert Settings(processes=4).session_threads() == 4
    assert Settings(processes=0).process_count() == 8 and Settings(processes=0).session_threads() == 2
    assert Settings(processes=32).session_threads() == 1  # never zero, which onnxruntime reads as "all cores"
    assert Settings(processes=4, threads=3).session_threads() == 3
