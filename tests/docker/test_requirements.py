"""docker/requirements.py: the image installs pyproject.toml's base dependencies, with CUDA extras for gpu."""

from __future__ import annotations

import pytest

from .files import DOCKER, ROOT, load_script

requirements = load_script(DOCKER / "requirements.py")

DEPS = ["fastapi>=0.115", "onnxruntime-gpu>=1.20", "numpy>=1.26"]


def test_gpu_variant_adds_the_cuda_and_cudnn_extras():
    assert requirements.runtime_requirements(DEPS, "gpu") == [
        "fastapi>=0.115",
        "onnxruntime-gpu[cuda,cudnn]>=1.20",
        "numpy>=1.26",
    ]


def test_cpu_variant_is_the_base_install_unchanged():
    assert requirements.runtime_requirements(DEPS, "cpu") == DEPS


def test_existing_extras_are_kept_and_not_repeated():
    out = requirements.runtime_requirements(["onnxruntime_GPU[cuda] >=1.27"], "gpu")
    assert out == ["onnxruntime_GPU[cuda,cudnn] >=1.27"]


def test_onnxruntime_beside_onnxruntime_gpu_is_refused():
    with pytest.raises(ValueError, match="must not be installed beside onnxruntime-gpu"):
        requirements.runtime_requirements([*DEPS, "onnxruntime>=1.20"], "cpu")


def test_onnxruntime_behind_a_platform_marker_is_kept_as_it_is():
    deps = ["onnxruntime-gpu>=1.20; platform_machine == 'x86_64'", "onnxruntime>=1.20; platform_machine != 'x86_64'"]
    assert requirements.runtime_requirements(deps, "gpu") == [
        "onnxruntime-gpu[cuda,cudnn]>=1.20; platform_machine == 'x86_64'",
        "onnxruntime>=1.20; platform_machine != 'x86_64'",
    ]


def test_a_dependency_list_without_onnxruntime_gpu_is_refused():
    with pytest.raises(ValueError, match="onnxruntime-gpu is not among the dependencies"):
        requirements.runtime_requirements(["fastapi"], "gpu")


def test_the_project_dependencies_go_in_without_torch(capsys):
    assert requirements.main(["--variant", "gpu", "--pyproject", str(ROOT / "pyproject.toml")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert any(line.startswith("onnxruntime-gpu[cuda,cudnn]") for line in lines)
    assert not [line for line in lines if "torch" in line]
