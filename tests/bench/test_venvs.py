"""bench/venvs.py: the peers' pins are exact and consistent with the project's runtime; a current venv is reused."""

import importlib.metadata
import subprocess
import sys

import pytest

from bench import venvs


def pinned(peer: str) -> dict[str, str]:
    return dict(pin.split("==") for pin in venvs.PINS[peer])


@pytest.mark.parametrize("peer", sorted(venvs.PINS))
def test_every_peer_pins_exact_versions_of_the_projects_runtime(peer):
    assert all(pin.count("==") == 1 for pin in venvs.PINS[peer]), venvs.PINS[peer]
    versions = pinned(peer)
    assert len(versions) == len(venvs.PINS[peer])  # no package pinned twice
    # The service's runtime at the project's version; plain onnxruntime beside it would replace its module.
    assert versions["onnxruntime-gpu"] == importlib.metadata.version("onnxruntime-gpu")
    assert "onnxruntime" not in versions
    assert {"numpy", "pillow"} <= set(versions)


def test_each_peer_installs_its_own_server():
    assert "mosec" in pinned("mosec") and "nvidia-pytriton" in pinned("triton")
    assert pinned("triton")["numpy"].startswith("1.")  # PyTriton 0.7 requires numpy < 2


def test_a_venv_is_made_once_and_remade_when_its_pins_change(tmp_path, monkeypatch):
    monkeypatch.setattr(venvs, "VENVS", tmp_path)
    calls = []

    def run(command, **kwargs):
        calls.append(command)
        if command[1:3] == ["-m", "venv"]:  # what `python -m venv` leaves that ensure() looks at
            (tmp_path / "mosec" / "bin").mkdir(parents=True)
            (tmp_path / "mosec" / "bin" / "python").touch()
        return subprocess.CompletedProcess(command, 0)

    monkeypatch.setattr(venvs.subprocess, "run", run)
    assert venvs.ensure("mosec") == tmp_path / "mosec" / "bin" / "python"
    assert calls[0] == [sys.executable, "-m", "venv", str(tmp_path / "mosec")]
    assert calls[1][-len(venvs.PINS["mosec"]) :] == list(venvs.PINS["mosec"])
    venvs.ensure("mosec")
    assert len(calls) == 2  # current: nothing run
    monkeypatch.setitem(venvs.PINS, "mosec", (*venvs.PINS["mosec"], "msgpack==1.1.0"))
    assert not venvs.is_current("mosec")
    venvs.ensure("mosec")
    assert len(calls) == 4 and calls[3][-1] == "msgpack==1.1.0"


def test_an_unknown_peer_is_refused_by_name():
    with pytest.raises(KeyError, match="'nope'"):
        venvs.ensure("nope")
