"""Fixtures shared by every suite: folders of tiny model graphs (built with onnx, no torch)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from .tiny_models import build_zoo


@pytest.fixture(scope="session")
def zoo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A read-only folder with tiny-ae, tiny-vae and tiny-cvae (classes 'zero', 'one', 'two')."""
    return build_zoo(tmp_path_factory.mktemp("zoo"))


@pytest.fixture
def models_dir(zoo: Path, tmp_path: Path) -> Path:
    """A private copy of the zoo that a test may break."""
    return Path(shutil.copytree(zoo, tmp_path / "models"))
