"""bench/session_spec.py and bench/peer_runtime.py: a peer's sessions get exactly the service's options."""

import json
import re
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

import service.engine.sessions
from bench.load import ROOT
from bench.peer_runtime import open_session, session_options
from bench.session_spec import CONFIG_KEYS, SESSION_FIELDS, config_entry, session_spec
from service.engine.sessions import session_options as service_options
from service.settings import Settings, cpu_cores

MODEL = ROOT / "models" / "mnist-vae"


def attributes(options: ort.SessionOptions) -> dict:
    """Every plain-valued attribute of a SessionOptions (the methods and callables left out)."""
    names = [n for n in dir(options) if not n.startswith("_") and not callable(getattr(options, n))]
    return {n: getattr(options, n) for n in names}


@pytest.mark.parametrize("workers", [1, 2])
def test_the_peers_options_are_the_services_with_threads_per_worker(workers):
    spec = json.loads(json.dumps(session_spec(MODEL, workers)))  # what the peer reads from its command line
    threads = max(1, cpu_cores() // workers)
    expected = service_options(Settings(threads=threads).engine)
    built = session_options(spec)
    assert attributes(built) == attributes(expected)
    assert built.intra_op_num_threads == threads
    for key in CONFIG_KEYS:
        assert config_entry(built, key) == config_entry(expected, key)


def test_the_spec_names_everything_the_service_sets():
    source = Path(service.engine.sessions.__file__).read_text()
    assert set(re.findall(r'add_session_config_entry\("([^"]+)"', source)) == set(CONFIG_KEYS)
    assert set(re.findall(r"options\.(\w+) =", source)) == set(SESSION_FIELDS)


def test_providers_come_per_graph_from_the_service():
    spec = session_spec(MODEL)
    assert set(spec["providers"]) == {"encoder", "decoder"}
    assert spec["providers"]["encoder"][-1] == ["CPUExecutionProvider", {}]


def test_a_peer_session_runs_the_graph():
    session = open_session(MODEL, "decoder", session_spec(MODEL))
    (image,) = session.run(["image"], {"z": np.zeros((2, 16), np.float32)})
    assert image.shape == (2, 1, 28, 28)


def test_a_venv_with_another_onnxruntime_is_refused():
    spec = {**session_spec(MODEL), "onnxruntime": "0.0.1"}
    with pytest.raises(RuntimeError, match="0.0.1"):
        session_options(spec)


def test_the_thread_count_follows_the_peers_workers_not_the_services_sessions():
    settings = Settings(processes=1)
    assert settings.engine.threads == 1  # the service's rule: one a session, large batches split across threads
    assert session_spec(MODEL, workers=1, settings=settings)["session"]["intra_op_num_threads"] == cpu_cores()
    spec = session_spec(MODEL, workers=cpu_cores() * 4, settings=settings)
    assert spec["session"]["intra_op_num_threads"] == 1
    assert session_spec(MODEL, workers=2, settings=Settings(threads=3))["session"]["intra_op_num_threads"] == 3
