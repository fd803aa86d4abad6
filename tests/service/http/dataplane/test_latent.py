"""POST /interpolate, /attribute, /edit and GET/POST /traverse through httpx on the ASGI app (tiny models)."""

import json

import numpy as np
import pytest

from service.settings import Settings

from ...asgi import serve
from ...payloads import b64, load_npy, load_png, npy, png

pytestmark = pytest.mark.anyio
D, SIZE = 4, 8  # the tiny models' latent_dim and image size


def files(*seeds: int, field: str = "file") -> list:
    return [(field, (f"{seed}.png", png(seed=seed), "image/png")) for seed in seeds]


async def mu(client, *seeds: int, query: str = "") -> np.ndarray:
    r = await client.post(f"/encode?format=npy{query}", files=files(*seeds))
    assert r.status_code == 200, r.text
    return load_npy(r.content)


async def reconstructions(client, *seeds: int, query: str = "") -> np.ndarray:
    r = await client.post(f"/reconstruct?format=npy{query}", files=files(*seeds))
    assert r.status_code == 200, r.text
    return load_npy(r.content)


async def decoded(client, z: np.ndarray, query: str = "") -> np.ndarray:
    r = await client.post(f"/decode?format=npy{query}", json={"z": z.tolist()})
    assert r.status_code == 200, r.text
    return load_npy(r.content)


def problem(r, status: int, *words: str) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    body = r.json()
    assert all(word in body["detail"] for word in words), body["detail"]
    return body


# --- /interpolate -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["linear", "spherical"])
async def test_interpolating_two_images_ends_at_their_reconstructions(client, path):
    r = await client.post(f"/interpolate?steps=6&path={path}&format=npy", files=files(1, 2))
    images = load_npy(r.content)
    assert images.shape == (6, 1, SIZE, SIZE)
    np.testing.assert_allclose(images[[0, -1]], await reconstructions(client, 1, 2), atol=1e-5)
    assert np.abs(np.diff(images, axis=0)).max() > 0  # the middle is not a copy of an end


async def test_interpolating_latents_decodes_the_path(client):
    z = np.array([[1.0, 0.0, 0.0, 0.0], [0.0, 2.0, 0.0, 0.0]], np.float32)
    r = await client.post("/interpolate?steps=3&format=json", json={"z": z.tolist()})
    body = r.json()
    assert body["path"] == "linear" and body["shape"] == [3, 1, SIZE, SIZE]
    np.testing.assert_allclose(body["z"], [[1, 0, 0, 0], [0.5, 1, 0, 0], [0, 2, 0, 0]], atol=1e-6)
    as_npy = await client.post(
        "/interpolate?steps=3&format=npy", content=npy(z), headers={"content-type": "application/x-npy"}
    )
    np.testing.assert_allclose(load_npy(as_npy.content), await decoded(client, np.array(body["z"])), atol=1e-6)


async def test_spherical_and_linear_paths_share_the_ends_only(client):
    z = {"z": [[2.0, 0.0, 0.0, 0.0], [0.0, 2.0, 0.0, 0.0]]}
    linear = (await client.post("/interpolate?steps=5&format=json", json=z)).json()["z"]
    spherical = (await client.post("/interpolate?steps=5&path=spherical&format=json", json=z)).json()["z"]
    assert linear[0] == spherical[0] and linear[-1] == spherical[-1]
    np.testing.assert_allclose(np.linalg.norm(spherical, axis=1), 2.0, rtol=1e-5)  # on the sphere all the way
    assert np.linalg.norm(linear[2]) == pytest.approx(np.sqrt(2.0))  # the chord cuts inside it


async def test_interpolation_png_is_one_row_and_json_images_agree(client):
    multipart = await client.post("/interpolate?steps=4", files=files(1, 2))
    as_json = await client.post("/interpolate?steps=4", json={"images": [b64(png(seed=1)), b64(png(seed=2))]})
    assert multipart.headers["content-type"] == "image/png"
    assert load_png(multipart.content).shape == (2 + SIZE + 2, 2 + 4 * (SIZE + 2))
    assert multipart.content == as_json.content


async def test_a_conditional_model_interpolates_under_one_label(client):
    one = await client.post("/interpolate?model=tiny-cvae&label=two&format=json&steps=3", files=files(1, 2))
    same = await client.post(
        "/interpolate?model=tiny-cvae&format=json&steps=3", files=files(1, 2), data={"label": "2,2"}
    )
    assert one.json()["labels"] == ["two"] * 3 and one.json()["images"] == same.json()["images"]
    r = await client.post("/interpolate?model=tiny-cvae&label=one&label=two", files=files(1, 2))
    problem(r, 409, "class index", "one label for both ends")
    problem(await client.post("/interpolate?model=tiny-cvae", files=files(1, 2)), 422, "label")


@pytest.mark.parametrize(
    "request_kwargs, status, words",
    [
        ({"files": files(1)}, 422, ["got 1 images", "two"]),
        ({"files": files(1, 2, 3)}, 422, ["got 3 images"]),
        ({"json": {"z": [[0.0] * D]}}, 422, ["got 1 latent vectors"]),
        ({"json": {"z": [[0.0] * (D + 1)] * 2}}, 422, ["latent_dim is 4"]),
        ({"json": {"z": [[0.0] * D] * 2, "images": [b64(png())] * 2}}, 422, ["not both"]),
        ({"json": {}}, 422, ["'images'", "'z'", "the body holds neither"]),
        ({"json": {"z": [[0.0] * D] * 2, "labels": [1]}}, 409, ["unconditional"]),
        ({"content": b"GIF89a", "headers": {"content-type": "image/gif"}}, 415, ["Content-Type"]),
    ],
)
async def test_interpolate_refuses_bad_input(client, request_kwargs, status, words):
    problem(await client.post("/interpolate", **request_kwargs), status, *words)


async def test_a_spherical_path_that_overflows_is_refused_not_decoded(client):
    ends = [[3e38] * D, [3e38, -3e38] * (D // 2)]
    r = await client.post("/interpolate?path=spherical&format=json", json={"z": ends})
    problem(r, 422, "spherical path", "overflows float32")


async def test_interpolate_steps_are_capped_before_any_work(client, settings):
    r = await client.post(f"/interpolate?steps={settings.max_steps + 1}", files=files(1, 2))
    problem(r, 422, "'steps'", "VAE_MAX_STEPS")
    problem(await client.post("/interpolate?steps=1", files=files(1, 2)), 422, "steps")
    problem(await client.post("/interpolate?stepz=3", files=files(1, 2)), 422, "stepz")


# --- /attribute ---------------------------------------------------------------------------------------------


async def test_attribute_vector_is_the_difference_of_mean_encodings(client):
    r = await client.post("/attribute", files=files(1, 2, field="with") + files(3, 4, 5, field="without"))
    body = r.json()
    expected = (await mu(client, 1, 2)).mean(0) - (await mu(client, 3, 4, 5)).mean(0)
    assert len(body["vector"]) == D and body["n_with"] == 2 and body["n_without"] == 3
    np.testing.assert_allclose(body["vector"], expected, atol=1e-5)
    assert body["norm"] == pytest.approx(np.linalg.norm(expected), rel=1e-5)
    as_json = await client.post(
        "/attribute?format=npy", json={"with": [b64(png(seed=1)), b64(png(seed=2))], "without": [b64(png(seed=3))]}
    )
    expected_json = (await mu(client, 1, 2)).mean(0) - (await mu(client, 3)).mean(0)
    assert load_npy(as_json.content).shape == (D,)
    np.testing.assert_allclose(load_npy(as_json.content), expected_json, atol=1e-5)


@pytest.mark.parametrize(
    "request_kwargs, status, words",
    [
        ({"files": files(1, field="with")}, 422, ["both sets", "0 'without'"]),
        ({"files": files(1, field="with") + files(2, field="without") + files(3)}, 422, ["'with' and 'without'"]),
        ({"json": {"with": [b64(png())]}}, 422, ["without"]),
        ({"json": {"with": [b64(png())] * 5, "without": [b64(png())] * 4}}, 413, ["VAE_MAX_IMAGES"]),
        ({"files": files(*range(5), field="with") + files(*range(4), field="without")}, 413, ["VAE_MAX_IMAGES"]),
        ({"content": png(), "headers": {"content-type": "image/png"}}, 415, ["'with' and 'without'"]),
    ],
)
async def test_attribute_refuses_bad_input(client, request_kwargs, status, words):
    problem(await client.post("/attribute", **request_kwargs), status, *words)


# --- /edit --------------------------------------------------------------------------------------------------


async def test_edit_at_strength_zero_is_the_reconstruction(client):
    vector = [1.0, -1.0, 0.5, 2.0]
    body = {"images": [b64(png(seed=1)), b64(png(seed=2))], "vector": vector}
    r = await client.post("/edit?format=npy", json=body)
    images = load_npy(r.content)
    assert images.shape == (2, 5, 1, SIZE, SIZE)  # two images x the five default strengths
    np.testing.assert_allclose(images[:, 0], await reconstructions(client, 1, 2), atol=1e-5)
    moved = (await mu(client, 1, 2))[:, None, :] + np.array([0, 0.5, 1, 1.5, 2])[None, :, None] * np.array(vector)
    np.testing.assert_allclose(images, (await decoded(client, moved.reshape(-1, D))).reshape(images.shape), atol=1e-5)


async def test_edit_with_the_sets_equals_edit_with_their_attribute_vector(client):
    sets = files(3, 4, field="with") + files(5, field="without")
    vector = (await client.post("/attribute", files=sets)).json()["vector"]
    with_sets = await client.post("/edit?strengths=0,1,3&format=npy", files=files(1) + sets)
    with_vector = await client.post(
        "/edit?strengths=0&strengths=1,3&format=npy", json={"images": [b64(png(seed=1))], "vector": vector}
    )
    assert load_npy(with_sets.content).shape == (1, 3, 1, SIZE, SIZE)
    np.testing.assert_allclose(load_npy(with_sets.content), load_npy(with_vector.content), atol=1e-5)


async def test_edit_takes_its_strengths_in_the_json_body_too(client):
    body = {"images": [b64(png(seed=1))], "vector": [1.0, 0.0, 0.0, 0.0]}
    in_query = await client.post("/edit?strengths=0,1,3&format=npy", json=body)
    in_body = await client.post("/edit?format=npy", json={**body, "strengths": [0, 1, 3]})
    assert load_npy(in_body.content).shape == (1, 3, 1, SIZE, SIZE)
    np.testing.assert_array_equal(load_npy(in_body.content), load_npy(in_query.content))
    both = await client.post("/edit?strengths=1", json={**body, "strengths": [2]})
    assert both.status_code == 422 and "both the query and the JSON body" in both.json()["detail"]


async def test_edit_png_has_one_row_per_image(client):
    r = await client.post(
        "/edit?strengths=0,1", json={"images": [b64(png(seed=s)) for s in range(3)], "vector": [0.0] * D}
    )
    assert r.headers["content-type"] == "image/png"
    assert load_png(r.content).shape == (2 + 3 * (SIZE + 2), 2 + 2 * (SIZE + 2))


async def test_edit_on_a_conditional_model_keeps_each_images_label(client):
    body = {"images": [b64(png(seed=1)), b64(png(seed=2))], "vector": [0.0] * D, "labels": ["one", "two"]}
    r = await client.post("/edit?model=tiny-cvae&strengths=0,1&format=json", json=body)
    assert r.json()["labels"] == ["one", "one", "two", "two"]
    recon = await reconstructions(client, 2, query="&model=tiny-cvae&label=two")
    edited = await client.post("/edit?model=tiny-cvae&strengths=0&format=npy", json=body)
    np.testing.assert_allclose(load_npy(edited.content)[1, 0], recon[0], atol=1e-5)


@pytest.mark.parametrize(
    "query, body, status, words",
    [
        ("", {"images": [b64(png())], "vector": [0.0] * (D + 1)}, 422, ["5 numbers", "latent_dim is 4"]),
        ("", {"images": [b64(b"\x89PNG\r\n\x1a\nbroken")], "vector": [0.0] * 3}, 422, ["'vector'"]),  # before decoding
        ("", {"images": [b64(png())]}, 422, ["no attribute vector"]),
        ("", {"vector": [0.0] * D}, 422, ["images"]),
        ("", {"images": [b64(png())], "vector": [0.0] * D, "with": [b64(png())]}, 422, ["not both"]),
        ("?strengths=a,b", {"images": [b64(png())], "vector": [0.0] * D}, 422, ["'strengths'", "numbers"]),
        ("?strengths=nan", {"images": [b64(png())], "vector": [0.0] * D}, 422, ["finite"]),
        ("?strengths=1e30", {"images": [b64(png())], "vector": [1e30] * D}, 422, ["overflows"]),
        ("?label=1", {"images": [b64(png())], "vector": [0.0] * D}, 409, ["unconditional"]),
    ],
)
async def test_edit_refuses_bad_input(client, query, body, status, words):
    problem(await client.post(f"/edit{query}", json=body), status, *words)


async def test_edit_counts_images_times_strengths_before_decoding(client, settings):
    strengths = ",".join(["1"] * 9)  # 8 images x 9 strengths = 72 > VAE_MAX_N (64)
    r = await client.post(f"/edit?strengths={strengths}", json={"images": [b64(png())] * 8, "vector": [0.0] * D})
    problem(r, 422, "images x strengths", "VAE_MAX_N")
    many = ",".join(["1"] * (settings.max_steps + 1))
    problem(
        await client.post(f"/edit?strengths={many}", json={"images": [b64(png())], "vector": [0.0] * D}),
        422,
        "VAE_MAX_STEPS",
    )
    problem(await client.post("/edit", content=png(), headers={"content-type": "image/png"}), 415, "vector")


# --- /traverse ----------------------------------------------------------------------------------------------


async def test_traverse_gives_dims_x_steps_images_around_the_prior_mean(client):
    r = await client.get("/traverse?format=npy")
    assert load_npy(r.content).shape == (D, 7, 1, SIZE, SIZE)  # latent_dim < 8: every dimension, 7 steps
    r = await client.get("/traverse?dims=2,0&steps=3&range=2&format=json")
    body = r.json()
    assert body["shape"] == [6, 1, SIZE, SIZE] and body["values"] == [-2.0, 0.0, 2.0]
    assert body["ranked_by"] == "request" and [row["dim"] for row in body["rows"]] == [2, 0]
    z = np.zeros((6, D), np.float32)
    z[[0, 1, 2], 2] = z[[3, 4, 5], 0] = [-2.0, 0.0, 2.0]
    expected = await decoded(client, z)
    grid = await client.get("/traverse?dims=2,0&steps=3&range=2&format=npy")
    np.testing.assert_allclose(load_npy(grid.content).reshape(6, 1, SIZE, SIZE), expected, atol=1e-6)
    png_grid = await client.get("/traverse?dims=2,0&steps=3&range=2")
    assert load_png(png_grid.content).shape == (2 + 2 * (SIZE + 2), 2 + 3 * (SIZE + 2))


async def test_traverse_around_an_image_centres_on_its_reconstruction(client):
    r = await client.post("/traverse?model=tiny-ae&steps=5&format=npy", files=files(7))
    grid = load_npy(r.content)
    assert grid.shape == (D, 5, 1, SIZE, SIZE)
    recon = await reconstructions(client, 7, query="&model=tiny-ae")
    for row in grid:
        np.testing.assert_allclose(row[2], recon[0], atol=1e-5)  # the middle column is the base itself


async def test_traverse_ranks_dimensions_by_the_manifests_kl(models_dir):
    manifest_path = models_dir / "tiny-vae" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["metrics"]["kl_per_dim"] = [0.5, 0.01, 3.0, 1.0]
    manifest_path.write_text(json.dumps(manifest))
    async with serve(Settings(models_dir=models_dir)) as client:
        body = (await client.get("/traverse?model=tiny-vae&format=json&steps=2")).json()
        ae = (await client.post("/traverse?model=tiny-ae&format=json&steps=2", files=files(1))).json()
    assert body["ranked_by"] == "kl_per_dim"
    assert body["rows"] == [
        {"dim": 2, "kl_per_dim": 3.0},
        {"dim": 3, "kl_per_dim": 1.0},
        {"dim": 0, "kl_per_dim": 0.5},
        {"dim": 1, "kl_per_dim": 0.01},
    ]
    assert ae["ranked_by"] == "index" and [row["dim"] for row in ae["rows"]] == [0, 1, 2, 3]  # no figure: in order


@pytest.mark.parametrize(
    "url, status, words",
    [
        ("/traverse?model=tiny-ae", 409, ["no prior", "POST /traverse"]),
        ("/traverse?dims=4", 422, ["'dims'", "0..3"]),
        ("/traverse?dims=1,1", 422, ["twice"]),
        ("/traverse?dims=x", 422, ["'dims'"]),
        ("/traverse?steps=17", 422, ["dims x steps", "VAE_MAX_N"]),  # 4 dims x 17 > 64
        ("/traverse?steps=65", 422, ["VAE_MAX_STEPS"]),
        ("/traverse?range=21", 422, ["'range'", "VAE_MAX_RANGE"]),
        ("/traverse?range=0", 422, ["range"]),
        ("/traverse?label=1", 409, ["unconditional"]),
        ("/traverse?model=tiny-cvae", 422, ["label"]),
    ],
)
async def test_traverse_refuses_bad_queries(client, url, status, words):
    problem(await client.get(url), status, *words)


async def test_traverse_takes_one_base_image(client):
    problem(await client.post("/traverse", files=files(1, 2)), 422, "one base")
    r = await client.post("/traverse?model=tiny-cvae&label=one&format=json&steps=2", files=files(1))
    assert r.status_code == 200 and r.json()["labels"] == ["one"]


async def test_the_openapi_document_states_the_step_and_range_limits(client, settings):
    document = (await client.get("/openapi.json")).json()

    def query(path: str, method: str, name: str) -> dict:
        parameters = document["paths"][path][method]["parameters"]
        return next(p for p in parameters if p["name"] == name)["schema"]

    assert query("/interpolate", "post", "steps")["maximum"] == settings.max_steps
    assert query("/traverse", "get", "steps")["maximum"] == settings.max_steps
    assert query("/traverse", "post", "range")["maximum"] == settings.max_range
