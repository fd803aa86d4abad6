"""Do the servers compute the same function? Their answers to the prebuilt requests against the graphs run here.

Before a server is measured, its answers to the encode and decode requests (bench/peer_requests.py) are compared
with the model's graphs run in this process on the same input, with the service's session options
(bench/session_spec.py): the largest absolute difference goes into the figures, the service's as well as each
peer's, so a row of the report is a speed only when every server computes the same thing.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import numpy as np

from .loadgen import Request
from .peer_requests import HEADER_LENGTH, NPY, npy_array, oip_outputs
from .peer_runtime import open_session, png_to_array, read_manifest
from .session_spec import session_spec
from .workloads import digit_png


def expected_answers(folder: Path, z: np.ndarray) -> dict[str, np.ndarray]:
    """mu, logvar [1, D] of the digit PNG and the decoder's image [N, C, H, W] of `z`, computed here."""
    spec = session_spec(folder)
    x = png_to_array(digit_png(), read_manifest(folder)["image"])[None]  # [1, C, H, W]
    mu, logvar = open_session(folder, "encoder", spec).run(["mu", "logvar"], {"image": x})
    (image,) = open_session(folder, "decoder", spec).run(["image"], {"z": z})
    return {"mu": mu, "logvar": logvar, "image": image}


def read_answer(response: httpx.Response) -> dict[str, np.ndarray]:
    """The arrays in an answer: a .npy body is the decoder's `image`; JSON holds mu and logvar, or OIP outputs."""
    response.raise_for_status()
    if response.headers.get("content-type", "").startswith(NPY):
        return {"image": npy_array(response.content)}
    if HEADER_LENGTH in response.headers:  # case-insensitive
        return oip_outputs(response.content, response.headers[HEADER_LENGTH])
    body = json.loads(response.content)
    if "outputs" in body:
        return oip_outputs(response.content, None)
    return {name: np.asarray(body[name], dtype=np.float32) for name in ("mu", "logvar")}


def max_abs_diff(url: str, requests: list[Request], expected: dict[str, np.ndarray]) -> float:
    """The largest absolute difference between the server's answers to `requests` and the expected arrays."""
    gaps = []
    for request in requests:
        response = httpx.request(
            request.method, url + request.path, content=request.body, headers=request.headers, timeout=60
        )
        for name, array in read_answer(response).items():
            if array.shape != expected[name].shape:
                raise RuntimeError(
                    f"{url}{request.path}: {name} has shape {array.shape}, expected {expected[name].shape}"
                )
            gaps.append(float(np.abs(array - expected[name]).max()))
    return max(gaps)
