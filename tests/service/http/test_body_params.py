"""A JSON body may carry the route's query parameters: the same answer as with them in the query, checked alike."""

import numpy as np
import pytest

from service.http.dataplane import ROUTES

from ..payloads import b64, load_npy, png

pytestmark = pytest.mark.anyio


async def test_parameters_in_the_body_answer_as_in_the_query(client):
    images = [b64(png(seed=1)), b64(png(seed=2))]
    in_query = await client.post("/encode?samples=2&seed=3&format=npy", json={"images": images})
    in_body = await client.post("/encode", json={"images": images, "samples": 2, "seed": 3, "format": "npy"})
    assert in_body.status_code == 200 and in_body.headers["content-type"] == "application/x-npy"
    np.testing.assert_array_equal(load_npy(in_body.content), load_npy(in_query.content))
    z = [[0.1, 0.2, 0.3, 0.4]]
    labelled = await client.post("/decode", json={"z": z, "model": "tiny-cvae", "label": [1], "format": "npy"})
    same = await client.post("/decode?model=tiny-cvae&label=one&format=npy", json={"z": z})
    np.testing.assert_array_equal(load_npy(labelled.content), load_npy(same.content))
    scored = await client.post("/score", json={"images": images, "samples": 4, "seed": 1})
    assert scored.json()["samples"] == 4 and scored.json()["seed"] == 1


@pytest.mark.parametrize(
    "body, words",
    [
        ({"seed": 3}, "'seed' is given in both the query and the JSON body; give it once"),
        ({"samples": "2"}, "body field 'samples' must be an integer"),
        ({"samples": 100000}, "parameter 'samples' is 100000; the limit is"),
        ({"samples": -1}, "parameter 'samples': Input should be greater than or equal to"),
        ({"sample": 2}, "body field 'sample'"),
        ({"format": "gif"}, "format"),
    ],
)
async def test_parameters_in_the_body_are_checked_as_in_the_query(client, body, words):
    r = await client.post("/encode?seed=1", json={"images": [b64(png(seed=1))], **body})
    assert r.status_code == 422 and words in r.json()["detail"], r.text
    assert "query parameter" not in r.json()["detail"]  # it was given in the body


@pytest.mark.parametrize("number", [b"1e999", b"NaN", b"Infinity"])
async def test_a_body_with_a_number_json_does_not_have_is_refused_as_such(client, number):
    """Not as an unknown field 'range': the parameter could not be taken out of a body that is not JSON."""
    body = b'{"images": ["' + b64(png(seed=1)).encode() + b'"], "range": ' + number + b"}"
    r = await client.post("/traverse", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 422 and "JSON body could not be read" in r.json()["detail"], r.text


async def test_no_route_has_a_body_field_and_a_query_parameter_of_one_name():
    for route in ROUTES:
        if route.json_body:
            schema = (route.body or {})["requestBody"]["content"]["application/json"]["schema"]
            clash = set(schema.get("properties", {})) & route.query.names()
            assert not clash, f"{route.method} {route.path}: {clash}"
