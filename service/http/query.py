"""Query parameters of the data plane: one pydantic model per route, with its limits declared on its fields.

A field bounded by a setting says so once, `Field(..., json_schema_extra=limit("max_n"))`: the same declaration
gives the check (a 422 that names the setting), the OpenAPI document's `maximum` (service/http/document.py) and its
description. `Query.read` parses a query string into the route's model: unknown names are refused with the known
ones listed (what the document declares is what the route accepts), values are validated by pydantic as FastAPI
would, and a request without a query string costs a dictionary lookup.
"""

from __future__ import annotations

import secrets
import typing
from typing import Annotated, Any, ClassVar, Literal, Self
from urllib.parse import parse_qsl

import numpy as np
import numpy.random  # noqa: F401  numpy 2 imports it on first use: at start-up, not in the first request (~30 ms)
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..errors import InvalidInput
from ..settings import LimitSettings
from .examples import EXAMPLE_MODEL

# Marks a place in a schema whose bound is a setting: {"maximum": "max_n"} becomes {"maximum": 256} in each app's
# document (service/http/document.py), so that the document states the limits that app enforces.
LIMIT = "x-vae-limit"
Format = Literal["png", "json", "npy"]


def limit(setting: str, keyword: str = "maximum") -> dict[str, Any]:
    """`json_schema_extra` for a field bounded by `setting` (a LimitSettings field)."""
    return {LIMIT: {keyword: setting}}


def env_name(setting: str) -> str:
    return f"VAE_{setting.upper()}"


def at_most(value: int | float, bound: int | float, name: str, setting: str) -> None:
    """InvalidInput (422) when a value is over a limit that comes from the settings; `name` is a parameter's (in the
    query or the JSON body) or a product of them ("n x labels")."""
    if value > bound:
        what = f"parameter '{name}'" if name.isidentifier() else name
        raise InvalidInput(f"{what} is {value}; the limit is {bound} ({setting})")


class QueryInvalid(InvalidInput):
    """Query values that fail validation; `errors` lists each (pydantic's `loc` and `msg`)."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        listed = [{"loc": ["query", *map(str, e["loc"])], "msg": e["msg"]} for e in errors]
        detail = "; ".join(f"parameter '{'.'.join(e['loc'][1:])}': {e['msg']}" for e in listed)
        super().__init__(detail or "invalid query", errors=listed)


class Query(BaseModel):
    """A route's query parameters; subclasses declare fields (an `alias` is the name in the URL)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    _names: ClassVar[frozenset[str]]  # the names the URL may use
    _lists: ClassVar[frozenset[str]]  # names that repeat (label=1&label=7)
    _limits: ClassVar[tuple[tuple[str, str, str], ...]]  # (attribute, name, setting) of every bounded field
    _default: ClassVar[Any] = None  # the model of an empty query string, made on first use

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        names, lists, limits = set(), set(), []
        for attribute, info in cls.model_fields.items():
            name = info.alias or attribute
            names.add(name)
            if list in {typing.get_origin(t) for t in (info.annotation, *typing.get_args(info.annotation))}:
                lists.add(name)
            extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
            marker = extra.get(LIMIT)
            for setting in marker.values() if isinstance(marker, dict) else ():
                limits.append((attribute, name, str(setting)))
        cls._names, cls._lists, cls._limits = frozenset(names), frozenset(lists), tuple(limits)
        cls._default = None

    @classmethod
    def names(cls) -> frozenset[str]:
        """The names the URL may use."""
        return cls._names

    @classmethod
    def read(cls, query_string: bytes, limits: LimitSettings, where: str) -> Self:
        """The route's parameters from a raw query string; 422 for unknown names, bad values and limits."""
        query: Self | None = cls._default if not query_string else None
        if query is None:
            values: dict[str, Any] = {}
            for name, value in parse_qsl(query_string.decode("latin-1"), keep_blank_values=True):
                if name in cls._lists:
                    values.setdefault(name, []).append(value)
                elif name in values and name in cls._names:
                    # Which of two values was meant cannot be told (Starlette would take the last one silently).
                    raise InvalidInput(
                        f"query parameter '{name}' is given more than once on {where}; give it once",
                        errors=[{"loc": ["query", name], "msg": "given more than once"}],
                    )
                else:
                    values[name] = value
            unknown = sorted(values.keys() - cls._names)
            if unknown:
                names = ", ".join(repr(name) for name in unknown)
                known = ", ".join(sorted(cls._names)) or "none"
                errors = [{"loc": ["query", name], "msg": "unknown query parameter"} for name in unknown]
                raise InvalidInput(
                    f"unknown query parameter {names} on {where}; it accepts: {known} (see /docs)", errors=errors
                )
            try:
                query = cls.model_validate(values)
            except ValidationError as e:
                raise QueryInvalid([{"loc": err["loc"], "msg": err["msg"]} for err in e.errors()]) from None
            if not values:
                cls._default = query  # an empty query string: the same model every time
        for attribute, name, setting in cls._limits:
            value = getattr(query, attribute)
            if value is not None:
                at_most(value, getattr(limits, setting), name, env_name(setting))
        return query


def rng_for(seed: int | None) -> tuple[np.random.Generator, int]:
    """A generator for `seed`, drawing (and returning) a fresh seed when none was given."""
    seed = secrets.randbits(32) if seed is None else seed
    return np.random.default_rng(seed), seed


# --- fields that several routes share ---------------------------------------------------------------------------

_LABEL = "class index or class name from the model's manifest; repeat (label=1&label=7) or separate with commas"

ModelName = Annotated[
    str | None,
    Field(
        min_length=1,
        description="model name (see GET /models); the default model when omitted",
        examples=[EXAMPLE_MODEL],
    ),
]
ModelVersion = Annotated[
    str | None,
    Field(
        min_length=1,
        max_length=255,
        description="one of the model's served versions (GET /models lists them); its newest when omitted",
        examples=["1"],
    ),
]
FormatName = Annotated[
    Format | None,
    Field(
        alias="format",
        description="png (one image, or a grid), json (base64 PNGs and numbers) or npy (float32 array); "
        "when omitted, the Accept header decides, else the route's default",
        examples=["png"],
    ),
]
Seed = Annotated[
    int | None,
    Field(
        ge=0,
        le=2**63 - 1,
        description="seed for the noise; the same seed gives the same output. "
        "When omitted a seed is drawn and returned (JSON 'seed', header X-Seed)",
        examples=[42],
    ),
]
Temperature = Annotated[
    float,
    Field(
        ge=0.0,
        description="scales the prior's spread: z ~ N(0, temperature^2 I), or each fitted component's "
        "covariance square root around its mean",
        examples=[1.0],
        json_schema_extra=limit("max_temperature"),
    ),
]
# No example where the example model (mnist-vae) is unconditional: Swagger's "Try it out" would send it, and a
# label for a model that takes none is refused. /generate's model is conditional: its label has one.
LabelList = Annotated[list[str] | None, Field(description=f"{_LABEL}; only for a conditional model")]
ClassLabelList = Annotated[list[str] | None, Field(description=_LABEL, examples=["7"])]
PriorName = Annotated[
    Literal["fitted", "standard"] | None,
    Field(
        description="fitted: the model's Gaussian mixture over its training codes (what lets an ae sample); "
        "standard: N(0, I), for a vae or cvae. Default: fitted when the model has one, else standard; the "
        "response says which (JSON 'prior', header X-Prior)",
        examples=["fitted"],
    ),
]
Count = Annotated[
    int,
    Field(ge=1, description="how many images (at most VAE_MAX_N)", examples=[16], json_schema_extra=limit("max_n")),
]
ScaleFactor = Annotated[
    int,
    Field(
        ge=1,
        description="draw PNG output (png, and json's base64 PNGs) this many times larger, nearest neighbour: each "
        "pixel a scale x scale block. At most VAE_MAX_SCALE, and the enlarged images' pixels at most "
        "VAE_MAX_OUTPUT_PIXELS; not with format npy",
        examples=[4],
        json_schema_extra=limit("max_scale"),
    ),
]


class ModelQuery(Query):
    """Every data-plane route names its model, or takes the default one, and a version of it, or its newest."""

    model: ModelName = None
    version: ModelVersion = None


class ImagesOut(ModelQuery):
    """A route whose answer is images: the format, and how much larger PNGs are drawn."""

    fmt: FormatName = None
    scale: ScaleFactor = 1
