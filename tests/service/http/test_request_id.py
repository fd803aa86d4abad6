"""X-Request-ID: taken from the request or made, returned on both planes, and in the problem details."""

import re

import pytest

pytestmark = pytest.mark.anyio


async def test_a_request_id_sent_is_returned_and_one_is_made_when_none_is(client):
    r = await client.get("/sample", params={"n": 1, "seed": 1}, headers={"X-Request-ID": "trace-42/a"})
    assert r.status_code == 200 and r.headers["x-request-id"] == "trace-42/a"
    made = {(await client.get("/health")).headers["x-request-id"] for _ in range(3)}
    assert len(made) == 3 and all(re.fullmatch(r"[0-9a-f]{16}", rid) for rid in made)


@pytest.mark.parametrize("sent", ["has space", "x" * 129, "caf\u00e9"])
async def test_an_unusable_request_id_is_replaced(client, sent):
    r = await client.get("/models", headers={"X-Request-ID": sent.encode("utf-8")})
    assert r.status_code == 200 and re.fullmatch(r"[0-9a-f]{16}", r.headers["x-request-id"])


async def test_problem_details_carry_the_request_id_on_both_planes(client):
    data = await client.get("/sample", params={"n": 0}, headers={"X-Request-ID": "req-1"})
    control = await client.get("/models/nope", headers={"X-Request-ID": "req-2"})
    unknown = await client.get("/nowhere", headers={"X-Request-ID": "req-3"})
    for r, rid in ((data, "req-1"), (control, "req-2"), (unknown, "req-3")):
        assert r.status_code >= 400 and r.headers["x-request-id"] == rid
        assert r.json()["request_id"] == rid, r.text
