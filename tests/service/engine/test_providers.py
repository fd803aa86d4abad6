"""providers.py: what is asked of onnxruntime, what a session really runs on, and the start-up rules.

These tests create real sessions. On a machine without a usable GPU (like CI) the GPU cases check that the
service refuses to start; on a GPU machine those cases are skipped and the positive case runs instead.
"""

import pytest

from service.engine.providers import CPU, CUDA, TENSORRT, ProviderError, check, probe, requested_providers
from service.errors import StartupError
from service.http.app import create_app
from service.settings import Settings

PLAN = probe("auto")
NO_GPU = not PLAN.gpu


def test_cpu_mode_asks_for_the_cpu_only():
    assert requested_providers("cpu") == [CPU]
    assert probe("cpu").active == (CPU,)


def test_gpu_modes_ask_for_gpu_providers_first_when_this_build_has_them():
    assert requested_providers("tensorrt")[-1] == CPU
    assert requested_providers("auto")[-1] == CPU
    assert TENSORRT not in requested_providers("auto")  # TensorRT only when configured


def test_auto_reports_what_the_probe_session_really_runs_on():
    assert PLAN.active[-1] == CPU
    assert PLAN.gpu == (PLAN.active[0] in (CUDA, TENSORRT))


@pytest.mark.skipif(not NO_GPU, reason="a GPU is usable here; the no-GPU refusals cannot be shown")
def test_auto_without_a_gpu_falls_back_to_cpu_and_says_so():
    assert PLAN.active == (CPU,)
    if CUDA in PLAN.requested:  # onnxruntime-gpu: CUDA is listed as available, yet the session runs on the CPU
        assert PLAN.fell_back


@pytest.mark.skipif(not NO_GPU, reason="a GPU is usable here")
def test_require_gpu_without_a_gpu_is_refused():
    with pytest.raises(ProviderError, match="VAE_REQUIRE_GPU"):
        check("auto", PLAN.active, require_gpu=True, what="probe")


@pytest.mark.skipif(not NO_GPU, reason="a GPU is usable here")
@pytest.mark.parametrize("mode", ["cuda", "tensorrt"])
def test_explicit_gpu_mode_without_a_gpu_is_refused(mode):
    plan = probe(mode)
    with pytest.raises(ProviderError, match=f"VAE_PROVIDERS={mode}"):
        check(mode, plan.active, require_gpu=False, what="probe")


@pytest.mark.skipif(not NO_GPU, reason="a GPU is usable here")
@pytest.mark.anyio
async def test_app_with_require_gpu_refuses_to_start_without_a_gpu(zoo):
    app = create_app(Settings(models_dir=zoo, require_gpu=True))
    with pytest.raises(StartupError, match="VAE_REQUIRE_GPU"):
        async with app.lifespan():
            pass


@pytest.mark.skipif(NO_GPU, reason="no GPU is usable here")
def test_require_gpu_with_a_gpu_passes():
    check("auto", PLAN.active, require_gpu=True, what="probe")


def test_rules_on_reported_providers():
    check("auto", [CPU], require_gpu=False, what="x")  # a silent fallback is allowed in auto...
    check("cpu", [CPU], require_gpu=False, what="x")
    check("cuda", [CUDA, CPU], require_gpu=True, what="x")
    with pytest.raises(ProviderError, match="runs on CPUExecutionProvider"):  # ...but not in an explicit mode
        check("cuda", [CPU], require_gpu=False, what="x")
    with pytest.raises(ProviderError, match="TensorrtExecutionProvider"):
        check("tensorrt", [CUDA, CPU], require_gpu=False, what="x")


def test_require_gpu_with_cpu_providers_is_a_settings_error():
    with pytest.raises(ValueError, match="contradicts"):
        Settings(require_gpu=True, providers="cpu")
