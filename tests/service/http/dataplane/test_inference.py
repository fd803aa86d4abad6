"""POST /encode, /decode, /reconstruct through httpx on the ASGI app (tiny models, real onnxruntime)."""

import base64
import struct
import zlib

import numpy as np
import pytest

from ....tolerance import assert_close
from ...payloads import b64, bad_exif_jpeg, jpeg, load_npy, load_png, npy, npy_header, png, png_chunk, ztxt_bomb_png

pytestmark = pytest.mark.anyio


async def test_encode_one_multipart_file(client):
    r = await client.post("/encode", files={"file": ("digit.png", png(), "image/png")})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == "tiny-vae" and body["latent_dim"] == 4
    assert np.array(body["mu"]).shape == (1, 4) and np.array(body["logvar"]).shape == (1, 4)
    assert body["z"] is None


async def test_encode_many_files_json_and_raw_bodies_agree(client):
    images = [png(seed=i) for i in range(3)]
    multipart = await client.post(
        "/encode", files=[("files", (f"{i}.png", d, "image/png")) for i, d in enumerate(images)]
    )
    as_json = await client.post("/encode", json={"images": [b64(d) for d in images]})
    raw = await client.post("/encode", content=images[1], headers={"content-type": "image/png"})
    data_url = await client.post("/encode", json={"images": ["data:image/png;base64," + b64(images[2])]})
    assert_close(multipart.json()["mu"], as_json.json()["mu"])
    assert_close(raw.json()["mu"][0], as_json.json()["mu"][1])  # one row alone vs in a batch of three
    assert_close(data_url.json()["mu"][0], as_json.json()["mu"][2])


async def test_encode_accepts_jpeg_and_any_size(client):
    r = await client.post("/encode", content=jpeg(size=40), headers={"content-type": "image/jpeg"})
    assert r.status_code == 200, r.text


async def test_encode_samples_are_seeded(client):
    url = "/encode?samples=3&seed=11"
    a = await client.post(url, content=png(), headers={"content-type": "image/png"})
    b = await client.post(url, content=png(), headers={"content-type": "image/png"})
    c = await client.post("/encode?samples=3", content=png(), headers={"content-type": "image/png"})
    assert np.array(a.json()["z"]).shape == (1, 3, 4)
    assert a.json()["z"] == b.json()["z"] and a.json()["seed"] == 11 and a.headers["x-seed"] == "11"
    assert isinstance(c.json()["seed"], int)  # a drawn seed is reported, so the result can be repeated


async def test_encode_npy_gives_mu_or_z(client):
    mu = await client.post("/encode?format=npy", content=png(), headers={"content-type": "image/png"})
    z = await client.post(
        "/encode?samples=2&seed=1", content=png(), headers={"content-type": "image/png", "accept": "application/x-npy"}
    )
    assert load_npy(mu.content).shape == (1, 4) and load_npy(z.content).shape == (1, 2, 4)


async def test_encode_conditioned_model_needs_and_uses_labels(client):
    files = {"file": ("a.png", png(), "image/png")}
    missing = await client.post("/encode?model=tiny-cvae", files=files)
    by_name = await client.post("/encode?model=tiny-cvae&label=two", files=files)
    by_index = await client.post("/encode?model=tiny-cvae", files=files, data={"label": "2"})
    in_json = await client.post("/encode?model=tiny-cvae", json={"images": [b64(png())], "labels": [2]})
    assert missing.status_code == 422 and "label" in missing.json()["detail"]
    assert by_name.json()["mu"] == by_index.json()["mu"] == in_json.json()["mu"]


async def test_encode_samples_from_an_ae_is_409(client):
    r = await client.post("/encode?model=tiny-ae&samples=2", content=png(), headers={"content-type": "image/png"})
    assert r.status_code == 409 and "deterministic autoencoder" in r.json()["detail"]


async def test_decode_json_and_npy_bodies(client):
    z = [[0.0, 0.5, -0.5, 1.0], [1.0, 0.0, 0.0, 0.0]]
    as_json = await client.post("/decode?format=npy", json={"z": z})
    as_npy = await client.post(
        "/decode?format=npy", content=npy(np.array(z, np.float32)), headers={"content-type": "application/x-npy"}
    )
    images = load_npy(as_json.content)
    assert images.shape == (2, 1, 8, 8) and images.dtype == np.float32
    np.testing.assert_array_equal(images, load_npy(as_npy.content))


async def test_decode_default_is_a_png_grid_and_json_has_base64(client):
    z = [[0.0] * 4] * 4
    grid = await client.post("/decode", json={"z": z})
    js = await client.post("/decode?format=json", json={"z": z})
    assert grid.headers["content-type"] == "image/png" and load_png(grid.content).shape == (22, 22)
    assert js.json()["shape"] == [4, 1, 8, 8] and len(js.json()["images"]) == 4


async def test_decode_conditional_labels(client):
    z = [[0.0] * 4, [0.0] * 4]
    r = await client.post("/decode?model=tiny-cvae&format=json", json={"z": z, "labels": ["zero", 1]})
    assert r.json()["labels"] == ["zero", "one"]
    assert (await client.post("/decode?model=tiny-cvae", json={"z": z})).status_code == 422
    assert (await client.post("/decode?label=1", json={"z": z})).status_code == 409  # tiny-vae is unconditional


async def test_reconstruct_reports_per_image_squared_error(client):
    files = [("f", (f"{i}.png", png(seed=i), "image/png")) for i in range(2)]
    r = await client.post("/reconstruct", files=files)
    body = r.json()
    assert r.status_code == 200 and len(body["reconstruction_error"]) == 2 and len(body["images"]) == 2
    recon = np.stack([load_png(base64.b64decode(s)) for s in body["images"]])
    originals = np.stack([load_png(png(seed=i)) for i in range(2)])
    errors = ((recon - originals) ** 2).sum(axis=(1, 2))
    np.testing.assert_allclose(body["reconstruction_error"], errors, rtol=0.02, atol=0.05)  # PNGs are 8-bit
    assert [float(e) for e in r.headers["x-reconstruction-error"].split(",")] == pytest.approx(
        body["reconstruction_error"], abs=1e-3
    )


async def test_reconstruct_png_shows_inputs_beside_reconstructions(client):
    r = await client.post("/reconstruct?format=png", content=png(), headers={"content-type": "image/png"})
    assert r.headers["content-type"] == "image/png" and load_png(r.content).shape == (12, 22)


async def test_decode_refuses_npy_headers_before_allocating(client):
    huge = npy_header("{'descr': '<f4', 'fortran_order': False, 'shape': (1000000000000, 4), }")
    bad = npy_header("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 4), []: 1}")
    objects = npy_header("{'descr': '|O', 'fortran_order': False, 'shape': (2, 4), }") + b"\0" * 64
    responses = [
        await client.post("/decode", content=body, headers={"content-type": "application/x-npy"})
        for body in (huge, bad, objects)
    ]
    assert [r.status_code for r in responses] == [413, 422, 422]
    assert "VAE_MAX_LATENTS" in responses[0].json()["detail"]
    assert "not a readable .npy" in responses[1].json()["detail"] and "dtype" in responses[2].json()["detail"]


async def test_decode_json_counts_values_before_parsing(client):
    long_vector = await client.post("/decode", json={"z": [[0.0] * 5_000]})
    assert long_vector.status_code == 413 and "VAE_MAX_LATENTS" in long_vector.json()["detail"]
    too_many = await client.post("/decode", json={"z": [[0.0] * 4] * 65})
    assert too_many.status_code == 413 and "65 latent vectors" in too_many.json()["detail"]


async def test_encode_checks_samples_x_images_before_decoding(client):
    corrupt = b"\x89PNG\r\n\x1a\n" + b"garbage"
    files = [("f", (f"{i}.png", corrupt, "image/png")) for i in range(8)]
    r = await client.post("/encode?samples=64", files=files)  # 512 draws > VAE_MAX_LATENTS=64, refused unread
    assert r.status_code == 422 and "samples x images is 512" in r.json()["detail"]


@pytest.mark.parametrize("label", ["²", "①", "1" * 5_000])
async def test_unicode_digit_labels_are_422_on_every_inference_route(client, label):
    files = {"file": ("a.png", png(), "image/png")}
    responses = [
        await client.post(f"/encode?model=tiny-cvae&label={label}", files=files),
        await client.post("/encode?model=tiny-cvae", files=files, data={"label": label}),
        await client.post("/reconstruct?model=tiny-cvae", json={"images": [b64(png())], "labels": [label]}),
        await client.post(f"/decode?model=tiny-cvae&label={label}", json={"z": [[0.0] * 4]}),
    ]
    for r in responses:
        assert r.status_code == 422, r.text
        assert "is not a class of model 'tiny-cvae'" in r.json()["detail"]


async def test_form_labels_are_counted_before_splitting(client):
    files = {"file": ("a.png", png(), "image/png")}
    r = await client.post("/encode?model=tiny-cvae", files=files, data={"label": ",".join(["1"] * 5_000)})
    assert r.status_code == 422 and "holds 5000 labels" in r.json()["detail"]


async def test_bad_exif_and_png_text_chunks(client):
    exif = await client.post("/encode", content=bad_exif_jpeg(), headers={"content-type": "image/jpeg"})
    assert exif.status_code == 422 and "the request body could not be decoded" in exif.json()["detail"]
    files = [("f", (f"{i}.png", ztxt_bomb_png(), "image/png")) for i in range(2)]
    text = await client.post("/encode", files=files)  # 120 MiB of text, never inflated
    assert text.status_code == 200 and len(text.json()["mu"]) == 2


async def test_a_flat_z_is_one_error_that_says_how_to_wrap_it(client):
    r = await client.post("/decode", json={"z": [0.0, 0.1, 0.2, 0.3]})
    assert r.status_code == 422
    assert r.json()["detail"] == (
        "body field 'z': every entry (4 of them): Input should be a valid array; 'z' is a list of lists: send "
        "[[...], [...]], one inner list per row"
    )


@pytest.mark.parametrize("route", ["/encode", "/reconstruct", "/score"])
async def test_an_empty_image_is_invalid_input_in_every_body_form(client, route):
    """No bytes is a missing image (422), not an image format the service does not read (415)."""
    raw = await client.post(route, content=b"", headers={"content-type": "image/png"})
    form = await client.post(route, files={"file": ("x.png", b"", "image/png")})
    as_json = await client.post(route, json={"images": [""]})
    for r in (raw, form, as_json):
        assert r.status_code == 422, r.text
        assert "empty (0 bytes)" in r.json()["detail"] and "send a PNG or JPEG image" in r.json()["detail"]


async def test_a_png_cut_short_at_a_row_is_refused_on_the_model_sized_path_too(client):
    """A complete zlib stream of fewer rows than the header declares: Pillow would leave the rest black."""
    header = struct.pack(">IIBBBBB", 8, 8, 8, 0, 0, 0, 0)  # tiny-vae's own size: the batch worker's fast path
    idat = zlib.compress(b"".join(b"\0" + bytes([255] * 8) for _ in range(5)))  # 5 of 8 rows
    data = b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")
    r = await client.post("/encode", content=data, headers={"content-type": "image/png"})
    assert r.status_code == 422 and "ends after 45 of the 72 bytes its header declares" in r.json()["detail"], r.text
