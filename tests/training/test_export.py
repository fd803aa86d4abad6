from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

torch = pytest.importorskip("torch")

from training.export import ExportError, _check_parity, export_model  # noqa: E402
from training.networks import AutoEncoder, DecoderGraph, NetConfig  # noqa: E402


def _tiny(kind, channels=1, size=12):
    torch.manual_seed(0)
    cfg = NetConfig(
        kind, channels, size, size, latent_dim=3, num_classes=4 if kind == "cvae" else None, base_channels=4, hidden=16
    )
    return AutoEncoder(cfg)


@pytest.mark.parametrize("kind", ["ae", "vae", "cvae"])
def test_export_writes_self_contained_graphs_with_the_contract_names(tmp_path, kind):
    model = _tiny(kind)
    files, worst = export_model(model, "bernoulli", tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["decoder.onnx", "encoder.onnx"]  # no external data
    assert worst <= 1e-5
    enc_in = [t.name for t in files["encoder"].inputs]
    assert enc_in == (["image", "label"] if kind == "cvae" else ["image"])
    assert [t.name for t in files["encoder"].outputs] == (["mu"] if kind == "ae" else ["mu", "logvar"])
    assert [t.name for t in files["decoder"].outputs] == ["image", "logits"]
    assert files["encoder"].inputs[0].shape == ["N", 1, 12, 12]
    # The batch axis really is dynamic, and the decoder's image is the sigmoid of its logits.
    session = ort.InferenceSession(str(tmp_path / "decoder.onnx"), providers=["CPUExecutionProvider"])
    feeds = {"z": np.random.default_rng(0).standard_normal((33, 3), dtype=np.float32)}
    if kind == "cvae":
        feeds["label"] = np.arange(33, dtype=np.int64) % 4
    image, logits = session.run(None, feeds)
    assert image.shape == (33, 1, 12, 12)
    assert np.allclose(image, 1 / (1 + np.exp(-logits)), atol=1e-6)


def test_gaussian_decoder_has_no_logits(tmp_path):
    files, _ = export_model(_tiny("vae", channels=3), "gaussian", tmp_path)
    assert [t.name for t in files["decoder"].outputs] == ["image"]
    assert files["decoder"].outputs[0].shape == ["N", 3, 12, 12]


def test_parity_check_fails_loudly_when_the_graph_differs_from_pytorch(tmp_path):
    model = _tiny("vae")
    export_model(model, "bernoulli", tmp_path)
    with torch.no_grad():
        model.decoder.deconvs[0].bias.add_(0.01)  # PyTorch now computes something the file does not
    with pytest.raises(ExportError, match="differs from PyTorch"):
        _check_parity(
            DecoderGraph(model, True).eval(), tmp_path / "decoder.onnx", model, "decoder", ["image", "logits"]
        )


def test_exported_files_carry_no_machine_specific_debug_records(tmp_path):
    import onnx

    export_model(_tiny("cvae"), "bernoulli", tmp_path)
    for name in ("encoder.onnx", "decoder.onnx"):
        graph = onnx.load(str(tmp_path / name)).graph
        assert not graph.metadata_props
        assert not any(node.metadata_props or node.doc_string for node in graph.node)  # no source paths


def test_label_graphs_carry_their_class_count_and_stamp_adds_it_to_older_exports(tmp_path):
    import json

    import onnx

    from training.cli import main
    from vaeformat.contract import LABEL_CLASSES_KEY
    from vaeformat.files import sha256_file
    from vaeformat.manifest import load_manifest

    export_model(_tiny("cvae"), "bernoulli", tmp_path)
    for name in ("encoder.onnx", "decoder.onnx"):
        meta = ort.InferenceSession(str(tmp_path / name), providers=["CPUExecutionProvider"]).get_modelmeta()
        assert meta.custom_metadata_map[LABEL_CLASSES_KEY] == "4"  # the label table's rows, read from the graph
    # A model exported before the export wrote it: `stamp` reads the count from the graph and rehashes.
    shipped = tmp_path.parent / "shipped-cvae"
    shipped.mkdir()
    source = json.loads((Path(__file__).resolve().parents[2] / "models/mnist-cvae/manifest.json").read_text())
    for name in ("encoder.onnx", "decoder.onnx"):
        graph = onnx.load(str(tmp_path / name))
        del graph.metadata_props[:]
        onnx.save(graph, str(shipped / name))
        role = name.split(".")[0]
        source["files"][role]["sha256"] = sha256_file(shipped / name)
    (shipped / "manifest.json").write_text(json.dumps(source))
    assert main(["stamp", str(shipped)]) == 0
    manifest = load_manifest(shipped)
    for role in ("encoder", "decoder"):
        path = shipped / f"{role}.onnx"
        assert getattr(manifest.files, role).sha256 == sha256_file(path)
        meta = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).get_modelmeta()
        assert meta.custom_metadata_map[LABEL_CLASSES_KEY] == "4"
