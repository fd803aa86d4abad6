"""OpenAPI documentation for the routes: request bodies (several media types per route), examples, errors.

The routes read their bodies by media type themselves (multipart, JSON, raw image, .npy), so FastAPI cannot
infer the request schemas; they are written here once and attached with `openapi_extra` and `responses`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .examples import EXAMPLE_MODEL
from .latent_bodies import AttributeJSON, EditJSON, InterpolateJSON
from .problems import PROBLEM_MEDIA_TYPE
from .query import LIMIT
from .render import b64_png
from .uploads import ImagesJSON, LabelsJSON, LatentsJSON


def _example_digit() -> np.ndarray:
    # A 28x28 "1": a bright vertical stroke on black, the MNIST convention.
    image = np.zeros((1, 28, 28), np.float32)
    image[0, 5:23, 13:16] = 1.0
    return image


EXAMPLE_PNG_B64 = b64_png(_example_digit())
_BINARY = {"type": "string", "format": "binary"}
# One latent vector of EXAMPLE_MODEL's latent_dim (16), and one of EXAMPLE_CONDITIONAL_MODEL's (32): examples that
# /decode accepts as they stand (a test checks them against models/).
_LATENT = [0.12, -1.3, 0.4, 0.9, -0.2, 0.05, 1.1, -0.7, 0.3, -0.9, 0.0, 0.6, -0.4, 0.2, 1.4, -1.0]
_CONDITIONAL_LATENT = _LATENT * 2


def _problem(status: int, slug: str, title: str, detail: str) -> dict[str, Any]:
    return {
        "description": title,
        "content": {
            PROBLEM_MEDIA_TYPE: {
                "example": {
                    "type": f"urn:vae-service:problem:{slug}" if slug else "about:blank",
                    "title": title,
                    "status": status,
                    "detail": detail,
                    "instance": "/sample",
                }
            }
        },
    }


ERRORS: dict[int, dict[str, Any]] = {
    401: _problem(
        401,
        "unauthorized",
        "Unauthorized",
        "this service needs an API key: send it as 'X-API-Key: KEY' or 'Authorization: Bearer KEY'",
    ),
    404: _problem(
        404,
        "unknown-model",
        "Unknown model",
        "no model named 'mnist-gan' is loaded; loaded models: ['mnist-ae', 'mnist-vae']",
    ),
    409: _problem(
        409,
        "not-generative",
        "Model has no prior",
        "model 'mnist-ae' is a deterministic autoencoder (kind 'ae'): it was not trained against a prior, "
        "so it has no distribution to sample from; ...",
    ),
    413: {
        **_problem(
            413,
            "payload-too-large",
            "Payload too large",
            "image is 20000x20000 = 400000000 pixels; the limit is 4000000 (VAE_MAX_PIXELS); resize it before sending",
        ),
        "description": "Payload too large: the body, a count in it, or the answer it asks for (reckoned before the "
        "model runs) is over a limit; x-max-body-bytes and x-max-response-bytes give the byte limits",
        LIMIT: {"x-max-body-bytes": "max_body_bytes", "x-max-response-bytes": "max_response_bytes"},
    },
    415: _problem(
        415, "unsupported-media-type", "Unsupported media type", "image is a GIF file; send a PNG or JPEG image"
    ),
    422: _problem(422, "invalid-input", "Invalid input", "parameter 'n': Input should be greater than or equal to 1"),
    503: {
        **_problem(
            503,
            "not-ready",
            "Not ready",
            "the service is starting or stopping; models are not loaded yet, retry shortly",
        ),
        # The same status when the inference queue is full (overloaded) or a request's deadline passed in it.
        "description": "Not ready, or overloaded (queue full or deadline passed): retry after Retry-After",
    },
}


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {s: ERRORS[s] for s in statuses}


def _limited(schema: dict[str, Any], **limits: dict[str, str]) -> dict[str, Any]:
    """Mark body fields whose bounds are settings: `z={"maxItems": "max_latents"}`."""
    for field, limit in limits.items():
        schema["properties"][field][LIMIT] = limit
    return schema


def image_body() -> dict[str, Any]:
    """openapi_extra for routes that take images: multipart files, JSON base64, or a raw PNG/JPEG body."""
    return {
        "requestBody": {
            "required": True,
            "description": "one or more PNG/JPEG images; converted to the model's channels and size",
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "properties": {
                            "file": {
                                "type": "array",
                                "items": _BINARY,
                                "description": "any field name; repeat for many",
                                LIMIT: {"maxItems": "max_images"},
                            },
                            "label": {
                                "type": "string",
                                "description": "labels for a conditioned model, e.g. 7 or 7,3; leave empty otherwise",
                                # Without an example Swagger's "Try it out" fills in "string", which no model
                                # knows as a label; an empty field is left out of the request.
                                "example": "",
                            },
                        },
                    }
                },
                "application/json": {
                    "schema": _limited(
                        ImagesJSON.model_json_schema(),
                        images={"maxItems": "max_images"},
                        labels={"maxItems": "max_images"},
                    ),
                    "example": {"images": [EXAMPLE_PNG_B64]},
                },
                "image/png": {"schema": _BINARY},
                "image/jpeg": {"schema": _BINARY},
            },
        }
    }


def latents_body() -> dict[str, Any]:
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": _limited(
                        LatentsJSON.model_json_schema(),
                        z={"maxItems": "max_latents"},
                        labels={"maxItems": "max_latents"},
                    ),
                    "examples": {
                        "unconditional": {"summary": "one latent vector", "value": {"z": [_LATENT]}},
                        "conditional": {
                            "summary": "a cvae: z and a label",
                            "value": {"z": [_CONDITIONAL_LATENT], "labels": [7]},
                        },
                    },
                },
                "application/x-npy": {"schema": {**_BINARY, "description": "float array [N, latent_dim] (numpy.save)"}},
            },
        }
    }


def labels_body() -> dict[str, Any]:
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": _limited(
                        LabelsJSON.model_json_schema(),
                        labels={"maxItems": "max_n"},
                        n={"maximum": "max_n"},
                        temperature={"maximum": "max_temperature"},
                    ),
                    "example": {"labels": [0, 1, 2, "3", "7"], "seed": 42, "temperature": 0.8},
                }
            },
        }
    }


def _images_json(model: str, **extra: Any) -> dict[str, Any]:
    return {"model": model, **extra, "shape": [1, 1, 28, 28], "scale": 1, "images": [EXAMPLE_PNG_B64]}


def images_ok(description: str, model: str = EXAMPLE_MODEL, **extra: Any) -> dict[int | str, dict[str, Any]]:
    """A 200 that can be a PNG, JSON with base64 PNGs, or a .npy array; the JSON example names `model`."""
    return {
        200: {
            "description": description,
            "content": {
                "image/png": {"schema": _BINARY},
                "application/json": {"example": _images_json(model, **extra)},
                "application/x-npy": {"schema": _BINARY},
            },
        }
    }


ENCODE_OK: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "per image: mu and logvar of q(z|x) (logvar null for an ae); z draws when samples > 0",
        "content": {
            "application/json": {
                "example": {
                    "model": EXAMPLE_MODEL,
                    "latent_dim": len(_LATENT),
                    "mu": [_LATENT],
                    "logvar": [[-3.2] * len(_LATENT)],
                    "seed": 42,
                    "z": [[_LATENT, _LATENT]],
                }
            },
            "application/x-npy": {"schema": {**_BINARY, "description": "mu [N, D], or z [N, k, D] when samples > 0"}},
        },
    }
}


# --- latent-space routes (service/http/dataplane/latent.py) ---


def _files(description: str) -> dict[str, Any]:
    return {"type": "array", "items": _BINARY, "description": description, LIMIT: {"maxItems": "max_images"}}


_LABEL_FIELD = {"type": "string", "description": "a label for a conditional model, e.g. 7", "example": ""}


def interpolate_body() -> dict[str, Any]:
    """Two images (multipart, JSON `images`) or two latent vectors (JSON `z`, .npy [2, latent_dim])."""
    b64 = EXAMPLE_PNG_B64
    return {
        "requestBody": {
            "required": True,
            "description": "the two ends: two images (encoded to their posterior means) or two latent vectors",
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "properties": {"file": _files("exactly two files, any field name"), "label": _LABEL_FIELD},
                    }
                },
                "application/json": {
                    "schema": _limited(InterpolateJSON.model_json_schema(), images={"maxItems": "max_images"}),
                    "examples": {
                        "images": {"summary": "two images", "value": {"images": [b64, b64]}},
                        "latents": {"summary": "two latent vectors", "value": {"z": [_LATENT, [0.0] * len(_LATENT)]}},
                    },
                },
                "application/x-npy": {"schema": {**_BINARY, "description": "float array [2, latent_dim]"}},
            },
        }
    }


def sets_body(*, images: bool) -> dict[str, Any]:
    """/attribute (`images=False`: the sets 'with' and 'without') or /edit (images, and a vector or the sets)."""
    schema = _limited(
        (EditJSON if images else AttributeJSON).model_json_schema(by_alias=True),
        **({"images": {"maxItems": "max_images"}} if images else {}),
        **{"with": {"maxItems": "max_images"}, "without": {"maxItems": "max_images"}},
    )
    properties: dict[str, Any] = {
        "with": _files("images that show the attribute"),
        "without": _files("images that do not"),
        "label": _LABEL_FIELD,
    }
    example: dict[str, Any] = {"with": [EXAMPLE_PNG_B64], "without": [EXAMPLE_PNG_B64]}
    if images:
        properties["file"] = _files("the images to edit: any other field name")
        example = {"images": [EXAMPLE_PNG_B64], "vector": _LATENT}
    return {
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {"schema": {"type": "object", "properties": properties}},
                "application/json": {"schema": schema, "example": example},
            },
        }
    }


ATTRIBUTE_OK: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "the attribute vector: mean posterior mean of 'with' minus that of 'without'",
        "content": {
            "application/json": {
                "example": {"model": EXAMPLE_MODEL, "vector": _LATENT, "norm": 4.1, "n_with": 8, "n_without": 8}
            },
            "application/x-npy": {"schema": {**_BINARY, "description": "the vector, float32 [latent_dim]"}},
        },
    }
}
