"""The service must import and build its app without torch (the serving image has none)."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

CHECK = """
import pkgutil, importlib, sys
import service
for m in pkgutil.walk_packages(service.__path__, "service."):
    if m.name != "service.__main__":
        importlib.import_module(m.name)
from service.http.app import create_app
from service.settings import Settings
create_app(Settings(models_dir="models"))
import service.__main__
bad = sorted(n for n in sys.modules if n.split(".")[0] in ("torch", "training", "torchvision"))
print("FORBIDDEN", bad)
assert not bad, bad
"""


def test_service_imports_no_torch_in_a_clean_interpreter():
    result = subprocess.run([sys.executable, "-c", CHECK], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "FORBIDDEN []" in result.stdout
