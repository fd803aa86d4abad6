"""Read a client's .npy body as latent vectors: the header is checked before a byte of the array is allocated.

`numpy.load` allocates the array its header declares before it reads the data (a 100-byte body declaring
shape (10**12, 32) asks for 128 TB), and raises several exception types on malformed headers; here the header is
parsed alone, checked against the model and the limits, and the data is then viewed, not read.
"""

from __future__ import annotations

import io

import numpy as np

from ..errors import InvalidInput, PayloadTooLarge

HOW = "write it with numpy.save"


def read_npy_latents(data: bytes, latent_dim: int, max_rows: int) -> np.ndarray:
    """A .npy body holding a numeric array [N, latent_dim] (or one vector [latent_dim]) -> float32 [N, latent_dim]."""
    stream = io.BytesIO(data)
    try:
        version = np.lib.format.read_magic(stream)
        read_header = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
        if version not in read_header:
            raise ValueError(f".npy format version {version[0]}.{version[1]} is not read here")
        shape, fortran_order, dtype = read_header[version](stream)
    except Exception as e:  # numpy's header parser raises ValueError, TypeError, SyntaxError... on bad headers
        reason = str(e) if len(str(e)) <= 200 else str(e)[:200] + "..."
        raise InvalidInput(f"the body is not a readable .npy array ({reason}); {HOW}") from None
    if dtype.kind not in "fiu" or dtype.hasobject or dtype.names is not None or dtype.subdtype is not None:
        raise InvalidInput(f"the .npy body holds dtype {str(dtype)[:60]!r}; send a float or integer array, {HOW}")
    if len(shape) not in (1, 2) or shape[-1] != latent_dim:
        raise InvalidInput(f"the .npy array has shape {_shown(shape)}; this model needs [N, {latent_dim}]")
    rows = 1 if len(shape) == 1 else shape[0]
    if rows < 1:
        raise InvalidInput(f"the .npy array has shape {_shown(shape)}: no vector; send at least one")
    if rows > max_rows:
        raise PayloadTooLarge(f"the .npy array holds {rows} latent vectors; the limit is {max_rows} (VAE_MAX_LATENTS)")
    expected = rows * latent_dim * dtype.itemsize
    offset = stream.tell()
    if len(data) - offset != expected:
        raise InvalidInput(
            f"the .npy header declares shape {_shown(shape)} of {dtype} ({expected} bytes of data), but "
            f"{len(data) - offset} bytes follow it; {HOW}"
        )
    array = np.frombuffer(data, dtype=dtype, count=rows * latent_dim, offset=offset)
    return array.reshape((rows, latent_dim), order="F" if fortran_order else "C").astype(np.float32)


def _shown(shape: tuple[int, ...]) -> str:
    text = str(list(shape))
    return text if len(text) <= 80 else text[:80] + "...]"
