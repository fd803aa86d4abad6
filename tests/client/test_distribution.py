"""client/: a distribution of its own, installable without the server: its wheel holds only vae_client and asks for
httpx, numpy and Pillow."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_client_wheel_holds_the_client_and_needs_only_httpx_numpy_and_pillow(tmp_path: Path):
    build = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp_path)]
    result = subprocess.run([*build, str(ROOT / "client")], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    (wheel,) = tmp_path.glob("vae_client-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        packages = {name.split("/")[0] for name in archive.namelist() if not name.endswith(".dist-info/")}
        metadata_name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        metadata = Parser().parsestr(archive.read(metadata_name).decode())
    assert {p for p in packages if not p.endswith(".dist-info")} == {"vae_client"}
    requires = sorted(r.split(">")[0].split("=")[0].strip().lower() for r in metadata.get_all("Requires-Dist") or [])
    assert requires == ["httpx", "numpy", "pillow"]
