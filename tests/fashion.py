"""Debian's Fashion-MNIST for the tests that need it: skipped where the package is absent, failed where CI is set
(`.ci/fashion.sh` installs it there; a CI run that skipped them would prove nothing)."""

from __future__ import annotations

import os

import pytest


def require_fashion() -> None:
    from training.data import FASHION_DIR, FASHION_PACKAGE

    if (FASHION_DIR / "t10k-images-idx3-ubyte.gz").is_file():
        return
    reason = f"Debian's {FASHION_PACKAGE} is not installed ({FASHION_DIR})"
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; .ci/fashion.sh installs it (CI runs it)")
    pytest.skip(f"{reason}: apt-get install {FASHION_PACKAGE}")
