"""A JSON body may carry the route's query parameters too (`{"images": [...], "model": "mnist-vae", "seed": 3}`):
they are taken out of the body and read with the query, so that every route checks them in one place, the same way.

The body is only parsed here when it names one of the route's parameters (a key in quotes is looked for in the
bytes: base64 and numbers hold no quotes), so the usual body pays one search. A value must have its parameter's
JSON type (as the OpenAPI document gives it); a parameter in both the query and the body is refused.
"""

from __future__ import annotations

import functools
import re
from typing import Any
from urllib.parse import urlencode

import orjson

from ..errors import InvalidInput, PayloadTooLarge
from .query import Query


def named(body: bytes, kind: type[Query]) -> bool:
    """Whether the body may hold one of the route's parameters as a key (a false hit only costs a parse)."""
    return _keys(kind).search(body) is not None


@functools.cache
def _keys(kind: type[Query]) -> re.Pattern[bytes]:
    """One pass over the body for any of the names in quotes."""
    return re.compile(b'"(?:' + b"|".join(re.escape(n.encode()) for n in sorted(kind.names())) + b')"')


def check_count(body: bytes, max_values: int) -> None:
    # Bounds what parsing can build, as uploads.parse_json does, before anything is parsed.
    values = body.count(b",") + 1
    if values > max_values:
        raise PayloadTooLarge(
            f"the JSON body holds up to {values} values (commas + 1), more than a request within the limits can; "
            "send fewer"
        )


def split(document: Any, kind: type[Query], query_string: bytes) -> tuple[bytes, bytes] | None:
    """(the body without the route's parameters, the query string with them), or None when the body has none."""
    if not isinstance(document, dict):
        return None  # the body's reader refuses it with its own message
    taken = {name: document.pop(name) for name in list(document) if name in kind.names()}
    if not taken:
        return None
    in_query = {pair.split(b"=", 1)[0].decode("latin-1") for pair in query_string.split(b"&") if pair}
    properties = _properties(kind)
    pairs: list[tuple[str, str]] = []
    for name, value in taken.items():
        if name in in_query:
            raise InvalidInput(f"'{name}' is given in both the query and the JSON body; give it once")
        if not json_type_ok(value, properties[name]):
            raise InvalidInput(f"body field '{name}' must be {described(properties[name])}, got {value!r:.80}")
        pairs += [(name, text) for text in as_query(value)]
    joined = b"&".join(p for p in (query_string, urlencode(pairs).encode()) if p)
    return orjson.dumps(document), joined


@functools.cache
def _properties(kind: type[Query]) -> dict[str, Any]:
    return kind.model_json_schema(by_alias=True)["properties"]


def as_query(value: Any) -> list[str]:
    """A JSON value as the query's strings: a list repeats its name, true/false as the query spells them."""
    if value is None:
        return []
    items = value if isinstance(value, list) else [value]
    return ["true" if v is True else "false" if v is False else str(v) for v in items]


def json_type_ok(value: Any, prop: dict[str, Any]) -> bool:
    """Whether a JSON value has the type a parameter's schema allows (list items: the item type, or a number for a
    string: a label's index, a strength)."""
    if "anyOf" in prop:
        return any(json_type_ok(value, option) for option in prop["anyOf"])
    if "enum" in prop or "const" in prop:
        return value in prop.get("enum", [prop.get("const")])
    kind = prop.get("type")
    if kind == "null":
        return value is None
    if kind == "array":
        item = prop.get("items", {})
        return isinstance(value, list) and all(
            json_type_ok(v, item) or (item.get("type") == "string" and _is_number(v)) for v in value
        )
    if kind == "integer":
        return _is_int(value)
    if kind == "number":
        return _is_number(value)
    if kind == "string":
        return isinstance(value, str)
    if kind == "boolean":
        return isinstance(value, bool)
    return True  # no type stated: the query's own reading decides


def described(prop: dict[str, Any]) -> str:
    if "anyOf" in prop:
        return " or ".join(described(option) for option in prop["anyOf"])
    if "enum" in prop:
        return "one of " + ", ".join(repr(v) for v in prop["enum"])
    kind = prop.get("type", "a value")
    return {"array": "a list", "integer": "an integer", "number": "a number", "null": "null"}.get(kind, f"a {kind}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
