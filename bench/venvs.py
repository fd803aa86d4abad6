"""The peers' own virtual environments: one per peer under .bench/venvs/, made from pinned versions, made once.

mosec and PyTriton pull packages the project's venv must not get (PyTriton wants numpy < 2; both bring servers of
their own), so each peer runs in a venv of its own, made with the project's interpreter (`sys.executable`).
A venv is rebuilt only when its pin list (or the interpreter) changes: a stamp file in it holds what it was made
from. Every peer gets onnxruntime-gpu at the project's own version (the same runtime as the service; never plain
`onnxruntime` beside it, since both install the same `onnxruntime` module), Pillow and numpy.

`python -m bench.venvs [mosec] [triton]` makes them by hand (all when none is named).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

from .load import ROOT

VENVS = ROOT / ".bench" / "venvs"
STAMP = ".bench-pins"

# The runtime, at the version in the project's venv (tests/bench/test_venvs.py checks they agree).
RUNTIME = ("onnxruntime-gpu==1.31.1", "pillow==13.0.0")
# Every version a peer is measured with, in one place. PyTriton 0.7.0 requires numpy < 2.
PINS: dict[str, tuple[str, ...]] = {
    "mosec": (*RUNTIME, "numpy==2.4.6", "mosec==0.9.8"),
    "triton": (*RUNTIME, "numpy==1.26.4", "nvidia-pytriton==0.7.0"),
}


def venv_dir(peer: str) -> Path:
    return VENVS / peer


def venv_python(peer: str) -> Path:
    return venv_dir(peer) / "bin" / "python"


def stamp_text(peer: str) -> str:
    """What a venv is made from: the interpreter's version and the pins, one per line."""
    return "\n".join([f"python {sys.version.split()[0]}", *PINS[peer]]) + "\n"


def is_current(peer: str) -> bool:
    stamp = venv_dir(peer) / STAMP
    return venv_python(peer).is_file() and stamp.is_file() and stamp.read_text() == stamp_text(peer)


def ensure(peer: str) -> Path:
    """The python of `peer`'s venv, made (or remade from scratch, so no stale package lingers) unless current."""
    if peer not in PINS:
        raise KeyError(f"no venv is defined for peer {peer!r}; known: {sorted(PINS)}")
    if is_current(peer):
        return venv_python(peer)
    folder = venv_dir(peer)
    shutil.rmtree(folder, ignore_errors=True)
    print(f"bench: making the {peer} venv in {folder} ({', '.join(PINS[peer])})", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(folder)], check=True)
    # The project's constraints (a torch pin) do not concern the peers: their pins are exact already.
    env = {k: v for k, v in os.environ.items() if k != "PIP_CONSTRAINT"}
    install = [str(venv_python(peer)), "-m", "pip", "install", "--disable-pip-version-check", *PINS[peer]]
    subprocess.run(install, check=True, env=env)
    (folder / STAMP).write_text(stamp_text(peer))  # last: a failed install leaves no stamp, so it is retried
    return venv_python(peer)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.venvs", description=__doc__)
    parser.add_argument("peers", nargs="*", help=f"peers whose venv to make, of {sorted(PINS)} (default: all)")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.peers) - set(PINS))
    if unknown:
        parser.error(f"no venv is defined for {unknown}; known: {sorted(PINS)}")
    for peer in args.peers or PINS:
        print(f"{peer}: {ensure(peer)}")


if __name__ == "__main__":
    main()
