"""repository.py: model control in a running app: poll mode, and unloads that wait for requests in flight."""

import asyncio
import json
import os
import shutil

import pytest

from service.settings import Settings

from ..asgi import serve

pytestmark = pytest.mark.anyio


async def _until(check, seconds=10.0):
    for _ in range(int(seconds / 0.05)):
        if await check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not reached")


async def test_poll_mode_loads_new_folders_reloads_changed_ones_and_unloads_removed_ones(models_dir, tmp_path):
    spare = shutil.copytree(models_dir / "tiny-vae", tmp_path / "spare")
    manifest = json.loads((spare / "manifest.json").read_text())
    (spare / "manifest.json").write_text(json.dumps({**manifest, "name": "tiny-vae-2"}))
    async with serve(Settings(models_dir=models_dir, model_control="poll", model_poll_s=0.05)) as c:

        async def names():
            return sorted(m["name"] for m in (await c.get("/models")).json()["models"])

        assert await names() == ["tiny-ae", "tiny-cvae", "tiny-vae"]
        shutil.copytree(spare, models_dir / "second")
        await _until(lambda: _has(c, "tiny-vae-2"))
        (models_dir / "second" / "manifest.json").write_text(
            json.dumps({**manifest, "name": "tiny-vae-2", "version": "9"})
        )
        await _until(lambda: _version(c, "tiny-vae-2", "9"))
        shutil.rmtree(models_dir / "tiny-ae")
        await _until(lambda: _gone(c, "tiny-ae"))
        assert await names() == ["tiny-cvae", "tiny-vae", "tiny-vae-2"]
        # A folder that breaks is refused on the next poll, and nothing else changes.
        (models_dir / "second" / "manifest.json").write_text("{")
        await _until(lambda: _refused(c, "second"))
        assert await names() == ["tiny-cvae", "tiny-vae", "tiny-vae-2"]  # the last good version keeps serving
        r = await c.post("/v2/repository/models/tiny-vae/unload")
        assert r.status_code == 409 and "'poll'" in r.json()["error"]


async def _has(c, name):
    return (await c.get(f"/models/{name}")).status_code == 200


async def _gone(c, name):
    return (await c.get(f"/models/{name}")).status_code == 404


async def _version(c, name, version):
    r = await c.get(f"/models/{name}")
    return r.status_code == 200 and r.json()["version"] == version


async def _refused(c, folder):
    return any(r["folder"] == folder for r in (await c.get("/models")).json()["refused"])


async def test_an_unload_closes_the_graphs_only_after_the_requests_in_flight(zoo):
    async with serve(Settings(models_dir=zoo, model_control="explicit")) as c:
        app = c._transport.app
        model = app.state.registry.get("tiny-ae")
        closed = asyncio.Event()
        close = model.decoder.close

        async def recording_close():
            closed.set()
            await close()

        model.decoder.close = recording_close
        with app.state.in_flight.hold(model):
            assert (await c.post("/v2/repository/models/tiny-ae/unload")).status_code == 200
            assert (await c.get("/models/tiny-ae")).status_code == 404  # no new request reaches it
            await asyncio.sleep(0.2)
            assert not closed.is_set()  # the request in flight still has its graphs
        await asyncio.wait_for(closed.wait(), 5)
        await app.state.repository.close()
        info = [line for line in (await c.get("/metrics")).text.splitlines() if line.startswith("vae_model_info{")]
        assert not [line for line in info if 'model="tiny-ae"' in line]
        assert [line for line in info if 'model="tiny-vae"' in line]


async def test_the_configured_default_and_the_last_model_stay_loaded(zoo):
    async with serve(Settings(models_dir=zoo, model_control="explicit", default_model="tiny-ae")) as c:
        r = await c.post("/v2/repository/models/tiny-ae/unload")
        assert r.status_code == 409 and "VAE_DEFAULT_MODEL" in r.json()["error"]
        assert (await c.post("/v2/repository/models/tiny-vae/unload")).status_code == 200
        assert (await c.post("/v2/repository/models/tiny-cvae/unload")).status_code == 200
        assert (await c.get("/models")).json()["default_conditional"] is None
        r = await c.post("/v2/repository/models/tiny-vae/unload")
        assert r.status_code == 404


async def test_the_configured_conditional_default_stays_loaded(zoo):
    async with serve(Settings(models_dir=zoo, model_control="explicit", default_conditional_model="tiny-cvae")) as c:
        r = await c.post("/v2/repository/models/tiny-cvae/unload")
        assert r.status_code == 409 and "VAE_DEFAULT_CONDITIONAL_MODEL" in r.json()["error"]
        assert (await c.get("/models")).json()["default_conditional"] == "tiny-cvae"


async def test_the_last_model_stays_loaded(models_dir):
    for name in ("tiny-ae", "tiny-cvae"):
        shutil.rmtree(models_dir / name)
    async with serve(Settings(models_dir=models_dir, model_control="explicit")) as c:
        r = await c.post("/v2/repository/models/tiny-vae/unload")
        assert r.status_code == 409 and "last one loaded" in r.json()["error"]


async def test_a_folder_whose_name_is_not_utf8_is_listed_escaped_and_forgotten_once_removed(models_dir):
    async with serve(Settings(models_dir=models_dir, model_control="poll", model_poll_s=0.05)) as c:
        bad = os.fsencode(models_dir) + b"/latin-1-\xe9"
        os.mkdir(bad)

        async def listed():
            models, index = await c.get("/models"), await c.post("/v2/repository/index")
            assert models.status_code == 200 and index.status_code == 200, (models.text, index.text)
            unavailable = {e["name"] for e in index.json() if e["state"] == "UNAVAILABLE"}
            return {r["folder"] for r in models.json()["refused"]}, unavailable

        await _until(lambda: _equals(listed(), ({"latin-1-\\xe9"}, {"latin-1-\\xe9"})))
        os.rmdir(bad)
        await _until(lambda: _equals(listed(), (set(), set())))


async def _equals(awaitable, expected):
    return await awaitable == expected


async def test_poll_mode_serves_a_new_numbered_version_folder(models_dir, tmp_path):
    """Triton's layout: version 2 dropped in beside version 1 is served on the next poll (the newest, by default);
    removed, version 1 is served again."""
    flat = shutil.move(models_dir / "tiny-vae", tmp_path / "tiny-vae")
    manifest = json.loads((flat / "manifest.json").read_text())
    for version in ("1", "2"):
        (flat / "manifest.json").write_text(json.dumps({**manifest, "version": version}))
        shutil.copytree(flat, tmp_path / version)
    shutil.copytree(tmp_path / "1", models_dir / "tiny-vae" / "1")
    async with serve(Settings(models_dir=models_dir, model_control="poll", model_poll_s=0.05)) as c:
        assert await _version(c, "tiny-vae", "1")
        shutil.copytree(tmp_path / "2", models_dir / "tiny-vae" / "2")
        await _until(lambda: _version(c, "tiny-vae", "2"))
        assert await _refused(c, "tiny-vae/1")  # the policy serves the newest only
        shutil.rmtree(models_dir / "tiny-vae" / "2")  # a roll-back: version 1 serves again
        await _until(lambda: _version(c, "tiny-vae", "1"))
        assert not await _refused(c, "tiny-vae/1")
