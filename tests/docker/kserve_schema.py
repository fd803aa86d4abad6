"""Check a KServe resource's fields against the `kserve` package's own models (and, for the Kubernetes types they
embed, the `kubernetes` client's): every key must be an attribute of its model, every value of the model's type."""

from __future__ import annotations

import re
from typing import Any

import kserve
import kubernetes.client

SCALARS: dict[str, type | tuple[type, ...]] = {
    "str": str,
    "int": int,
    "bool": bool,
    "float": (int, float),
    "object": object,
    "datetime": str,
}


def _model(name: str) -> Any:
    found = getattr(kserve.models, name, None) or getattr(kubernetes.client, name, None)
    assert found is not None, f"no model named {name} in kserve or kubernetes.client"
    return found


def check(value: Any, type_name: str, where: str = "") -> None:
    """AssertionError naming the path of the first field that the model `type_name` does not have or type."""
    list_of = re.fullmatch(r"(?:list|List)\[(.+)\]", type_name)
    dict_of = re.fullmatch(r"(?:dict|Dict)\(str, (.+)\)|(?:dict|Dict)\[str, (.+)\]", type_name)
    if list_of:
        assert isinstance(value, list), f"{where}: expected a list"
        for i, item in enumerate(value):
            check(item, list_of.group(1), f"{where}[{i}]")
    elif dict_of:
        assert isinstance(value, dict), f"{where}: expected a mapping"
        for key, item in value.items():
            check(item, dict_of.group(1) or dict_of.group(2), f"{where}.{key}")
    elif type_name in SCALARS:
        assert isinstance(value, SCALARS[type_name]), f"{where}: expected {type_name}, got {value!r}"
    elif type_name == "ResourceQuantity" or type_name.endswith("IntOrString") or type_name == "Quantity":
        assert isinstance(value, str | int | float), f"{where}: expected a quantity"
    else:
        model = _model(type_name)
        assert isinstance(value, dict), f"{where}: expected a {type_name} mapping"
        by_key = {key: attr for attr, key in model.attribute_map.items()}
        for key, item in value.items():
            assert key in by_key, f"{where}.{key}: not a field of {type_name}"
            check(item, model.openapi_types[by_key[key]], f"{where}.{key}")
