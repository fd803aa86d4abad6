"""Model versions: several folders of one model name, served side by side as the version policy says, addressed
by `version=` on the service's routes and by /v2/models/{name}/versions/{v} on the Open Inference Protocol."""

import json
import shutil

import numpy as np
import pytest

from service.models.versions import newest_first, served_versions
from service.settings import Settings
from tests.tiny_models import build_model

from ..asgi import serve
from ..payloads import load_npy, npy, png

pytestmark = pytest.mark.anyio
NPY = {"content-type": "application/x-npy"}


def test_versions_order_as_people_read_them_and_the_policy_picks():
    assert newest_first(["1", "10", "2", "1.9", "1.10"]) == ["10", "2", "1.10", "1.9", "1"]
    assert served_versions(["1", "2", "10"], "latest:1") == {"10"}
    assert served_versions(["1", "2", "10"], "latest:2") == {"10", "2"}
    assert served_versions(["1", "2", "10"], "all") == {"1", "2", "10"}
    assert served_versions(["1", "2", "10"], "specific:1,3") == {"1"}


def _second_version(models_dir, version="2"):
    """tiny-vae (made version 1) again, with other weights and a newer version, in a folder of its own."""
    folder = models_dir / "tiny-vae-next"
    build_model(folder, name="tiny-vae", seed=9)
    for each, number in ((models_dir / "tiny-vae", "1"), (folder, version)):
        manifest = json.loads((each / "manifest.json").read_text())
        (each / "manifest.json").write_text(json.dumps({**manifest, "version": number}))


async def _decode(c, query):
    r = await c.post(f"/decode?format=npy&{query}", content=npy(np.ones((2, 4), np.float32)), headers=NPY)
    return r, (load_npy(r.content) if r.status_code == 200 else None)


async def test_two_versions_are_served_side_by_side_and_addressed_by_version(models_dir):
    _second_version(models_dir)
    async with serve(Settings(models_dir=models_dir, version_policy="all")) as c:
        listed = {m["name"]: m for m in (await c.get("/models")).json()["models"]}
        assert listed["tiny-vae"]["versions"] == ["2", "1"] and listed["tiny-vae"]["version"] == "2"
        newest, a = await _decode(c, "model=tiny-vae")
        two, b = await _decode(c, "model=tiny-vae&version=2")
        one, old = await _decode(c, "model=tiny-vae&version=1")
        assert newest.headers["x-model-version"] == "2" and one.headers["x-model-version"] == "1"
        np.testing.assert_array_equal(a, b)
        assert not np.array_equal(a, old)  # other weights
        missing, _ = await _decode(c, "model=tiny-vae&version=7")
        assert missing.status_code == 404 and "served versions: ['2', '1']" in missing.json()["detail"]
        assert (await c.get("/models/tiny-vae?version=1")).json()["version"] == "1"

        # The Open Inference Protocol: the same versions, and the bare name as the repository index lists it.
        body = {"inputs": [{"name": "z", "shape": [2, 4], "datatype": "FP32", "data": [1.0] * 8}]}
        v1 = await c.post("/v2/models/tiny-vae.decoder/versions/1/infer", json=body)
        assert v1.status_code == 200 and v1.json()["model_version"] == "1"
        np.testing.assert_allclose(np.asarray(v1.json()["outputs"][0]["data"]).reshape(old.shape), old, rtol=1e-6)
        assert (await c.get("/v2/models/tiny-vae")).json()["versions"] == ["2", "1"]
        index = (await c.post("/v2/repository/index")).json()
        assert sorted((e["name"], e["version"]) for e in index if e["name"] == "tiny-vae") == [
            ("tiny-vae", "1"),
            ("tiny-vae", "2"),
        ]
        image = np.zeros((1, 1, 8, 8), np.float32)
        whole = {
            "inputs": [{"name": "image", "shape": [1, 1, 8, 8], "datatype": "FP32", "data": image.ravel().tolist()}]
        }
        r = await c.post("/v2/models/tiny-vae/versions/1/infer", json=whole)
        assert r.status_code == 200, r.text
        (out,) = r.json()["outputs"]
        assert out["name"] == "image" and out["shape"] == [1, 1, 8, 8]
        recon = await c.post(
            "/reconstruct?model=tiny-vae&version=1&format=npy",
            content=png(np.zeros((8, 8), np.uint8)),
            headers={"content-type": "image/png"},
        )
        np.testing.assert_allclose(np.asarray(out["data"]).reshape(1, 1, 8, 8), load_npy(recon.content), atol=1e-6)


async def test_the_default_policy_serves_the_newest_and_says_why_the_other_is_not(models_dir):
    _second_version(models_dir)
    async with serve(Settings(models_dir=models_dir)) as c:
        body = (await c.get("/models")).json()
        assert {m["name"]: m["versions"] for m in body["models"]}["tiny-vae"] == ["2"]
        (skipped,) = [r for r in body["refused"] if r["folder"] == "tiny-vae"]
        assert "VAE_VERSION_POLICY is latest:1" in skipped["reason"] and "served: ['2']" in skipped["reason"]
        gone, _ = await _decode(c, "model=tiny-vae&version=1")
        assert gone.status_code == 404


async def test_a_specific_version_and_a_same_version_copy(models_dir):
    _second_version(models_dir)
    async with serve(Settings(models_dir=models_dir, version_policy="specific:1")) as c:
        _, listed = await _decode(c, "model=tiny-vae")
        one, pinned = await _decode(c, "model=tiny-vae&version=1")
        np.testing.assert_array_equal(listed, pinned)
        assert one.headers["x-model-version"] == "1"
    _second_version(models_dir, version="1")  # a copy with the same name and version: which is meant is unclear
    async with serve(Settings(models_dir=models_dir, version_policy="all")) as c:
        refused = {r["folder"]: r["reason"] for r in (await c.get("/models")).json()["refused"]}
        assert "give the manifest another 'version' to serve both" in refused["tiny-vae-next"]


async def test_each_version_counts_apart_in_the_statistics_and_the_metrics(models_dir):
    """During a roll-out the new version's traffic and latency must be read apart from the old one's."""
    _second_version(models_dir)
    async with serve(Settings(models_dir=models_dir, version_policy="all")) as c:
        for query in ("version=1", "version=1", "version=2"):
            ok, _ = await _decode(c, f"model=tiny-vae&{query}")
            assert ok.status_code == 200
        counts = {}
        for version in ("1", "2"):
            (decoder,) = (await c.get(f"/v2/models/tiny-vae.decoder/versions/{version}/stats")).json()["model_stats"]
            assert decoder["version"] == version
            counts[version] = decoder["inference_count"]
        assert counts == {"1": 2, "2": 1}
        every = (await c.get("/v2/models/stats")).json()["model_stats"]
        listed = {(m["name"], m["version"]): m["inference_count"] for m in every if m["name"] == "tiny-vae.decoder"}
        assert listed == {("tiny-vae.decoder", "1"): 2, ("tiny-vae.decoder", "2"): 1}
        metrics = (await c.get("/metrics")).text
        for version, calls in counts.items():
            assert f'vae_images_produced_total{{model="tiny-vae",version="{version}"}} {2.0 * calls}' in metrics
            succeeded = f'graph="decoder",model="tiny-vae",outcome="success",version="{version}"'
            assert f"vae_graph_requests_total{{{succeeded}}} {float(calls)}" in metrics


def _numbered(models_dir, versions=("1", "2")):
    """tiny-vae in Triton's layout: a folder named after the model holding one numbered folder per version."""
    shutil.rmtree(models_dir / "tiny-vae")
    for seed, version in enumerate(versions):
        folder = models_dir / "tiny-vae" / version
        build_model(folder, name="tiny-vae", seed=seed)
        manifest = json.loads((folder / "manifest.json").read_text())
        (folder / "manifest.json").write_text(json.dumps({**manifest, "version": version}))


async def test_tritons_numbered_layout_serves_each_numbered_folder_as_a_version(models_dir):
    _numbered(models_dir)
    async with serve(Settings(models_dir=models_dir, version_policy="all")) as c:
        listed = {m["name"]: m for m in (await c.get("/models")).json()["models"]}
        assert listed["tiny-vae"]["versions"] == ["2", "1"]
        one, a = await _decode(c, "model=tiny-vae&version=1")
        two, b = await _decode(c, "model=tiny-vae&version=2")
        assert one.headers["x-model-version"] == "1" and two.headers["x-model-version"] == "2"
        assert not np.array_equal(a, b)  # other weights
        index = (await c.post("/v2/repository/index")).json()
        assert sorted((e["name"], e["version"], e["state"]) for e in index if e["name"] == "tiny-vae") == [
            ("tiny-vae", "1", "READY"),
            ("tiny-vae", "2", "READY"),
        ]
    async with serve(Settings(models_dir=models_dir)) as c:  # latest:1
        body = (await c.get("/models")).json()
        assert {m["name"]: m["versions"] for m in body["models"]}["tiny-vae"] == ["2"]
        (skipped,) = [r for r in body["refused"] if r["folder"] == "tiny-vae/1"]
        assert "VAE_VERSION_POLICY is latest:1" in skipped["reason"]


async def test_a_numbered_folder_whose_manifest_disagrees_with_its_path_is_refused(models_dir):
    _numbered(models_dir, versions=("1",))
    shutil.copytree(models_dir / "tiny-vae" / "1", models_dir / "tiny-vae" / "3")  # its manifest says version 1
    async with serve(Settings(models_dir=models_dir, version_policy="all")) as c:
        refused = {r["folder"]: r["reason"] for r in (await c.get("/models")).json()["refused"]}
        assert "field 'version' is '1'" in refused["tiny-vae/3"] and "set 'version' to '3'" in refused["tiny-vae/3"]
        assert {m["name"]: m["versions"] for m in (await c.get("/models")).json()["models"]}["tiny-vae"] == ["1"]


async def test_load_and_unload_of_a_numbered_model_take_every_version(models_dir):
    _numbered(models_dir)
    async with serve(Settings(models_dir=models_dir, version_policy="all", model_control="explicit")) as c:
        assert (await c.post("/v2/repository/models/tiny-vae/unload")).status_code == 200
        assert (await c.get("/models/tiny-vae")).status_code == 404
        index = {(e["name"], e["state"], e.get("reason")) for e in (await c.post("/v2/repository/index")).json()}
        assert {("tiny-vae/1", "UNAVAILABLE", "unloaded"), ("tiny-vae/2", "UNAVAILABLE", "unloaded")} <= index
        r = await c.post("/v2/repository/models/tiny-vae/load")
        assert r.status_code == 200, r.text
        assert {m["name"]: m["versions"] for m in (await c.get("/models")).json()["models"]}["tiny-vae"] == ["2", "1"]


async def test_a_numbered_folder_with_a_wrong_version_does_not_push_out_the_right_one(models_dir):
    """The version policy ranks what the paths say: a manifest claiming a newer version in the wrong folder is refused
    and leaves the newest real version served."""
    _numbered(models_dir, versions=("1",))
    stray = shutil.copytree(models_dir / "tiny-vae" / "1", models_dir / "tiny-vae" / "3")
    manifest = json.loads((stray / "manifest.json").read_text())
    (stray / "manifest.json").write_text(json.dumps({**manifest, "version": "9"}))
    async with serve(Settings(models_dir=models_dir)) as c:  # latest:1
        body = (await c.get("/models")).json()
        assert {m["name"]: m["versions"] for m in body["models"]}["tiny-vae"] == ["1"]
        refused = {r["folder"]: r["reason"] for r in body["refused"]}
        assert "set 'version' to '3'" in refused["tiny-vae/3"] and "tiny-vae/1" not in refused
