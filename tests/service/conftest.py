"""Fixtures for service tests: tiny model folders, settings, and an httpx client on the ASGI app."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from service.settings import Settings

from .asgi import serve
from .tiny_models import build_zoo


@pytest.fixture(scope="session")
def zoo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A read-only folder with tiny-ae, tiny-vae and tiny-cvae (classes 'zero', 'one', 'two')."""
    return build_zoo(tmp_path_factory.mktemp("zoo"))


@pytest.fixture
def models_dir(zoo: Path, tmp_path: Path) -> Path:
    """A private copy of the zoo that a test may break."""
    return Path(shutil.copytree(zoo, tmp_path / "models"))


@pytest.fixture(scope="module")
def settings(zoo: Path) -> Settings:
    """Small limits, so that tests can reach them with small requests."""
    return Settings(models_dir=zoo, max_images=8, max_n=64, max_latents=64, max_pixels=10_000, max_body_bytes=200_000)


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
async def client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """One app per test module (building an app's routes is the slow part, not the tiny models)."""
    async with serve(settings) as c:
        yield c
