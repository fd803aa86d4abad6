"""Print the service's runtime requirements, read from pyproject.toml, for one image variant.

    python3 requirements.py --variant gpu    # onnxruntime-gpu[cuda,cudnn]: the CUDA 13 / cuDNN 9 pip libraries
    python3 requirements.py --variant cpu    # onnxruntime-gpu alone: it runs on its CPU provider

On platforms without onnxruntime-gpu wheels (an arm64 image), pyproject's markers install onnxruntime instead.

Runs in the image's build stage with the base image's python3 (stdlib only), so the image installs exactly the
project's base dependencies and no second list has to be kept in step with pyproject.toml.
"""

from __future__ import annotations

import argparse
import re
import sys
import tomllib
from pathlib import Path

RUNTIME = "onnxruntime-gpu"
GPU_EXTRAS = ("cuda", "cudnn")
# `name[extra,...]rest`: PEP 508 names are letters, digits, `.`, `_`, `-`.
REQUIREMENT = re.compile(r"^\s*(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[(?P<extras>[^\]]*)\])?(?P<rest>.*)$")


def normalize(name: str) -> str:
    """PEP 503 name: `ONNXRuntime_GPU` and `onnxruntime-gpu` are one project."""
    return re.sub(r"[-_.]+", "-", name).lower()


def runtime_requirements(dependencies: list[str], variant: str) -> list[str]:
    """The base dependencies, with onnxruntime-gpu's CUDA extras added for the gpu variant."""
    out, found = [], False
    for line in dependencies:
        m = REQUIREMENT.match(line)
        if m is None:
            raise ValueError(f"pyproject.toml: cannot read the dependency {line!r}")
        name = normalize(m["name"])
        if name == "onnxruntime" and ";" not in m["rest"]:
            # Allowed only behind a marker (the platforms without onnxruntime-gpu wheels), never beside it.
            raise ValueError("pyproject.toml lists onnxruntime: it must not be installed beside onnxruntime-gpu")
        if name == RUNTIME:
            found = True
            if variant == "gpu":
                extras = [e.strip() for e in (m["extras"] or "").split(",") if e.strip()]
                extras += [e for e in GPU_EXTRAS if e not in extras]
                line = f"{m['name']}[{','.join(extras)}]{m['rest']}"
        out.append(line.strip())
    if not found:
        raise ValueError(f"pyproject.toml: {RUNTIME} is not among the dependencies; the image is built around it")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", choices=["gpu", "cpu"], required=True)
    parser.add_argument("--pyproject", type=Path, default=Path("pyproject.toml"))
    args = parser.parse_args(argv)
    with args.pyproject.open("rb") as f:
        dependencies = tomllib.load(f)["project"]["dependencies"]
    try:
        print("\n".join(runtime_requirements(dependencies, args.variant)))
    except ValueError as e:
        print(f"requirements.py: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
