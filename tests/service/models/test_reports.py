"""reports.py and GET /models/{name}/reports/{file}: the report images a manifest lists, and nothing else."""

import os
from pathlib import Path

import pytest

from service.settings import Settings

from ...tiny_models import build_model
from ..asgi import serve
from ..payloads import png

pytestmark = pytest.mark.anyio

REPORTS = {
    "samples": "samples.png",
    "curves": "plots/curves.png",
    "missing": "missing.png",
    "notes": "notes.html",
    "escape": "outside.png",
}


@pytest.fixture
def models(tmp_path: Path) -> Path:
    root = tmp_path / "models"
    folder = root / "tiny-vae"
    build_model(folder, reports=REPORTS)
    (folder / "samples.png").write_bytes(png(size=8))
    (folder / "plots").mkdir()
    (folder / "plots" / "curves.png").write_bytes(png(size=4))
    (folder / "notes.html").write_text("<script>alert(1)</script>")
    (tmp_path / "secret.png").write_bytes(png(size=2))
    os.symlink(tmp_path / "secret.png", folder / "outside.png")
    return root


async def _problem(client, path: str, *words: str) -> None:
    r = await client.get(path)
    assert r.status_code == 404, r.text
    assert r.headers["content-type"] == "application/problem+json"
    body = r.json()
    assert body["title"] == "Unknown report" and all(w in body["detail"] for w in words), body["detail"]


async def test_listed_images_are_served_and_linked_from_the_model(models):
    async with serve(Settings(models_dir=models)) as c:
        links = (await c.get("/models/tiny-vae")).json()["reports"]
        assert links["samples"] == {"path": "samples.png", "url": "/models/tiny-vae/reports/samples.png"}
        for key in ("samples", "curves"):
            r = await c.get(links[key]["url"])
            assert r.status_code == 200 and r.headers["content-type"] == "image/png"
            assert r.content == (models / "tiny-vae" / links[key]["path"]).read_bytes()
            assert r.headers["x-content-type-options"] == "nosniff"


async def test_anything_the_manifest_does_not_list_is_404_naming_the_listed_reports(models):
    async with serve(Settings(models_dir=models)) as c:
        for file in ("manifest.json", "encoder.onnx", "curves.png", "plots/%2e%2e/samples.png"):
            await _problem(c, f"/models/tiny-vae/reports/{file}", "lists no report", "'samples.png'")
        await _problem(c, "/models/tiny-vae/reports/%2e%2e/%2e%2e/secret.png", "lists no report")
        r = await c.get("/models/absent/reports/samples.png")
        assert r.status_code == 404 and r.json()["title"] == "Unknown model"


async def test_a_listed_file_that_is_missing_not_an_image_or_outside_the_models_folder_is_404(models):
    async with serve(Settings(models_dir=models)) as c:
        await _problem(c, "/models/tiny-vae/reports/missing.png", "tiny-vae/missing.png: missing", "reports.missing")
        await _problem(c, "/models/tiny-vae/reports/notes.html", "not a PNG or JPEG")
        r = await c.get("/models/tiny-vae/reports/outside.png")
        await _problem(c, "/models/tiny-vae/reports/outside.png", "outside the models folder", "reports.escape")
        assert str(models.parent) not in r.text  # where the symlink points is not shown


async def test_shipped_models_link_reports_that_exist():
    async with serve(Settings(models_dir=Path("models"), default_model="mnist-vae")) as c:
        for model in (await c.get("/models")).json()["models"]:
            links = (await c.get(f"/models/{model['name']}")).json()["reports"]
            assert {"reconstructions", "curves"} <= set(links)  # an ae's samples come from its fitted prior
            r = await c.get(links["reconstructions"]["url"])
            assert r.status_code == 200 and r.content[:8] == b"\x89PNG\r\n\x1a\n"
