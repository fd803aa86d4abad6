"""One float tolerance for comparing float32 results that took different paths (batch sizes, providers).

The same graph on the same row gives bit-identical results on the CPU; on a GPU, cuDNN and cuBLAS may pick other
kernels for another batch size, which sum in another order (measured: at most 2.4e-7 apart with TF32 off).
1e-5 is a few float32 spacings at the values the models produce, and far below any real defect.
"""

from __future__ import annotations

import numpy as np

FLOAT32_ATOL = 1e-5


def assert_close(actual, expected) -> None:
    """`actual` equals `expected` within float32 tolerance, on any execution provider."""
    np.testing.assert_allclose(np.asarray(actual), np.asarray(expected), atol=FLOAT32_ATOL, rtol=FLOAT32_ATOL)
