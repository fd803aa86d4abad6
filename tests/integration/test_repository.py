"""The model repository is confined to its folder, in a real `python -m service` process (issue 9, 7 and 8).

A model folder symlinked from outside the models folder is never served: refused and listed with the reason when
VAE_STRICT_MODELS is false, a refusal to start when it is true. An unreadable manifest refuses its folder only.
"""

from pathlib import Path

import httpx
import pytest

from ..tiny_models import build_model, build_zoo
from .server import run_to_exit, running_server


@pytest.fixture
def repository(tmp_path: Path) -> Path:
    """models/ with the tiny zoo, `evil` (a symlink to a model outside it) and `broken` (a manifest not in UTF-8)."""
    models = build_zoo(tmp_path / "models")
    build_model(tmp_path / "outside" / "evil", name="outside-vae")
    (models / "evil").symlink_to(tmp_path / "outside" / "evil")
    build_model(models / "broken", name="broken-vae")
    (models / "broken" / "manifest.json").write_bytes(b"\xff\xfe\x00{")
    return models


def test_an_outside_model_is_not_served_and_a_bad_manifest_costs_only_its_folder(repository, tmp_path):
    with running_server(repository, {"VAE_STRICT_MODELS": "false"}) as url:
        listing = httpx.get(f"{url}/models").json()
        assert sorted(m["name"] for m in listing["models"]) == ["tiny-ae", "tiny-cvae", "tiny-vae"]
        refused = {r["folder"]: r["reason"] for r in listing["refused"]}
        assert sorted(refused) == ["broken", "evil"]
        assert refused["evil"].startswith("evil: ") and "outside the models folder" in refused["evil"]
        assert refused["broken"].startswith("broken/manifest.json: ") and "UTF-8" in refused["broken"]
        assert str(tmp_path) not in httpx.get(f"{url}/models").text
        assert httpx.get(f"{url}/models/outside-vae").status_code == 404
        assert httpx.get(f"{url}/sample?model=outside-vae&n=1").status_code == 404
        files = httpx.get(f"{url}/models/tiny-vae").json()["files"]
        assert [files[role]["path"] for role in ("encoder", "decoder")] == ["encoder.onnx", "decoder.onnx"]


def test_strict_mode_refuses_to_start_naming_the_outside_folder(repository):
    (repository / "broken").rename(repository / "_broken")  # '_' folders are skipped: only `evil` is left to refuse
    code, output = run_to_exit(repository, {"VAE_STRICT_MODELS": "true"})
    assert code != 0
    assert "VAE_STRICT_MODELS=true" in output and "evil: " in output and "outside the models folder" in output
