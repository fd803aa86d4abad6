"""The house rules, read from the source: no import cycles, no upward imports, the web framework only in the web
layer, no torch and nothing of training in the service, nothing of service or training in the format package, and no
private name of a third-party package outside the one seam module."""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# The service's neighbourhoods, lowest first: a module may import its own neighbourhood and those below it.
LAYERS = [
    {"service.settings", "service.errors"},
    {"service.metrics", "service.processes", "service.graph_stats", "service.tracing", "service.offload"},
    {"service.engine"},
    {"service.models"},
    {"service.ops"},
    {"service.http"},
    {"service.__main__"},
]
WEB = {"fastapi", "fastapi_offline", "starlette", "uvicorn", "multipart", "python_multipart", "httptools", "uvloop"}
SEAM = "service.http.seam"  # the one module allowed uvicorn's private names (pinned; tests/service/http/test_seam.py)


def modules(package: str) -> Iterator[tuple[str, Path]]:
    for path in sorted((ROOT / package).rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        yield ".".join(parts[:-1] if parts[-1] == "__init__" else parts), path


def imports(name: str, path: Path) -> Iterator[tuple[str, list[str]]]:
    """(module imported, names taken from it) for every import in the file, relative ones resolved."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, []
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            yield module, [alias.name for alias in node.names]


def layer(module: str) -> int | None:
    for index, names in enumerate(LAYERS):
        if any(module == n or module.startswith(n + ".") for n in names):
            return index
    return None


def internal(module: str) -> str | None:
    """The first-party module an import names (a `from package import module` counts as that module)."""
    return module if module.split(".")[0] in {"service", "training", "vaeformat", "vae_client"} else None


SERVICE = dict(modules("service"))


def test_the_neighbourhoods_are_all_known():
    assert all(layer(name) is not None for name in SERVICE if name != "service"), [
        name for name in SERVICE if layer(name) is None and name != "service"
    ]


@pytest.mark.parametrize("name", sorted(SERVICE))
def test_no_upward_import_and_the_web_framework_only_in_the_web_layer(name):
    mine = layer(name)
    for module, _ in imports(name, SERVICE[name]):
        top = module.split(".")[0]
        assert top not in {"torch", "training"}, f"{name} imports {module}: the service never needs torch or training"
        if top in WEB:
            assert name.startswith("service.http") or name == "service.__main__", f"{name} imports {module}"
        if internal(module) and top == "service" and module != "service":
            theirs = layer(module)
            assert mine is not None and theirs is not None and theirs <= mine, f"{name} imports {module}: upward"


def test_no_import_cycles():
    graph: dict[str, set[str]] = {}
    for package in ("service", "vaeformat", "training", "client"):
        for name, path in modules(package):
            known = dict(modules(package))
            edges = set()
            for module, names in imports(name, path):
                # `from package import module` imports that module (the package's __init__ has run already)
                submodules = [f"{module}.{n}" for n in names if f"{module}.{n}" in known]
                for candidate in submodules or [module]:
                    if candidate in known and candidate != name:
                        edges.add(candidate)
            graph[name] = edges
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> None:
        if node in path:
            raise AssertionError(f"import cycle: {' -> '.join(path[path.index(node) :] + [node])}")
        if node in done:
            return
        for nxt in graph.get(node, ()):
            visit(nxt, [*path, node])
        done.add(node)

    for node in graph:
        visit(node, [])


def test_the_format_package_imports_neither_service_nor_training():
    for name, path in modules("vaeformat"):
        for module, _ in imports(name, path):
            assert module.split(".")[0] not in {"service", "training", "torch"}, f"{name} imports {module}"


def test_the_client_imports_nothing_of_the_service_training_or_the_format():
    for name, path in modules("client"):
        for module, _ in imports(name, path):
            top = module.split(".")[0]
            assert top not in {"service", "training", "vaeformat", "torch", "onnxruntime", "fastapi"}, (name, module)


def test_no_private_name_of_a_third_party_package_outside_the_seam():
    stdlib = set(sys.stdlib_module_names)
    for name, path in SERVICE.items():
        if name == SEAM:
            continue
        tree = ast.parse(path.read_text())
        for module, names in imports(name, path):
            top = module.split(".")[0]
            if top in {"service", "vaeformat", "__future__"} or top in stdlib:
                continue
            assert not any(part.startswith("_") for part in module.split(".")), f"{name} imports {module}"
            assert not any(n.startswith("_") for n in names), f"{name} imports {names} from {module}"
        for node in ast.walk(tree):
            # x._name: only on self or cls (our own classes); never on another object (a framework's).
            if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
                owner = node.value.id if isinstance(node.value, ast.Name) else None
                assert owner in {"self", "cls"}, f"{name}:{node.lineno} uses .{node.attr} of another object"
