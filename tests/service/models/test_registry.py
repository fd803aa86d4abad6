"""registry.py (with contract.py and graphs.py): which model folders are served, and why others are refused.

A refused folder's message must name the file and the manifest field, so the person who exported it can fix it.
"""

import json
import os
import shutil
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import onnx
import pytest

from service.errors import StartupError, UnknownModel
from service.metrics import Metrics
from service.models.describe import details
from service.models.registry import ModelRegistry
from service.settings import Settings
from vaeformat.contract import LABEL_CLASSES_KEY
from vaeformat.files import sha256_file

from ...registries import load_registry
from ...tiny_models import build_model
from ..asgi import serve


def load(models_dir: Path, **settings) -> ModelRegistry:
    return load_registry(Settings(models_dir=models_dir, **settings), ThreadPoolExecutor(1), Metrics())


def edit_manifest(folder: Path, change) -> None:
    path = folder / "manifest.json"
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def refusal(registry: ModelRegistry, folder: str) -> str:
    reasons = [r.reason for r in registry.refused if Path(r.folder).name == folder]
    assert reasons, f"{folder} was not refused; refused: {registry.refused}"
    return reasons[0]


def test_the_zoo_loads_with_real_providers_and_a_generative_default(zoo):
    registry = load(zoo)
    assert sorted(registry.models) == ["tiny-ae", "tiny-cvae", "tiny-vae"]
    assert registry.refused == []
    assert registry.default == "tiny-vae"  # the only unconditional model with a prior
    assert registry.conditional_names == ["tiny-cvae"]
    for graphs in registry.providers.values():
        assert all(active and active[-1] == "CPUExecutionProvider" for active in graphs.values())


def test_unknown_model_lists_what_is_loaded(zoo):
    with pytest.raises(UnknownModel, match="tiny-ae"):
        load(zoo).get("nope")


def test_hash_mismatch_is_refused_naming_file_and_field(models_dir):
    with open(models_dir / "tiny-vae" / "encoder.onnx", "ab") as f:
        f.write(b"\0")
    registry = load(models_dir)
    reason = refusal(registry, "tiny-vae")
    assert "encoder.onnx" in reason and "'files.encoder.sha256'" in reason
    assert "tiny-vae" not in registry.models and "tiny-ae" in registry.models  # the others are still served


def test_missing_graph_file_is_refused(models_dir):
    (models_dir / "tiny-ae" / "decoder.onnx").unlink()
    reason = refusal(load(models_dir), "tiny-ae")
    assert "decoder.onnx" in reason and "missing" in reason and "'files.decoder.path'" in reason


def test_missing_or_broken_manifest_is_refused(models_dir):
    (models_dir / "tiny-ae" / "manifest.json").unlink()
    (models_dir / "tiny-vae" / "manifest.json").write_text("{not json")
    registry = load(models_dir)
    assert "manifest.json: missing" in refusal(registry, "tiny-ae")
    assert "not valid JSON" in refusal(registry, "tiny-vae")


def test_manifest_schema_errors_name_the_field(models_dir):
    edit_manifest(models_dir / "tiny-vae", lambda m: m.update(latent_dim=0))
    assert "field 'latent_dim'" in refusal(load(models_dir), "tiny-vae")


def test_declared_inputs_that_break_the_contract_are_refused(models_dir):
    def rename_z(m):
        m["files"]["decoder"]["inputs"][0]["name"] = "latent"

    edit_manifest(models_dir / "tiny-vae", rename_z)
    reason = refusal(load(models_dir), "tiny-vae")
    assert "'files.decoder.inputs'" in reason and "latent" in reason and "missing ['z']" in reason


def test_declared_fixed_batch_axis_is_refused(models_dir):
    def fix_batch(m):
        m["files"]["encoder"]["inputs"][0]["shape"][0] = 1

    edit_manifest(models_dir / "tiny-vae", fix_batch)
    reason = refusal(load(models_dir), "tiny-vae")
    assert "'files.encoder.inputs[0].shape[0]'" in reason and "dynamic" in reason


def test_conditional_manifest_whose_decoder_declares_no_label_is_refused(models_dir):
    def drop_label(m):
        m["files"]["decoder"]["inputs"] = [t for t in m["files"]["decoder"]["inputs"] if t["name"] != "label"]

    edit_manifest(models_dir / "tiny-cvae", drop_label)
    reason = refusal(load(models_dir), "tiny-cvae")
    assert "'files.decoder.inputs'" in reason and "missing ['label']" in reason


def test_ae_that_declares_a_logvar_is_refused(models_dir):
    def add_logvar(m):
        m["files"]["encoder"]["outputs"].append({"name": "logvar", "dtype": "float32", "shape": ["N", 4]})

    edit_manifest(models_dir / "tiny-ae", add_logvar)
    assert "unexpected ['logvar']" in refusal(load(models_dir), "tiny-ae")


def test_declaration_that_differs_from_the_real_graph_is_refused(models_dir):
    # The manifest claims 16x16 images and is consistent with itself, but the graphs were built for 8x8.
    def claim_16(m):
        m["image"].update(height=16, width=16)
        for role in ("encoder", "decoder"):
            for t in m["files"][role]["inputs"] + m["files"][role]["outputs"]:
                if t["name"] in ("image", "logits"):
                    t["shape"] = ["N", 1, 16, 16]

    edit_manifest(models_dir / "tiny-vae", claim_16)
    reason = refusal(load(models_dir), "tiny-vae")
    assert "encoder.onnx" in reason and "'files.encoder.inputs[0].shape'" in reason and "8" in reason


def test_graph_onnxruntime_cannot_load_is_refused(models_dir):
    folder = models_dir / "tiny-vae"
    (folder / "encoder.onnx").write_bytes(b"not an onnx graph")
    edit_manifest(folder, lambda m: m["files"]["encoder"].update(sha256=sha256_file(folder / "encoder.onnx")))
    reason = refusal(load(models_dir), "tiny-vae")
    assert "encoder.onnx" in reason and "onnxruntime cannot load" in reason


def test_more_class_names_than_the_graph_knows_are_refused_from_the_graph_metadata(models_dir):
    # Not left to the runtime: on CUDA a Gather past the label table reads other memory instead of failing.
    edit_manifest(models_dir / "tiny-cvae", lambda m: m.update(labels=["a", "b", "c", "d", "e"]))
    reason = refusal(load(models_dir), "tiny-cvae")
    assert "label table has 3 classes" in reason and "names 5" in reason


def test_a_label_graph_without_its_class_count_is_refused(models_dir):
    graph = onnx.load(str(models_dir / "tiny-cvae" / "decoder.onnx"))
    del graph.metadata_props[:]
    onnx.save(graph, str(models_dir / "tiny-cvae" / "decoder.onnx"))
    folder = models_dir / "tiny-cvae"
    edit_manifest(folder, lambda m: m["files"]["decoder"].update(sha256=sha256_file(folder / "decoder.onnx")))
    reason = refusal(load(models_dir), "tiny-cvae")
    assert "decoder.onnx" in reason and LABEL_CLASSES_KEY in reason and "python -m training stamp" in reason


def test_duplicate_model_names_are_refused(models_dir):
    shutil.copytree(models_dir / "tiny-vae", models_dir / "tiny-vae-copy")
    registry = load(models_dir)
    assert "already served" in refusal(registry, "tiny-vae-copy")
    assert "tiny-vae" in registry.models


def test_strict_models_turns_a_refusal_into_a_startup_error(models_dir):
    (models_dir / "tiny-ae" / "decoder.onnx").unlink()
    with pytest.raises(StartupError, match="VAE_STRICT_MODELS"):
        load(models_dir, strict_models=True)


def test_no_loadable_model_is_a_startup_error(tmp_path):
    with pytest.raises(StartupError, match="no model could be loaded"):
        load(tmp_path)
    with pytest.raises(StartupError, match="does not exist"):
        load(tmp_path / "absent")


def test_default_model_setting_must_name_a_loaded_model(zoo):
    assert load(zoo, default_model="tiny-ae").default == "tiny-ae"
    with pytest.raises(StartupError, match="VAE_DEFAULT_MODEL"):
        load(zoo, default_model="nope")


def test_default_is_the_generative_model_with_the_best_held_out_bound(tmp_path):
    build_model(tmp_path / "a", name="a-vae", iw_bound=120.0)
    build_model(tmp_path / "b", name="b-vae", iw_bound=95.0)
    build_model(tmp_path / "c", name="c-ae", kind="ae", iw_bound=None)
    assert load(tmp_path).default == "b-vae"


DIGITS = [str(i) for i in range(10)]


def _digits_and_a_colour_model(root: Path) -> None:
    """Two Bernoulli digit models and two Gaussian colour models whose bounds and names would win if compared."""
    build_model(root / "mnist-vae", name="mnist-vae", dataset="mnist", iw_bound=93.9, seed=1)
    build_model(root / "mnist-cvae", name="mnist-cvae", kind="cvae", labels=DIGITS, dataset="mnist", iw_bound=89.0)
    colour: dict[str, Any] = {"channels": 3, "likelihood": "gaussian", "dataset": "cifar10", "iw_bound": -2452.0}
    build_model(root / "cifar-cvae", name="cifar-cvae", kind="cvae", labels=["cat", "dog"], seed=2, **colour)


def test_a_colour_model_beside_the_digits_takes_neither_default(tmp_path):
    # The Gaussian model's bound (a density on continuous pixels, -2452 nats) is not compared with the Bernoulli
    # models' (89 nats): the dataset with more models keeps both defaults, so /generate?label=7 still works.
    _digits_and_a_colour_model(tmp_path)
    registry = load(tmp_path)
    assert registry.default == "mnist-vae"
    assert registry.default_conditional == "mnist-cvae"
    assert registry.get_conditional().name == "mnist-cvae"
    assert registry.conditional_names == ["mnist-cvae", "cifar-cvae"]


def test_between_equal_groups_the_dataset_name_decides_never_the_bound(tmp_path):
    build_model(tmp_path / "z", name="z-cvae", kind="cvae", labels=DIGITS, dataset="b-digits", iw_bound=89.0)
    build_model(
        tmp_path / "a",
        name="a-cvae",
        kind="cvae",
        labels=["cat", "dog"],
        channels=3,
        likelihood="gaussian",
        dataset="z-colours",
        iw_bound=-2452.0,
    )
    assert load(tmp_path).default_conditional == "z-cvae"


def test_within_comparable_models_the_lowest_bound_decides(tmp_path):
    for name, bound in (("a-cvae", 120.0), ("b-cvae", 95.0)):
        build_model(tmp_path / name, name=name, kind="cvae", labels=DIGITS, iw_bound=bound)
    assert load(tmp_path).default_conditional == "b-cvae"


def test_the_conditional_default_can_be_configured(tmp_path):
    _digits_and_a_colour_model(tmp_path)
    assert load(tmp_path, default_conditional_model="cifar-cvae").get_conditional().name == "cifar-cvae"
    with pytest.raises(StartupError, match="VAE_DEFAULT_CONDITIONAL_MODEL='nope' is not loaded"):
        load(tmp_path, default_conditional_model="nope")
    with pytest.raises(StartupError, match="VAE_DEFAULT_CONDITIONAL_MODEL='mnist-vae' is kind 'vae'"):
        load(tmp_path, default_conditional_model="mnist-vae")


@pytest.mark.anyio
async def test_generate_with_a_digit_label_works_beside_a_colour_model(tmp_path):
    _digits_and_a_colour_model(tmp_path)
    async with serve(Settings(models_dir=tmp_path)) as c:
        r = await c.get("/generate", params={"label": "7", "n": 2})
        assert r.status_code == 200, r.text
        assert r.headers["x-model"] == "mnist-cvae"
        listed = (await c.get("/models")).json()
        assert (listed["default"], listed["default_conditional"]) == ("mnist-vae", "mnist-cvae")


# --- a model repository confined to its folder (issue 9, defects 7 and 8) -------------------------------------


def test_an_unreadable_manifest_refuses_that_folder_only_and_the_log_names_the_file(models_dir, caplog):
    (models_dir / "tiny-vae" / "manifest.json").write_bytes(b"\xff\xfe{}")
    (models_dir / "tiny-ae" / "manifest.json").unlink()
    (models_dir / "tiny-ae" / "manifest.json").mkdir()
    registry = load(models_dir)
    assert sorted(registry.models) == ["tiny-cvae"]
    assert "UTF-8" in refusal(registry, "tiny-vae") and "directory" in refusal(registry, "tiny-ae")
    logged = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert any("tiny-vae/manifest.json" in line for line in logged), logged
    assert any("tiny-ae/manifest.json" in line for line in logged), logged


def test_an_unreadable_manifest_stops_a_strict_start_naming_the_file(models_dir):
    (models_dir / "tiny-vae" / "manifest.json").write_bytes(b"\xff\xfe{}")
    with pytest.raises(StartupError, match="tiny-vae/manifest.json"):
        load(models_dir, strict_models=True)


def test_a_model_folder_symlinked_from_outside_is_refused_even_when_not_strict(models_dir, tmp_path):
    build_model(tmp_path / "outside" / "evil", name="evil-vae")
    (models_dir / "evil").symlink_to(tmp_path / "outside" / "evil")
    registry = load(models_dir)
    assert "evil-vae" not in registry.models and "tiny-vae" in registry.models
    reason = refusal(registry, "evil")
    assert reason.startswith("evil: ") and "outside the models folder" in reason
    assert str(tmp_path / "outside") not in reason
    with pytest.raises(StartupError, match="outside the models folder"):
        load(models_dir, strict_models=True)


def test_a_model_folder_symlinked_to_a_place_inside_the_models_folder_is_served(models_dir):
    (models_dir / ".releases").mkdir()
    shutil.move(models_dir / "tiny-vae", models_dir / ".releases" / "tiny-vae-v2")
    (models_dir / "tiny-vae").symlink_to(".releases/tiny-vae-v2")
    registry = load(models_dir, strict_models=True)
    assert "tiny-vae" in registry.models


def test_a_graph_outside_the_models_folder_is_refused_however_it_is_named(models_dir, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    shutil.copy(models_dir / "tiny-vae" / "encoder.onnx", outside / "encoder.onnx")
    (models_dir / "tiny-ae" / "decoder.onnx").unlink()
    (models_dir / "tiny-ae" / "decoder.onnx").symlink_to(outside / "encoder.onnx")
    edit_manifest(models_dir / "tiny-vae", lambda m: m["files"]["encoder"].update(path=str(outside / "encoder.onnx")))
    edit_manifest(models_dir / "tiny-cvae", lambda m: m["files"]["encoder"].update(path="../../outside/encoder.onnx"))
    build_model(models_dir / "good", name="good-vae")
    registry = load(models_dir)
    assert sorted(registry.models) == ["good-vae"]
    assert "outside the models folder" in refusal(registry, "tiny-ae")
    assert "'files.encoder.path'" in refusal(registry, "tiny-vae") and "absolute" in refusal(registry, "tiny-vae")
    assert "'files.encoder.path'" in refusal(registry, "tiny-cvae") and "'..'" in refusal(registry, "tiny-cvae")


def test_refusals_show_paths_relative_to_the_models_folder(models_dir):
    (models_dir / "tiny-vae" / "encoder.onnx").write_bytes(b"not an onnx graph")  # onnxruntime names the file too
    edit_manifest(
        models_dir / "tiny-vae",
        lambda m: m["files"]["encoder"].update(sha256=sha256_file(models_dir / "tiny-vae" / "encoder.onnx")),
    )
    (models_dir / "tiny-ae" / "decoder.onnx").unlink()
    registry = load(models_dir)
    assert sorted(r.folder for r in registry.refused) == ["tiny-ae", "tiny-vae"]
    for r in registry.refused:
        assert r.reason.startswith(f"{r.folder}/") and str(models_dir) not in r.reason
        assert str(models_dir.resolve()) not in r.reason


def test_a_folder_name_that_is_not_utf8_is_shown_escaped(models_dir):
    (models_dir / "tiny-vae" / "manifest.json").unlink()
    os.rename(models_dir / "tiny-vae", os.fsencode(models_dir / "tiny-") + b"\xe9")
    registry = load(models_dir)
    (refused,) = registry.refused
    assert refused.folder == "tiny-\\xe9"
    refused.reason.encode("utf-8")  # /models renders it as JSON


def test_model_details_show_graph_paths_relative_to_the_model_folder(zoo):
    files = details(load(zoo).get("tiny-vae"))["files"]
    assert files["encoder"]["path"] == "encoder.onnx" and files["decoder"]["path"] == "decoder.onnx"


def load_without_blocking(models_dir: Path, **settings) -> ModelRegistry:
    """`load`, failing (not hanging) if it blocks on a file, as reading a FIFO would."""
    outcome: list = []
    thread = threading.Thread(target=lambda: outcome.append(load(models_dir, **settings)), daemon=True)
    thread.start()
    thread.join(30)
    assert not thread.is_alive(), "loading blocked on a file that is not a regular file"
    return outcome[0]


def test_fifos_huge_and_outside_manifests_refuse_their_folder_only(models_dir, tmp_path):
    os.mkfifo(tmp_path / "fifo")
    (models_dir / "tiny-ae" / "manifest.json").unlink()
    os.mkfifo(models_dir / "tiny-ae" / "manifest.json")
    (models_dir / "tiny-cvae" / "decoder.onnx").unlink()
    (models_dir / "tiny-cvae" / "decoder.onnx").symlink_to(tmp_path / "fifo")  # outside, and a FIFO
    shutil.copytree(models_dir / "tiny-vae", models_dir / "huge")
    with open(models_dir / "huge" / "manifest.json", "ab") as f:
        f.truncate(1 << 30)  # sparse
    shutil.copytree(models_dir / "tiny-vae", models_dir / "linked")
    shutil.move(models_dir / "linked" / "manifest.json", tmp_path / "manifest.json")
    (models_dir / "linked" / "manifest.json").symlink_to(tmp_path / "manifest.json")
    registry = load_without_blocking(models_dir)
    assert sorted(registry.models) == ["tiny-vae"]
    assert "tiny-ae/manifest.json: a FIFO, not a regular file" in refusal(registry, "tiny-ae")
    assert "tiny-cvae/decoder.onnx: a symlink to a place outside" in refusal(registry, "tiny-cvae")
    assert "huge/manifest.json" in refusal(registry, "huge") and "over the limit" in refusal(registry, "huge")
    assert "linked/manifest.json: a symlink to a place outside" in refusal(registry, "linked")
