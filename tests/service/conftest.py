"""Fixtures for service tests: settings with small limits, and an httpx client on the ASGI app."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from service.settings import Settings

from .asgi import serve


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
