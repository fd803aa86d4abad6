"""The Open Inference Protocol (KServe v2, Triton's HTTP API) tensor codec: request bodies in, response bodies out.

Pure functions over bytes and numpy arrays, no HTTP. A request body is JSON (tensors in `data`, flat or nested,
row-major), or a JSON header followed by binary tensors (Triton's binary tensor data extension: the header's
length in `Inference-Header-Content-Length`, each input's byte count in `parameters.binary_data_size`), or, with
a header length of 0, one input's raw bytes. Every shape, count and byte size is checked against the graph's
declared inputs and the row limit before an array is built.
"""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, ValidationError

from vaeformat.manifest import TensorSpec

from ..errors import InvalidInput, PayloadTooLarge
from .render import JSON_NUMBER_BYTES

HEADER_LENGTH = "Inference-Header-Content-Length"
# OIP's datatype names; BYTES (strings) has no use here: every tensor of the graph contract is numeric.
DATATYPES: dict[str, np.dtype] = {
    name: np.dtype(t).newbyteorder("<")
    for name, t in {
        "BOOL": np.bool_,
        "UINT8": np.uint8,
        "UINT16": np.uint16,
        "UINT32": np.uint32,
        "UINT64": np.uint64,
        "INT8": np.int8,
        "INT16": np.int16,
        "INT32": np.int32,
        "INT64": np.int64,
        "FP16": np.float16,
        "FP32": np.float32,
        "FP64": np.float64,
    }.items()
}
MANIFEST_DATATYPE = {"float32": "FP32", "int64": "INT64"}  # the manifest's dtype names -> OIP's
# What a client may send for each declared datatype: label indices in any integer type (range-checked), and
# floats in any float type (FP64 is rounded to float32, which is what the graph computes in anyway).
ACCEPTED = {
    "FP32": ("FP32", "FP16", "FP64"),
    "INT64": ("INT64", "INT32", "INT16", "INT8", "UINT8", "UINT16", "UINT32", "UINT64"),
}
# JSON keys, shapes and parameters beside the numbers: slack for the comma count that bounds a JSON body.
_STRUCTURE_VALUES = 1000


class InvalidTensor(InvalidInput):
    """A request the protocol refuses: OIP answers 400 (typically) with `{"error": ...}`."""

    status = 400


class _Strict(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)


class RequestInput(_Strict):
    name: StrictStr
    shape: list[StrictInt]
    datatype: StrictStr
    parameters: dict[str, Any] | None = None
    data: Any = None


class RequestOutput(_Strict):
    name: StrictStr
    parameters: dict[str, Any] | None = None


class RequestHeader(_Strict):
    id: StrictStr | None = None
    parameters: dict[str, Any] | None = None
    inputs: list[RequestInput] = Field(min_length=1)
    outputs: list[RequestOutput] | None = None


@dataclass(frozen=True)
class InferRequest:
    id: str | None
    feeds: dict[str, np.ndarray]  # declared name -> array of the declared dtype, batch axis first
    outputs: list[str]  # declared output names, in the order the response lists them
    binary: dict[str, bool]  # output name -> sent as binary data


def check_response_size(parsed: InferRequest, outputs: list[TensorSpec], rows: int, limit: int) -> None:
    """PayloadTooLarge, before the model runs, when the answer's tensors would exceed `limit` bytes: each output
    at its dtype's size when sent as binary data, at JSON_NUMBER_BYTES a number in JSON."""
    specs = {spec.name: spec for spec in outputs}
    size = 0
    for name in parsed.outputs:
        spec = specs[name]
        numbers = rows * math.prod(d for d in spec.shape[1:] if isinstance(d, int))
        size += numbers * (np.dtype(spec.dtype).itemsize if parsed.binary.get(name) else JSON_NUMBER_BYTES)
    if size > limit:
        raise PayloadTooLarge(
            f"the answer would hold up to {size} bytes of tensors ({rows} rows of {', '.join(parsed.outputs)}), "
            f"more than {limit} (VAE_MAX_RESPONSE_BYTES); ask for binary outputs (parameters.binary_data_output) "
            "or send fewer rows"
        )


def datatype(spec: TensorSpec) -> str:
    return MANIFEST_DATATYPE[spec.dtype]


def metadata_tensor(spec: TensorSpec) -> dict[str, Any]:
    """$metadata_tensor: a dynamic axis (a string such as "N" in the manifest) is -1."""
    return {
        "name": spec.name,
        "datatype": datatype(spec),
        "shape": [d if isinstance(d, int) else -1 for d in spec.shape],
    }


def split_body(body: bytes, header_length: str | None) -> tuple[bytes, memoryview]:
    """The JSON header and the binary part after it; without the header, the whole body is JSON."""
    if header_length is None:
        return body, memoryview(b"")
    text = header_length.strip()
    if not (text.isascii() and text.isdigit()) or len(text) > 12:  # isdigit alone takes "²"
        raise InvalidTensor(f"{HEADER_LENGTH}: {header_length[:40]!r} is not a byte count")
    n = int(text)
    if n > len(body):
        raise InvalidTensor(f"{HEADER_LENGTH} is {n}, but the body holds only {len(body)} bytes")
    return body[:n], memoryview(body)[n:]


def parse_request(
    body: bytes,
    header_length: str | None,
    inputs: list[TensorSpec],
    outputs: list[TensorSpec],
    max_rows: int,
    setting: str,
) -> InferRequest:
    """Check and decode one inference request for a graph with these declared inputs and outputs."""
    header, binary = split_body(body, header_length)
    if header_length is not None and not header:
        return _raw_request(binary, inputs, outputs, max_rows, setting)
    # pydantic builds every number of a JSON document before any check runs: bound their count by the commas.
    allowed = sum(max_rows * _row_size(spec) for spec in inputs) + _STRUCTURE_VALUES
    if header.count(b",") + 1 > allowed:
        raise PayloadTooLarge(
            f"the JSON holds more values than {max_rows} rows ({setting}) of this model's inputs can; send fewer rows"
        )
    try:
        request = RequestHeader.model_validate_json(header)
    except ValidationError as e:
        where = "; ".join(
            f"'{'.'.join(str(p) for p in err['loc']) or '(top level)'}': {err['msg']}" for err in e.errors()
        )
        raise InvalidTensor(f"the inference request is not valid JSON of the protocol: {where}") from None
    feeds = _feeds(request.inputs, binary, inputs, max_rows, setting)
    names, binary_out = _outputs(request, outputs)
    return InferRequest(id=request.id, feeds=feeds, outputs=names, binary=binary_out)


def _row_size(spec: TensorSpec) -> int:
    return math.prod(d for d in spec.shape[1:] if isinstance(d, int))


def _raw_request(
    raw: memoryview, inputs: list[TensorSpec], outputs: list[TensorSpec], max_rows: int, setting: str
) -> InferRequest:
    # Triton's raw binary request: the body is the one input's bytes; its rows follow from the byte count.
    if len(inputs) != 1:
        names = [spec.name for spec in inputs]
        raise InvalidTensor(f"a raw binary request needs a model with one input; this one takes {names}")
    (spec,) = inputs
    row_bytes = _row_size(spec) * DATATYPES[datatype(spec)].itemsize
    if len(raw) == 0 or len(raw) % row_bytes:
        raise InvalidTensor(
            f"a raw binary request for input '{spec.name}' needs a whole number of rows of {row_bytes} bytes "
            f"({datatype(spec)} {metadata_tensor(spec)['shape'][1:]}); got {len(raw)} bytes"
        )
    shape = [len(raw) // row_bytes, *metadata_tensor(spec)["shape"][1:]]
    _check_shape(spec, shape, max_rows, setting)
    array = np.frombuffer(raw, dtype=DATATYPES[datatype(spec)]).reshape(shape)
    feeds = {spec.name: _finite(spec.name, array.astype(np.float32 if spec.dtype == "float32" else np.int64))}
    names = [o.name for o in outputs]
    return InferRequest(id=None, feeds=feeds, outputs=names, binary=dict.fromkeys(names, True))


def _check_shape(spec: TensorSpec, shape: list[int], max_rows: int, setting: str) -> None:
    declared = metadata_tensor(spec)["shape"]
    if any(d < 0 for d in shape):
        raise InvalidTensor(
            f"input '{spec.name}' has shape {shape}; a request gives its real sizes (the row count in place of "
            f"-1), the model expects {declared}"
        )
    if len(shape) != len(declared):
        raise InvalidTensor(f"input '{spec.name}' has shape {shape}; the model expects {declared} (-1: any rows)")
    if shape[0] < 1 or shape[0] > max_rows:
        raise InvalidTensor(f"input '{spec.name}' has {shape[0]} rows; give 1 to {max_rows} ({setting})")
    if any(want != -1 and got != want for got, want in zip(shape[1:], declared[1:], strict=True)):
        raise InvalidTensor(f"input '{spec.name}' has shape {shape}; the model expects {declared} (-1: any rows)")


def _feeds(
    given: list[RequestInput], binary: memoryview, inputs: list[TensorSpec], max_rows: int, setting: str
) -> dict[str, np.ndarray]:
    declared = {spec.name: spec for spec in inputs}
    names = [t.name for t in given]
    if sorted(names) != sorted(declared):
        raise InvalidTensor(f"the request gives inputs {names}; the model takes exactly {sorted(declared)}")
    # Every shape and byte count is checked before any data is read.
    sizes: list[int | None] = []
    for tensor in given:
        spec = declared[tensor.name]
        _check_shape(spec, tensor.shape, max_rows, setting)
        if tensor.datatype not in ACCEPTED[datatype(spec)]:
            raise InvalidTensor(
                f"input '{tensor.name}' has datatype {tensor.datatype!r}; the model takes {datatype(spec)} "
                f"(or one of {list(ACCEPTED[datatype(spec)][1:])}, converted)"
            )
        size = (tensor.parameters or {}).get("binary_data_size")
        if size is not None:
            want = math.prod(tensor.shape) * DATATYPES[tensor.datatype].itemsize
            if not isinstance(size, int) or isinstance(size, bool) or size != want:
                raise InvalidTensor(
                    f"input '{tensor.name}': binary_data_size is {size!r}, but shape {tensor.shape} of "
                    f"{tensor.datatype} takes {want} bytes"
                )
            if tensor.data is not None:
                raise InvalidTensor(f"input '{tensor.name}' has both binary_data_size and data; give one")
        elif tensor.data is None:
            raise InvalidTensor(f"input '{tensor.name}' has no data (and no binary_data_size)")
        sizes.append(size)
    total = sum(s for s in sizes if s is not None)
    if total != len(binary):
        raise InvalidTensor(
            f"the inputs' binary_data_size add up to {total} bytes; the binary part holds {len(binary)}"
        )
    rows = {t.shape[0] for t in given}
    if len(rows) > 1:
        raise InvalidTensor(f"the inputs have different row counts {sorted(rows)}; every input needs one row per item")
    feeds: dict[str, np.ndarray] = {}
    offset = 0
    for tensor, size in zip(given, sizes, strict=True):
        spec = declared[tensor.name]
        target = np.float32 if spec.dtype == "float32" else np.int64
        if size is not None:
            raw = np.frombuffer(binary[offset : offset + size], dtype=DATATYPES[tensor.datatype])
            offset += size
            array = _converted(tensor.name, raw, target)
        else:
            array = _from_json(tensor, target)
        feeds[tensor.name] = _finite(tensor.name, array.reshape(tensor.shape))
    return feeds


def _converted(name: str, array: np.ndarray, target: type[np.generic]) -> np.ndarray:
    if target is np.int64 and array.dtype == np.uint64 and array.size and int(array.max()) > np.iinfo(np.int64).max:
        raise InvalidTensor(f"input '{name}' holds a value beyond INT64")
    return np.ascontiguousarray(array, dtype=target)


def _from_json(tensor: RequestInput, target: type[np.generic]) -> np.ndarray:
    want = math.prod(tensor.shape)
    try:
        array = np.asarray(tensor.data)  # nested lists give the nested shape, flat ones a vector
    except (ValueError, TypeError):  # ragged nesting
        raise InvalidTensor(f"input '{tensor.name}': data is not a rectangular array of numbers") from None
    numeric = array.dtype.kind in "iu" or (array.dtype.kind == "f" and target is np.float32)
    # numpy reads [true, 0] as [1, 0]: a numeric array's values are looked at for booleans too.
    if array.size and (not numeric or _holds_a_boolean(tensor.data, array.ndim)):
        what = "integers" if target is np.int64 else "numbers"
        raise InvalidTensor(
            f"input '{tensor.name}': data must hold {what} only (JSON true/false, strings and integers beyond 64 bits "
            "are not)"
        )
    if array.size != want:
        raise InvalidTensor(f"input '{tensor.name}': data holds {array.size} values; shape {tensor.shape} needs {want}")
    if array.size:
        _finite(tensor.name, array)  # before the ranges: NaN has none, and infinity no wider type holds
        # A JSON 300 declared INT8, or 1e6 declared FP16, is a client's mistake that converting would hide (binary
        # data cannot hold such values); then the values must fit what the graph computes in.
        _within(tensor.name, array, tensor.datatype, "send values within it or declare a wider datatype")
        model_type = "INT64" if target is np.int64 else "FP32"
        _within(tensor.name, array, model_type, f"the model computes in {model_type}")
    return np.ascontiguousarray(array, dtype=target)


def _holds_a_boolean(data: Any, depth: int) -> bool:
    """Whether rectangular nested JSON lists, `depth` deep, hold true or false (their types read in C, row by row:
    half the time of converting them)."""
    if depth == 0:
        return isinstance(data, bool)
    rows = [data]
    for _ in range(depth - 1):
        rows = list(itertools.chain.from_iterable(rows))
    return any(bool in set(map(type, row)) for row in rows)


def _within(name: str, array: np.ndarray, datatype: str, hint: str) -> None:
    """InvalidTensor when a JSON array's values do not all lie within `datatype`'s range."""
    kind = DATATYPES[datatype]
    bounds = np.iinfo(kind) if kind.kind in "iu" else np.finfo(kind)
    low, high = (int(array.min()), int(array.max())) if array.dtype.kind in "iu" else (array.min(), array.max())
    if low < bounds.min or high > bounds.max:
        worst = low if low < bounds.min else high
        raise InvalidTensor(
            f"input '{name}' holds {_number(worst)}, beyond {datatype} ({_number(bounds.min)} to "
            f"{_number(bounds.max)}); {hint}"
        )


def _number(value: int | float | np.number) -> str:
    return str(value) if isinstance(value, int) else f"{float(value):g}"


def _finite(name: str, array: np.ndarray) -> np.ndarray:
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise InvalidTensor(f"input '{name}' holds NaN or infinity; every value must be a finite number")
    return array


def _outputs(request: RequestHeader, outputs: list[TensorSpec]) -> tuple[list[str], dict[str, bool]]:
    declared = [spec.name for spec in outputs]
    everything_binary = (request.parameters or {}).get("binary_data_output", False) is True
    if request.outputs is None:
        return declared, dict.fromkeys(declared, everything_binary)
    names = [o.name for o in request.outputs]
    unknown = [n for n in names if n not in declared]
    if unknown or len(set(names)) != len(names) or not names:
        raise InvalidTensor(f"requested outputs {names}: give each of {declared} at most once")
    binary: dict[str, bool] = {}
    for output in request.outputs:
        parameters = output.parameters or {}
        if parameters.get("classification", 0) not in (0, None):
            raise InvalidTensor(f"output '{output.name}': the classification extension is not supported")
        flag = parameters.get("binary_data", everything_binary)
        if not isinstance(flag, bool):
            raise InvalidTensor(f"output '{output.name}': parameters.binary_data must be true or false")
        binary[output.name] = flag
    return names, binary


def check_labels(feeds: dict[str, np.ndarray], classes: int) -> None:
    """Label indices must name a class: an index out of range would make the graph's lookup fail."""
    labels = feeds.get("label")
    if labels is not None and labels.size and (int(labels.min()) < 0 or int(labels.max()) >= classes):
        raise InvalidTensor(f"input 'label' holds an index outside 0..{classes - 1} (the model's classes)")


def render_response(
    model_name: str,
    model_version: str,
    request: InferRequest,
    arrays: list[np.ndarray],
) -> tuple[bytes, dict[str, str], str]:
    """$inference_response as (body, headers, media type); binary outputs follow the JSON header in order."""
    outputs: list[dict[str, Any]] = []
    blobs: list[bytes] = []
    for name, array in zip(request.outputs, arrays, strict=True):
        binary = request.binary.get(name, False)
        if not binary and array.dtype.kind == "f" and not np.isfinite(array).all():  # JSON has no NaN or infinity
            raise InvalidTensor(
                f"output {name!r} is not finite for these inputs: values this large overflow the model's float32 "
                "arithmetic; send inputs in the range the model was trained on (latents near N(0, 1), pixels in "
                "[0, 1])"
            )
        kind = OIP_OF_DTYPE[array.dtype.newbyteorder("<")]
        tensor: dict[str, Any] = {"name": name, "datatype": kind, "shape": list(array.shape)}
        if binary:
            blob = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()
            tensor["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            tensor["data"] = array.ravel().tolist()
        outputs.append(tensor)
    response: dict[str, Any] = {"model_name": model_name, "model_version": model_version, "outputs": outputs}
    if request.id is not None:
        response["id"] = request.id
    header = json.dumps(response, separators=(",", ":")).encode()
    if not blobs:
        return header, {}, "application/json"
    return b"".join([header, *blobs]), {HEADER_LENGTH: str(len(header))}, "application/octet-stream"


OIP_OF_DTYPE = {dtype: name for name, dtype in DATATYPES.items()}
