"""The prebuilt requests the service and the mosec and Triton peers are measured with, and readers of their answers.

The same content everywhere: one 28x28 grey PNG (`workloads.digit_png`) to encode, and 256 latent rows of seeded
standard normal float32 to decode, as a .npy body (the service, mosec) or as an Open Inference Protocol request
with binary tensors (Triton: a JSON header, then the tensors' bytes; the header's length in
`Inference-Header-Content-Length`). Triton's decoder answer is asked for as a binary tensor too, so no server
spends time writing 200k floats as JSON text.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np

from .loadgen import Request
from .workloads import digit_png

DECODE_ROWS = 256
LATENT_SEED = 0
NPY = "application/x-npy"
HEADER_LENGTH = "Inference-Header-Content-Length"  # OIP's binary tensor extension


def latent_dim(folder: Path) -> int:
    """The model's latent size, from its manifest.json."""
    return int(json.loads((folder / "manifest.json").read_text())["latent_dim"])


def latents(dim: int, rows: int = DECODE_ROWS, seed: int = LATENT_SEED) -> np.ndarray:
    """[rows, dim] float32 draws from N(0, I), the same for every server."""
    return np.random.default_rng(seed).standard_normal((rows, dim), dtype=np.float32)


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def npy_array(body: bytes) -> np.ndarray:
    return np.load(io.BytesIO(body), allow_pickle=False)


def service_encode(model: str) -> Request:
    """The service's /encode of one raw PNG, on `model`."""
    return Request("POST", f"/encode?model={model}", digit_png(), {"Content-Type": "image/png"})


def npy_decode(z: np.ndarray, path: str = "/decode") -> Request:
    """/decode of `z` as a .npy body, answered as .npy (the service reads Accept; mosec answers .npy anyway)."""
    return Request("POST", path, npy_bytes(z), {"Content-Type": NPY, "Accept": NPY})


def service_decode(z: np.ndarray, model: str) -> Request:
    return npy_decode(z, f"/decode?model={model}")


def oip_request(model: str, inputs: list[tuple[dict[str, Any], bytes]], outputs: list[dict[str, Any]]) -> Request:
    """`POST /v2/models/{model}/infer` with each input's bytes after the JSON header (binary tensor extension)."""
    header = {
        "inputs": [{**spec, "parameters": {"binary_data_size": len(data)}} for spec, data in inputs],
        "outputs": outputs,
    }
    head = json.dumps(header, separators=(",", ":")).encode()
    body = head + b"".join(data for _, data in inputs)
    return Request(
        "POST",
        f"/v2/models/{model}/infer",
        body,
        {"Content-Type": "application/octet-stream", HEADER_LENGTH: str(len(head))},
    )


def bytes_element(data: bytes) -> bytes:
    """One element of a BYTES tensor in binary form: its length (4 bytes, little-endian), then the bytes."""
    return len(data).to_bytes(4, "little") + data


def oip_encode() -> Request:
    """Triton's `encoder`: one PNG as a BYTES tensor [1, 1] (a batch of one row of one PNG); mu, logvar as JSON."""
    image = {"name": "image", "shape": [1, 1], "datatype": "BYTES"}
    return oip_request("encoder", [(image, bytes_element(digit_png()))], [{"name": "mu"}, {"name": "logvar"}])


def oip_decode(z: np.ndarray) -> Request:
    """Triton's `decoder`: `z` as a binary FP32 tensor; `image` asked for as a binary tensor too."""
    spec = {"name": "z", "shape": list(z.shape), "datatype": "FP32"}
    as_binary = [{"name": "image", "parameters": {"binary_data": True}}]
    return oip_request("decoder", [(spec, np.ascontiguousarray(z, "<f4").tobytes())], as_binary)


def oip_outputs(body: bytes, header_length: str | None) -> dict[str, np.ndarray]:
    """An OIP response's FP32 outputs, from JSON `data` or from the binary part (in the order of the outputs)."""
    size = int(header_length) if header_length is not None else len(body)
    header, binary = json.loads(body[:size]), memoryview(body)[size:]
    arrays, offset = {}, 0
    for output in header["outputs"]:
        if output["datatype"] != "FP32":
            raise ValueError(f"output {output['name']!r} is {output['datatype']}; only FP32 is read here")
        nbytes = (output.get("parameters") or {}).get("binary_data_size")
        if nbytes is None:
            flat = np.asarray(output["data"], dtype=np.float32)
        else:
            flat = np.frombuffer(binary[offset : offset + nbytes], dtype="<f4")
            offset += nbytes
        arrays[output["name"]] = flat.reshape(output["shape"])
    return arrays
