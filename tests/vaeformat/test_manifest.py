"""vaeformat/manifest.py and files.py: reading a manifest and its graph files, confined to the models folder,
without ever blocking.

Every refusal is a ManifestError that names the file (relative to the models folder) and the manifest field.
"""

import json
import os
import shutil
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from vaeformat.errors import ManifestError
from vaeformat.manifest import MAX_MANIFEST_BYTES, load_manifest, verify_files


def refused(call: Callable[[], object]) -> str:
    """Run `call` in a thread (a FIFO must not block it) and return the ManifestError's message."""
    outcome: list[BaseException | object] = []
    thread = threading.Thread(target=lambda: outcome.append(_catch(call)), daemon=True)
    thread.start()
    thread.join(10)
    assert not thread.is_alive(), "blocked: the file was opened or read as if it were a regular file"
    (error,) = outcome
    assert isinstance(error, ManifestError), f"not refused: {error!r}"
    return str(error)


def _catch(call: Callable[[], object]) -> BaseException | object:
    try:
        return call()
    except Exception as e:
        return e


def edit(folder: Path, change: Callable[[dict], None]) -> None:
    path = folder / "manifest.json"
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


# --- the manifest file itself ---------------------------------------------------------------------------------


def test_a_manifest_that_is_not_utf8_is_refused_naming_the_file(models_dir):
    (models_dir / "tiny-vae" / "manifest.json").write_bytes(b'{"name": "caf\xe9"}')
    reason = refused(lambda: load_manifest(models_dir / "tiny-vae", models_dir))
    assert reason.startswith("tiny-vae/manifest.json: ") and "UTF-8" in reason


def test_a_directory_named_manifest_json_is_refused(models_dir):
    (models_dir / "tiny-vae" / "manifest.json").unlink()
    (models_dir / "tiny-vae" / "manifest.json").mkdir()
    reason = refused(lambda: load_manifest(models_dir / "tiny-vae", models_dir))
    assert reason.startswith("tiny-vae/manifest.json: ") and "directory" in reason and "regular file" in reason


def test_a_fifo_named_manifest_json_is_refused_without_blocking(models_dir):
    (models_dir / "tiny-vae" / "manifest.json").unlink()
    os.mkfifo(models_dir / "tiny-vae" / "manifest.json")
    assert "FIFO" in refused(lambda: load_manifest(models_dir / "tiny-vae", models_dir))


def test_a_manifest_over_the_size_cap_is_refused_before_it_is_read(models_dir):
    path = models_dir / "tiny-vae" / "manifest.json"
    with path.open("ab") as f:
        f.truncate(MAX_MANIFEST_BYTES + 1)  # sparse: no disk is spent
    reason = refused(lambda: load_manifest(models_dir / "tiny-vae", models_dir))
    assert "tiny-vae/manifest.json" in reason and f"{MAX_MANIFEST_BYTES} bytes" in reason


@pytest.mark.parametrize(
    ("text", "why"),
    [("[" * 100_000 + "]" * 100_000, "nested"), ('{"latent_dim": ' + "9" * 5000 + "}", "not valid JSON")],
)
def test_json_the_parser_cannot_take_is_refused(models_dir, text, why):
    (models_dir / "tiny-vae" / "manifest.json").write_text(text)
    reason = refused(lambda: load_manifest(models_dir / "tiny-vae", models_dir))
    assert reason.startswith("tiny-vae/manifest.json: ") and why in reason


def test_a_manifest_symlinked_from_outside_the_models_folder_is_refused(models_dir, tmp_path):
    outside = tmp_path / "elsewhere.json"
    shutil.move(models_dir / "tiny-vae" / "manifest.json", outside)
    (models_dir / "tiny-vae" / "manifest.json").symlink_to(outside)
    reason = refused(lambda: load_manifest(models_dir / "tiny-vae", models_dir))
    assert reason.startswith("tiny-vae/manifest.json: ") and "outside the models folder" in reason
    assert str(tmp_path) not in reason  # where the link points is the server's business, not the client's


def test_an_unreadable_manifest_is_refused_naming_the_file(models_dir, monkeypatch):
    real_open = os.open

    def denied(path, *args, **kwargs):
        if str(path).endswith("tiny-vae/manifest.json"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", denied)
    reason = refused(lambda: load_manifest(models_dir / "tiny-vae", models_dir))
    assert reason.startswith("tiny-vae/manifest.json: ") and "Permission denied" in reason


def test_without_a_root_messages_show_the_folder_as_given(models_dir):
    (models_dir / "tiny-vae" / "manifest.json").unlink()
    reason = refused(lambda: load_manifest(models_dir / "tiny-vae"))
    assert reason.startswith(f"{models_dir / 'tiny-vae' / 'manifest.json'}: missing")


# --- paths inside the manifest --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "why"),
    [
        ("/etc/passwd", "absolute"),
        ("../tiny-ae/encoder.onnx", "'..'"),
        ("sub/../../encoder.onnx", "'..'"),
        ("", "names no file"),
        (".", "names no file"),
        ("sub\\encoder.onnx", "backslash"),
    ],
)
def test_graph_paths_must_stay_inside_the_model_folder(models_dir, path, why):
    edit(models_dir / "tiny-vae", lambda m: m["files"]["encoder"].update(path=path))
    reason = refused(lambda: load_manifest(models_dir / "tiny-vae", models_dir))
    assert "tiny-vae/manifest.json" in reason and "field 'files.encoder.path'" in reason and why in reason


def test_report_paths_must_stay_inside_the_model_folder(models_dir):
    edit(models_dir / "tiny-vae", lambda m: m.update(reports={"samples": "/etc/passwd"}))
    reason = refused(lambda: load_manifest(models_dir / "tiny-vae", models_dir))
    assert "field 'reports.samples'" in reason and "absolute" in reason


def test_a_relative_graph_path_in_a_subfolder_is_fine(models_dir):
    folder = models_dir / "tiny-vae"
    (folder / "graphs").mkdir()
    shutil.move(folder / "encoder.onnx", folder / "graphs" / "encoder.onnx")
    edit(folder, lambda m: m["files"]["encoder"].update(path="graphs/encoder.onnx"))
    found = verify_files(folder, load_manifest(folder, models_dir), models_dir)
    assert found["encoder"] == (folder / "graphs" / "encoder.onnx").resolve()


# --- the graph files ------------------------------------------------------------------------------------------


def test_a_graph_symlinked_from_outside_the_models_folder_is_refused(models_dir, tmp_path):
    folder = models_dir / "tiny-vae"
    shutil.move(folder / "encoder.onnx", tmp_path / "encoder.onnx")
    (folder / "encoder.onnx").symlink_to(tmp_path / "encoder.onnx")
    reason = refused(lambda: verify_files(folder, load_manifest(folder, models_dir), models_dir))
    assert reason.startswith("tiny-vae/encoder.onnx: ") and "outside the models folder" in reason
    assert "'files.encoder.path'" in reason and str(tmp_path) not in reason


def test_a_graph_symlinked_to_another_place_inside_the_models_folder_is_served(models_dir):
    shared = models_dir / "_shared"
    shared.mkdir()
    shutil.move(models_dir / "tiny-vae" / "decoder.onnx", shared / "decoder.onnx")
    (models_dir / "tiny-vae" / "decoder.onnx").symlink_to("../_shared/decoder.onnx")
    folder = models_dir / "tiny-vae"
    found = verify_files(folder, load_manifest(folder, models_dir), models_dir)
    assert found["decoder"] == (shared / "decoder.onnx").resolve()


@pytest.mark.parametrize("kind", ["directory", "FIFO"])
def test_a_graph_that_is_not_a_regular_file_is_refused_without_blocking(models_dir, kind):
    folder = models_dir / "tiny-vae"
    (folder / "encoder.onnx").unlink()
    if kind == "directory":
        (folder / "encoder.onnx").mkdir()
    else:
        os.mkfifo(folder / "encoder.onnx")
    reason = refused(lambda: verify_files(folder, load_manifest(folder, models_dir), models_dir))
    assert reason.startswith("tiny-vae/encoder.onnx: ") and kind in reason and "'files.encoder.path'" in reason


def test_a_graph_symlink_loop_is_refused(models_dir):
    folder = models_dir / "tiny-vae"
    (folder / "encoder.onnx").unlink()
    (folder / "encoder.onnx").symlink_to("encoder.onnx")
    reason = refused(lambda: verify_files(folder, load_manifest(folder, models_dir), models_dir))
    assert reason.startswith("tiny-vae/encoder.onnx: ") and "'files.encoder.path'" in reason
