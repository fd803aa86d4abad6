"""graphs.py: a session's real inputs and outputs are compared with the manifest's declaration."""

import pytest

from service.engine.sessions import check_io, open_session
from service.settings import Settings
from vaeformat.errors import ManifestError
from vaeformat.manifest import GraphFile, load_manifest


@pytest.fixture
def vae(zoo):
    folder = zoo / "tiny-vae"
    manifest = load_manifest(folder)
    session = open_session(folder / "encoder.onnx", ["CPUExecutionProvider"], Settings(threads=1))
    return folder, manifest.files.encoder, session


def declared(graph: GraphFile, **changes) -> GraphFile:
    data = graph.model_dump()
    for key, value in changes.items():
        role, index, field = key.split("__")
        data[role][int(index)][field] = value
    return GraphFile.model_validate(data)


def test_matching_declaration_passes(vae):
    folder, graph, session = vae
    check_io(session, graph, "encoder", folder / "encoder.onnx")


def test_dtype_mismatch_names_the_field(vae):
    folder, graph, session = vae
    with pytest.raises(
        ManifestError,
        match=r"'image' is float32 in the graph, but manifest field 'files.encoder.inputs\[0\].dtype' says int64",
    ):
        check_io(session, declared(graph, inputs__0__dtype="int64"), "encoder", folder / "encoder.onnx")


def test_name_mismatch_lists_both_sides(vae):
    folder, graph, session = vae
    with pytest.raises(
        ManifestError,
        match=r"graph's outputs are \['logvar', 'mu'\].*'files.encoder.outputs' declares \['logvar', 'means'\]",
    ):
        check_io(session, declared(graph, outputs__0__name="means"), "encoder", folder / "encoder.onnx")


def test_fixed_size_mismatch_names_the_shape(vae):
    folder, graph, session = vae
    with pytest.raises(ManifestError, match=r"'files.encoder.outputs\[0\].shape' says \['N', 5\]"):
        check_io(session, declared(graph, outputs__0__shape=["N", 5]), "encoder", folder / "encoder.onnx")
