"""The Open Inference Protocol's REST response shapes, written down from its specification, to check answers against.

From kserve/open-inference-protocol, specification/protocol/inference_rest.md (no conformance suite is published),
and Triton's model repository extension (server docs, protocol/extension_model_repository.md) for the index.
Each check asserts the fields the specification lists, their JSON types, and that no other field appears.
"""

from __future__ import annotations

from typing import Any

# "Tensor Data Types" of the specification.
DATATYPES = {"BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64"}
DATATYPES |= {"FP16", "FP32", "FP64", "BYTES"}


def _fields(body: Any, required: dict[str, type | tuple[type, ...]], optional: dict[str, Any] | None = None) -> None:
    optional = optional or {}
    assert isinstance(body, dict), body
    assert set(required) <= set(body), f"missing {set(required) - set(body)} in {sorted(body)}"
    assert set(body) <= set(required) | set(optional), (
        f"fields outside the specification: {set(body) - set(required) - set(optional)}"
    )
    for key, kind in {**required, **optional}.items():
        if key in body:
            value = body[key]
            assert isinstance(value, kind) and not (kind is not bool and isinstance(value, bool)), (
                key,
                repr(value)[:80],
            )


def _strings(values: Any) -> None:
    assert isinstance(values, list) and all(isinstance(v, str) for v in values), values


def _shape(values: Any) -> None:
    assert isinstance(values, list) and all(isinstance(v, int) and not isinstance(v, bool) for v in values), values


def server_metadata(body: Any) -> None:
    """$metadata_server_response = {"name": $string, "version": $string, "extensions": [$string, ...]}"""
    _fields(body, {"name": str, "version": str, "extensions": list})
    _strings(body["extensions"])


def server_live(body: Any) -> None:
    """$live_server_response = {"live": $bool}"""
    _fields(body, {"live": bool})


def server_ready(body: Any) -> None:
    """$ready_server_response = {"ready": $bool} (the specification's text says "live", a known typo)."""
    _fields(body, {"ready": bool})


def model_ready(body: Any) -> None:
    """$ready_model_response = {"name": $string, "ready": $bool}"""
    _fields(body, {"name": str, "ready": bool})


def _metadata_tensor(body: Any) -> None:
    """$metadata_tensor = {"name": $string, "datatype": $string, "shape": [$number, ...]}; -1 for variable."""
    _fields(body, {"name": str, "datatype": str, "shape": list})
    assert body["datatype"] in DATATYPES, body
    _shape(body["shape"])
    assert all(d >= -1 for d in body["shape"]), body


def model_metadata(body: Any) -> None:
    """$metadata_model_response = {"name", "versions" #optional, "platform", "inputs": [...], "outputs": [...]}"""
    _fields(body, {"name": str, "platform": str, "inputs": list, "outputs": list}, {"versions": list})
    _strings(body.get("versions", []))
    for tensor in body["inputs"] + body["outputs"]:
        _metadata_tensor(tensor)


def inference_response(body: Any) -> None:
    """$inference_response = {"model_name", "model_version" #optional, "id", "parameters" #optional, "outputs"}

    $response_output = {"name", "shape", "datatype", "parameters" #optional, "data"}: `data` is absent only when
    the binary tensor data extension carries the tensor (`parameters.binary_data_size`)."""
    _fields(
        body,
        {"model_name": str, "outputs": list},
        {"model_version": str, "id": str, "parameters": dict},
    )
    for output in body["outputs"]:
        binary = "binary_data_size" in output.get("parameters", {})
        required: dict[str, type | tuple[type, ...]] = {"name": str, "shape": list, "datatype": str}
        if not binary:
            required["data"] = list
        _fields(output, required, {"parameters": dict})
        assert output["datatype"] in DATATYPES, output
        _shape(output["shape"])
        if not binary:
            count = 1
            for d in output["shape"]:
                count *= d
            assert len(output["data"]) == count, "data must hold prod(shape) values, row-major"


def error(body: Any) -> None:
    """$inference_error_response (and every other error object) = {"error": $string}"""
    _fields(body, {"error": str})


def repository_index(body: Any) -> None:
    """Triton's $repository_index_response = [{"name", "version" #optional, "state" #optional, "reason" #optional}]"""
    assert isinstance(body, list), body
    for entry in body:
        _fields(entry, {"name": str}, {"version": str, "state": str, "reason": str})
