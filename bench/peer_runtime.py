"""What both peers (mosec, Triton) run in their own venvs: the service's onnxruntime sessions, and PNG decoding.

The mosec and Triton peers run in venvs that cannot import `service` (no pydantic, no FastAPI), yet they must run
the graphs exactly as the service does. The bench side turns the service's own session and provider options into
a JSON "runtime spec"; this module, which imports only what a peer's venv has (onnxruntime, numpy, Pillow), turns
it back into sessions. PNGs become float32 [C, H, W] in [0, 1] as the service makes them (pixels / 255). The spec:

    {"session": {SessionOptions attribute: value, ...},    # graph_optimization_level as its integer value
     "config": {session config key: value, ...},           # add_session_config_entry
     "providers": {"encoder": [[name, {option: value}], ...], "decoder": [...]},
     "onnxruntime": the service's onnxruntime version, which the peer's must equal}
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from PIL import Image

ROLES = ("encoder", "decoder")


def session_options(spec: dict[str, Any]) -> ort.SessionOptions:
    """SessionOptions with every attribute and config entry the spec names."""
    if spec["onnxruntime"] != ort.__version__:  # bench/venvs.py pins the service's version; a stale venv differs
        raise RuntimeError(f"this venv has onnxruntime {ort.__version__}, the service {spec['onnxruntime']}")
    options = ort.SessionOptions()
    for name, value in spec["session"].items():
        if name == "graph_optimization_level":  # JSON carries the enum's integer value
            value = ort.GraphOptimizationLevel(value)
        setattr(options, name, value)
    for key, value in spec["config"].items():
        options.add_session_config_entry(key, value)
    return options


def read_manifest(folder: Path) -> dict[str, Any]:
    """The model folder's manifest.json, as plain JSON (the service's pydantic model is not available here)."""
    return json.loads((folder / "manifest.json").read_text())


def open_session(folder: Path, role: str, spec: dict[str, Any]) -> ort.InferenceSession:
    """A session on `folder`'s encoder or decoder graph with the spec's options and providers for that role."""
    path = folder / read_manifest(folder)["files"][role]["path"]
    providers = [(name, options) for name, options in spec["providers"][role]]  # JSON pairs -> InferenceSession's
    return ort.InferenceSession(str(path), sess_options=session_options(spec), providers=providers)


def png_to_array(data: bytes, image: dict[str, int]) -> np.ndarray:
    """PNG bytes -> float32 [C, H, W] in [0, 1] for a model whose manifest `image` is {channels, height, width}."""
    picture = Image.open(io.BytesIO(data)).convert("L" if image["channels"] == 1 else "RGB")
    if picture.size != (image["width"], image["height"]):
        raise ValueError(
            f"the image is {picture.size[0]}x{picture.size[1]}; the model takes {image['width']}x{image['height']}"
        )
    pixels = np.asarray(picture, dtype=np.float32) / np.float32(255.0)
    return pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)
