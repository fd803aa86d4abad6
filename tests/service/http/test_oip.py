"""oip.py: the Open Inference Protocol tensor codec, as bytes in and bytes out (no HTTP, no model)."""

import json

import numpy as np
import pytest

from service.errors import PayloadTooLarge
from service.http.oip import HEADER_LENGTH, InvalidTensor, check_labels, metadata_tensor, parse_request, render_response
from vaeformat.manifest import TensorSpec

from ... import oip_spec

Z = TensorSpec(name="z", dtype="float32", shape=["N", 4])
LABEL = TensorSpec(name="label", dtype="int64", shape=["N"])
IMAGE = TensorSpec(name="image", dtype="float32", shape=["N", 1, 2, 2])
LOGITS = TensorSpec(name="logits", dtype="float32", shape=["N", 1, 2, 2])


def parse(body, header_length=None, inputs=(Z, LABEL), outputs=(IMAGE, LOGITS), max_rows=8):
    if isinstance(body, dict):
        body = json.dumps(body).encode()
    return parse_request(body, header_length, list(inputs), list(outputs), max_rows, "VAE_MAX_LATENTS")


def binary(header: dict, *arrays: np.ndarray) -> tuple[bytes, str]:
    text = json.dumps(header).encode()
    return text + b"".join(a.tobytes() for a in arrays), str(len(text))


def test_metadata_uses_oip_datatypes_and_minus_one_for_the_batch_axis():
    assert metadata_tensor(IMAGE) == {"name": "image", "datatype": "FP32", "shape": [-1, 1, 2, 2]}
    assert metadata_tensor(LABEL) == {"name": "label", "datatype": "INT64", "shape": [-1]}


def test_json_flat_and_nested_data_give_the_same_feeds():
    flat = {
        "inputs": [
            {"name": "z", "shape": [2, 4], "datatype": "FP32", "data": [1, 2, 3, 4, 5, 6, 7, 8.5]},
            {"name": "label", "shape": [2], "datatype": "INT32", "data": [1, 0]},
        ]
    }
    nested = {"inputs": [{**flat["inputs"][0], "data": [[1, 2, 3, 4], [5, 6, 7, 8.5]]}, flat["inputs"][1]]}
    a, b = parse(flat), parse(nested)
    for request in (a, b):
        assert request.feeds["z"].dtype == np.float32 and request.feeds["z"].shape == (2, 4)
        assert request.feeds["label"].dtype == np.int64 and request.feeds["label"].tolist() == [1, 0]
    np.testing.assert_array_equal(a.feeds["z"], b.feeds["z"])
    assert a.outputs == ["image", "logits"] and a.binary == {"image": False, "logits": False}


def test_binary_inputs_in_other_integer_and_float_types_are_converted():
    z = np.arange(8, dtype=np.float64).reshape(2, 4)
    labels = np.array([2, 1], np.uint8)
    header = {
        "id": "x",
        "inputs": [
            {"name": "label", "shape": [2], "datatype": "UINT8", "parameters": {"binary_data_size": 2}},
            {"name": "z", "shape": [2, 4], "datatype": "FP64", "parameters": {"binary_data_size": 64}},
        ],
        "outputs": [{"name": "logits", "parameters": {"binary_data": True}}],
    }
    body, length = binary(header, labels, z)  # binary parts follow the inputs' order in the header
    request = parse(body, length)
    np.testing.assert_array_equal(request.feeds["z"], z.astype(np.float32))
    assert request.feeds["label"].tolist() == [2, 1] and request.id == "x"
    assert request.outputs == ["logits"] and request.binary == {"logits": True}


def test_binary_data_output_asks_for_every_output_in_binary():
    body = {"inputs": [{"name": "z", "shape": [1, 4], "datatype": "FP32", "data": [0] * 4}]}
    request = parse({**body, "parameters": {"binary_data_output": True}}, inputs=[Z])
    assert request.binary == {"image": True, "logits": True}


def test_raw_binary_request_for_a_single_input_model():
    z = np.ones((3, 4), np.float32)
    request = parse(z.tobytes(), "0", inputs=[Z])
    assert request.feeds["z"].shape == (3, 4) and all(request.binary.values())
    with pytest.raises(InvalidTensor, match="whole number of rows of 16 bytes"):
        parse(z.tobytes()[:-1], "0", inputs=[Z])
    with pytest.raises(InvalidTensor, match="needs a model with one input"):
        parse(z.tobytes(), "0")
    with pytest.raises(InvalidTensor, match="give 1 to 2"):
        parse(z.tobytes(), "0", inputs=[Z], max_rows=2)


@pytest.mark.parametrize(
    ("header_length", "body", "message"),
    [
        ("12x", b"{}", "not a byte count"),
        ("-1", b"{}", "not a byte count"),
        ("100", b"{}", "body holds only 2 bytes"),
    ],
)
def test_header_length_is_checked_against_the_body(header_length, body, message):
    with pytest.raises(InvalidTensor, match=message):
        parse(body, header_length)


@pytest.mark.parametrize(
    ("z", "message"),
    [
        ({"shape": [2, 4], "datatype": "FP32", "parameters": {"binary_data_size": 31}}, "takes 32 bytes"),
        ({"shape": [2, 4], "datatype": "FP32", "parameters": {"binary_data_size": True}}, "takes 32 bytes"),
        ({"shape": [2, 4], "datatype": "FP32", "parameters": {"binary_data_size": 32}, "data": [0]}, "give one"),
        ({"shape": [2, 4], "datatype": "FP32"}, "has no data"),
        ({"shape": [9, 4], "datatype": "FP32", "data": [0] * 36}, "give 1 to 8 \\(VAE_MAX_LATENTS\\)"),
        ({"shape": [0, 4], "datatype": "FP32", "data": []}, "give 1 to 8"),
        ({"shape": [2, -4], "datatype": "FP32", "data": [0] * 8}, "expects \\[-1, 4\\]"),
        ({"shape": [8], "datatype": "FP32", "data": [0] * 8}, "expects \\[-1, 4\\]"),
        ({"shape": [2, 4], "datatype": "INT64", "data": [0] * 8}, "datatype 'INT64'"),
        ({"shape": [2, 4], "datatype": "FP32", "data": [True] * 8}, "numbers only"),
        ({"shape": [2, 4], "datatype": "FP32", "data": [[0] * 4, [0] * 3]}, "rectangular"),
        ({"shape": [2, 4], "datatype": "FP32", "data": [10**30] * 8}, "integers beyond 64 bits"),
        ({"shape": [-1, 4], "datatype": "FP32", "data": [0] * 8}, "the row count in place of -1"),
        ({"shape": [2, 4], "datatype": "FP16", "data": [1e6] * 8}, r"holds 1e\+06, beyond FP16 \(-65504 to 65504\)"),
        ({"shape": [2, 4], "datatype": "FP64", "data": [-1e300] * 8}, "beyond FP32 .*; the model computes in FP32"),
        ({"shape": [2, 4], "datatype": "FP32", "data": [1e39] * 8}, "beyond FP32 .*; send values within it"),
        ({"shape": [2, 4], "datatype": "FP32", "data": [float("inf")] * 8}, "NaN or infinity"),
        ({"shape": [2, 4], "datatype": "FP64", "data": [float("nan")] + [1e39] * 7}, "NaN or infinity"),
        ({"shape": [2, 4], "datatype": "FP32", "data": [[True, 0, 0, 0], [0.5] * 4]}, "true/false"),
    ],
)
def test_bad_inputs_are_refused_with_the_reason(z, message):
    header = {"inputs": [{"name": "z", **z}]}
    size = (z.get("parameters") or {}).get("binary_data_size")
    body, length = binary(header, np.zeros(size if isinstance(size, int) and size > 1 else 0, np.uint8))
    with pytest.raises(InvalidTensor, match=message):
        parse(body, length, inputs=[Z])


def test_labels_must_be_integers_within_int64_and_the_classes():
    def labels(values, datatype="INT64"):
        z = {"name": "z", "shape": [len(values), 4], "datatype": "FP32", "data": [0] * 4 * len(values)}
        return {"inputs": [z, {"name": "label", "shape": [len(values)], "datatype": datatype, "data": values}]}

    with pytest.raises(InvalidTensor, match="integers only"):
        parse(labels([1.5]))
    with pytest.raises(InvalidTensor, match="integers only"):
        parse(labels([True, 1]))  # numpy would read it as [1, 1]
    with pytest.raises(InvalidTensor, match="beyond INT64"):
        parse(labels([2**63], "UINT64"))
    with pytest.raises(InvalidTensor, match=r"holds 300, beyond INT8 \(-128 to 127\); send values within it"):
        parse(labels([1, 300], "INT8"))
    with pytest.raises(InvalidTensor, match=r"holds -1, beyond UINT8 \(0 to 255\)"):
        parse(labels([-1], "UINT8"))
    with pytest.raises(InvalidTensor, match="outside 0..2"):
        check_labels(parse(labels([3])).feeds, 3)
    with pytest.raises(InvalidTensor, match="outside 0..2"):
        check_labels(parse(labels([-1])).feeds, 3)
    check_labels(parse(labels([0, 2])).feeds, 3)


def test_inputs_and_outputs_must_be_the_declared_ones():
    z = {"name": "z", "shape": [1, 4], "datatype": "FP32", "data": [0] * 4}
    with pytest.raises(InvalidTensor, match="exactly \\['label', 'z'\\]"):
        parse({"inputs": [z]})
    with pytest.raises(InvalidTensor, match="exactly \\['z'\\]"):
        parse({"inputs": [z, z]}, inputs=[Z])
    with pytest.raises(InvalidTensor, match="different row counts"):
        parse({"inputs": [z, {"name": "label", "shape": [2], "datatype": "INT64", "data": [0, 1]}]})
    for outputs in ([{"name": "mu"}], [{"name": "image"}, {"name": "image"}], []):
        with pytest.raises(InvalidTensor, match="at most once"):
            parse({"inputs": [z], "outputs": outputs}, inputs=[Z])
    with pytest.raises(InvalidTensor, match="classification"):
        parse({"inputs": [z], "outputs": [{"name": "image", "parameters": {"classification": 3}}]}, inputs=[Z])
    with pytest.raises(InvalidTensor, match="not valid JSON of the protocol: 'inputs'"):
        parse({"inputs": "z"}, inputs=[Z])
    with pytest.raises(InvalidTensor, match="not valid JSON"):
        parse(b"{", inputs=[Z])


def test_json_bodies_are_counted_before_they_are_parsed():
    # 8 rows of 4 numbers and 8 labels, plus slack for the structure: a body with more commas cannot be valid.
    flood = b'{"inputs": [{"name": "z", "shape": [1, 4], "datatype": "FP32", "data": [' + b"0," * 5000 + b"0]}]}"
    with pytest.raises(PayloadTooLarge, match="VAE_MAX_LATENTS"):
        parse(flood)


def test_render_json_and_binary_responses():
    image = np.arange(8, dtype=np.float32).reshape(2, 1, 2, 2)
    request = parse(
        {
            "id": "7",
            "inputs": [{"name": "z", "shape": [2, 4], "datatype": "FP32", "data": [0] * 8}],
            "outputs": [{"name": "image"}, {"name": "logits", "parameters": {"binary_data": True}}],
        },
        inputs=[Z],
    )
    body, headers, media_type = render_response("m.decoder", "1", request, [image, image + 1])
    assert media_type == "application/octet-stream"
    n = int(headers[HEADER_LENGTH])
    header = json.loads(body[:n])
    oip_spec.inference_response(header)
    assert header["id"] == "7" and header["model_name"] == "m.decoder" and header["model_version"] == "1"
    json_out, binary_out = header["outputs"]
    assert json_out == {"name": "image", "datatype": "FP32", "shape": [2, 1, 2, 2], "data": image.ravel().tolist()}
    assert binary_out["parameters"] == {"binary_data_size": 32} and "data" not in binary_out
    np.testing.assert_array_equal(np.frombuffer(body[n:], np.float32).reshape(2, 1, 2, 2), image + 1)
    request = parse({"inputs": [{"name": "z", "shape": [2, 4], "datatype": "FP32", "data": [0] * 8}]}, inputs=[Z])
    body, headers, media_type = render_response("m.decoder", "1", request, [image, image])
    assert media_type == "application/json" and headers == {} and "id" not in json.loads(body)
