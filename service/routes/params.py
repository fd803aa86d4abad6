"""Query parameters shared by several routes, and the checks against limits that come from Settings."""

from __future__ import annotations

import secrets
from typing import Annotated, Literal

import numpy as np
import numpy.random  # noqa: F401  numpy 2 imports it on first use: at start-up, not in the first request (~30 ms)
from fastapi import Depends, Query

from ..deps import Settings
from ..errors import InvalidInput
from ..outputs import Format, Scale

FormatQuery = Annotated[
    Format | None,
    Query(
        alias="format",
        description="png (one image, or a grid), json (base64 PNGs and numbers) or npy (float32 array); "
        "when omitted, the Accept header decides, else the route's default",
        examples=["png"],
    ),
]
SeedQuery = Annotated[
    int | None,
    Query(
        ge=0,
        le=2**63 - 1,
        description="seed for the noise; the same seed gives the same output. "
        "When omitted a seed is drawn and returned (JSON 'seed', header X-Seed)",
        examples=[42],
    ),
]
TemperatureQuery = Annotated[
    float,
    Query(
        ge=0.0,
        description="scales the prior's spread: z ~ N(0, temperature^2 I), or each fitted component's "
        "covariance square root around its mean",
        examples=[1.0],
    ),
]
_LABEL = "class index or class name from the model's manifest; repeat (label=1&label=7) or separate with commas"
# No example where the example model (mnist-vae) is unconditional: Swagger's "Try it out" would send it, and a
# label for a model that takes none is refused. /generate's model is conditional: its label has one.
LabelQuery = Annotated[list[str] | None, Query(alias="label", description=f"{_LABEL}; only for a conditional model")]
ClassLabelQuery = Annotated[list[str] | None, Query(alias="label", description=_LABEL, examples=["7"])]
PriorQuery = Annotated[
    Literal["fitted", "standard"] | None,
    Query(
        description="fitted: the model's Gaussian mixture over its training codes (what lets an ae sample); "
        "standard: N(0, I), for a vae or cvae. Default: fitted when the model has one, else standard; the "
        "response says which (JSON 'prior', header X-Prior)",
        examples=["fitted"],
    ),
]
NQuery = Annotated[int, Query(ge=1, description="how many images (at most VAE_MAX_N)", examples=[16])]


ScaleFactorQuery = Annotated[
    int,
    Query(
        alias="scale",
        ge=1,
        description="draw PNG output (png, and json's base64 PNGs) this many times larger, nearest neighbour: each "
        "pixel a scale x scale block. At most VAE_MAX_SCALE, and the enlarged images' pixels at most "
        "VAE_MAX_OUTPUT_PIXELS; not with format npy",
        examples=[4],
    ),
]


async def get_scale(settings: Settings, factor: ScaleFactorQuery = 1) -> Scale:
    """`scale=` checked against VAE_MAX_SCALE, with the output pixel limit the renderer checks before enlarging."""
    at_most(factor, settings.max_scale, "scale", "VAE_MAX_SCALE")
    return Scale(factor, settings.max_output_pixels)


ScaleQuery = Annotated[Scale, Depends(get_scale)]


def at_most(value: int | float, limit: int | float, name: str, setting: str) -> None:
    """InvalidInput (422) when a query value is over a limit that comes from the settings."""
    if value > limit:
        raise InvalidInput(f"query parameter '{name}' is {value}; the limit is {limit} ({setting})")


def rng_for(seed: int | None) -> tuple[np.random.Generator, int]:
    """A generator for `seed`, drawing (and returning) a fresh seed when none was given."""
    seed = secrets.randbits(32) if seed is None else seed
    return np.random.default_rng(seed), seed
