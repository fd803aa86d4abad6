"""One request builder per route, shared by Client and AsyncClient: what to send, and how to read the answer.

A builder returns a `Call`: the request's parts and the function that turns a successful response into the
method's result. The clients only send it. Options left None are not sent: the service's defaults apply.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeAlias, TypeVar
from urllib.parse import quote

import httpx
import numpy as np
from numpy.typing import ArrayLike

from .errors import error_from
from .results import Classified, Encoding, Generated, Reconstruction, Score, Scores
from .wire import NPY, Files, Images, each_image, file_bytes, image_files, npy_bytes, read_json, read_npy

T = TypeVar("T")
Label: TypeAlias = int | str
Labels: TypeAlias = Label | Sequence[Label] | np.ndarray | None  # one label for all rows, or one per row
API_KEY_HEADER = "X-API-Key"  # service/security.py reads it (or Authorization: Bearer)


@dataclass(frozen=True)
class Call(Generic[T]):
    """One request to the service, and how to read its answer."""

    method: str
    path: str
    read: Callable[[httpx.Response], T]
    params: list[tuple[str, str]] = field(default_factory=list)
    content: bytes | None = None
    files: Files | None = None
    json: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    ok: frozenset[int] = frozenset({200})  # statuses that are an answer, not an error

    def request(self, http: httpx.Client | httpx.AsyncClient) -> httpx.Request:
        return http.build_request(
            self.method,
            self.path,
            params=tuple(self.params),
            content=self.content,
            files=self.files,
            json=self.json,
            headers=self.headers,
        )

    def result(self, response: httpx.Response) -> T:
        """The method's result; ServiceError (the problem detail) for an error status."""
        if response.status_code not in self.ok:
            raise error_from(response)
        return self.read(response)


def query(**values: Any) -> list[tuple[str, str]]:
    """Query pairs: None is left out, a list repeats its name (label=1&label=7)."""
    pairs = []
    for name, value in values.items():
        if value is None:
            continue
        items = [value] if isinstance(value, str | int | float) else np.asarray(value).ravel().tolist()
        pairs += [(name, str(item)) for item in items]
    return pairs


def _npy_body(z: ArrayLike) -> dict[str, Any]:
    return {"content": npy_bytes(z), "headers": {"Content-Type": NPY}}


def _generated(response: httpx.Response) -> Generated:
    headers = response.headers
    return Generated(headers["x-model"], read_npy(response), int(headers["x-seed"]), headers["x-prior"])


def _encoding(response: httpx.Response) -> Encoding:
    body = read_json(response)
    z = None if body["z"] is None else np.asarray(body["z"], dtype=np.float32)
    mu, logvar = (np.asarray(body[k], dtype=np.float32) for k in ("mu", "logvar"))
    return Encoding(body["model"], mu, logvar, z, body["seed"])


def _reconstruction(response: httpx.Response) -> Reconstruction:
    errors = np.array([float(e) for e in response.headers["x-reconstruction-error"].split(",")], dtype=np.float32)
    return Reconstruction(response.headers["x-model"], read_npy(response), errors)


def _scores(response: httpx.Response) -> Scores:
    body = read_json(response)
    return Scores(body["model"], body["samples"], body["seed"], [Score.from_json(row) for row in body["scores"]])


def encode(images: Images, samples: int | None, seed: int | None, label: Labels, model: str | None) -> Call[Encoding]:
    # JSON, not npy: the .npy answer holds mu (or z) alone, JSON holds mu, logvar and z. Floats survive the trip:
    # the service writes each float32 in its shortest form, which reads back to the same float32.
    params = query(model=model, samples=samples, seed=seed, label=label, format="json")
    return Call("POST", "/encode", _encoding, params, files=image_files(images))


def decode(z: ArrayLike, label: Labels, model: str | None) -> Call[np.ndarray]:
    return Call("POST", "/decode", read_npy, query(model=model, label=label, format="npy"), **_npy_body(z))


def sample(
    n: int | None,
    seed: int | None,
    temperature: float | None,
    label: Labels,
    prior: str | None,
    model: str | None,
) -> Call[Generated]:
    params = query(model=model, n=n, seed=seed, temperature=temperature, label=label, prior=prior, format="npy")
    return Call("GET", "/sample", _generated, params)


def generate(
    labels: Labels, n: int | None, seed: int | None, temperature: float | None, prior: str | None, model: str | None
) -> Call[Generated]:
    params = query(model=model, label=labels, n=n, seed=seed, temperature=temperature, prior=prior, format="npy")
    return Call("GET", "/generate", _generated, params)


def reconstruct(images: Images, label: Labels, model: str | None) -> Call[Reconstruction]:
    params = query(model=model, label=label, format="npy")
    return Call("POST", "/reconstruct", _reconstruction, params, files=image_files(images))


def score(images: Images, samples: int | None, seed: int | None, label: Labels, model: str | None) -> Call[Scores]:
    params = query(model=model, samples=samples, seed=seed, label=label)
    return Call("POST", "/score", _scores, params, files=image_files(images))


def classify(
    images: Images, samples: int | None, seed: int | None, top: int | None, model: str | None
) -> Call[Classified]:
    params = query(model=model, samples=samples, seed=seed, top=top)
    return Call("POST", "/classify", lambda r: Classified.from_json(read_json(r)), params, files=image_files(images))


def interpolate(
    images: Images | None,
    z: ArrayLike | None,
    steps: int | None,
    path: str | None,
    label: Labels,
    model: str | None,
) -> Call[np.ndarray]:
    params = query(model=model, steps=steps, path=path, label=label, format="npy")
    if images is not None and z is None:
        return Call("POST", "/interpolate", read_npy, params, files=image_files(images))
    if z is not None and images is None:
        return Call("POST", "/interpolate", read_npy, params, **_npy_body(z))
    raise ValueError("interpolate between two images (images=) or two latent vectors (z=): give one of them")


def attribute(with_images: Images, without_images: Images, label: Labels, model: str | None) -> Call[np.ndarray]:
    files = image_files(with_images, "with") + image_files(without_images, "without")
    return Call("POST", "/attribute", read_npy, query(model=model, label=label, format="npy"), files=files)


def edit(
    images: Images,
    vector: ArrayLike | None,
    with_images: Images | None,
    without_images: Images | None,
    strengths: Sequence[float] | None,
    label: Labels,
    model: str | None,
) -> Call[np.ndarray]:
    params = query(model=model, strengths=strengths, label=label, format="npy")
    if vector is not None:  # a form holds files and labels only: a vector travels in JSON, the images in base64
        if with_images is not None or without_images is not None:
            raise ValueError("edit along a vector or along the sets with_images and without_images, not both")
        encoded = [base64.b64encode(file_bytes(i)[0]).decode("ascii") for i in each_image(images)]
        body = {"images": encoded, "vector": np.asarray(vector, dtype=np.float32).tolist()}
        return Call("POST", "/edit", read_npy, params, json=body)
    if with_images is None or without_images is None:
        raise ValueError("edit needs a vector, or both with_images and without_images to compute it from")
    files = image_files(images) + image_files(with_images, "with") + image_files(without_images, "without")
    return Call("POST", "/edit", read_npy, params, files=files)


def traverse(
    image: Images | None,
    dims: Sequence[int] | None,
    steps: int | None,
    extent: float | None,
    label: Labels,
    model: str | None,
) -> Call[np.ndarray]:
    params = query(model=model, dims=dims, steps=steps, range=extent, label=label, format="npy")
    if image is None:
        return Call("GET", "/traverse", read_npy, params)
    return Call("POST", "/traverse", read_npy, params, files=image_files(image))


def models(name: str | None) -> Call[dict[str, Any]]:
    return Call("GET", "/models" if name is None else f"/models/{quote(name, safe='')}", read_json)


def health() -> Call[dict[str, Any]]:
    return Call("GET", "/health", read_json)


def ready() -> Call[bool]:
    return Call("GET", "/ready", lambda response: response.status_code == 200, ok=frozenset({200, 503}))
