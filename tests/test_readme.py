"""The README's and docs' figures come from the manifests and from measurements; the manifests' files are shipped."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from docs.score_check import BEGIN, END, TOLERANCE, off_the_bound
from docs.score_check import main as score_check
from training.catalog import SHIPPED as SHIPPED_NAMES
from training.catalog import main as catalog
from vaeformat.manifest import load_manifest, verify_files, verify_prior

ROOT = Path(__file__).resolve().parents[1]
# The shipped models only: a folder a user trains into models/ (README, "Training your own models") is not checked.
SHIPPED = [ROOT / "models" / name for name in SHIPPED_NAMES]


def test_readme_models_table_is_the_one_printed_from_the_manifests():
    assert catalog([str(ROOT / "models"), "--check", str(ROOT / "README.md")]) == 0


@pytest.mark.parametrize("folder", SHIPPED, ids=[p.name for p in SHIPPED])
def test_shipped_model_validates_and_its_hashes_match(folder):
    manifest = load_manifest(folder)
    verify_files(folder, manifest)
    assert verify_prior(folder, manifest) is not None  # every shipped model carries its fitted prior
    assert manifest.name == folder.name and manifest.description  # GET /models says what each model is
    assert all((folder / f).is_file() for f in manifest.reports.values())


def test_the_default_models_ship():
    assert {"mnist-ae", "mnist-vae", "mnist-cvae"} <= set(SHIPPED_NAMES)
    assert all((folder / "manifest.json").is_file() for folder in SHIPPED)


def test_the_settings_table_is_the_one_printed_from_the_settings():
    def settings_table(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "docs.settings_table", *args]
        return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60)

    checked = settings_table("--check", "docs/service.md")
    assert checked.returncode == 0, checked.stderr
    rows = settings_table().stdout.splitlines()[2:]
    assert len(rows) > 50 and not [row for row in rows if row.endswith("|  |")]  # every setting says what it does


def test_the_score_check_table_is_the_one_printed_from_its_measurements():
    assert score_check(["--check", str(ROOT / "docs" / "service.md")]) == 0
    measured = json.loads((ROOT / "docs" / "score_check.json").read_text())
    assert set(measured) >= {"mnist-vae", "mnist-cvae"} and not off_the_bound(measured)
    page = (ROOT / "docs" / "service.md").read_text()
    assert f"{TOLERANCE} nats" in page and page.index(BEGIN) < page.index(END)
