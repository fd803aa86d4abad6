"""Reading the plain-array .npz files of a model folder (the fitted prior, the pixel model) safely."""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import BinaryIO

import numpy as np


def read_arrays(
    f: BinaryIO, names: Sequence[str], max_bytes: int, what: str, error: type[ValueError]
) -> dict[str, np.ndarray]:
    """The named arrays of an open .npz file, read without pickle and at most `max_bytes` of it; `error` (naming
    `what` the file is) for a file over the limit, one that lacks an array, or anything that is not plain arrays."""
    data = f.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise error(f"over the limit of {max_bytes} bytes for a {what}")
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            missing = [name for name in names if name not in npz.files]
            if missing:
                raise error(f"lacks the array(s) {missing}; it needs {list(names)}")
            return {name: np.asarray(npz[name]) for name in names}
    except error:
        raise
    except Exception as e:  # not a zip, a pickled object array, a truncated member ...
        raise error(f"not a readable .npz of plain arrays ({type(e).__name__}: {e})") from None
