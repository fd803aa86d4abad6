"""Service settings: typed, read from `VAE_*` environment variables once, in `create_app`, and passed down."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ProviderMode = Literal["auto", "cpu", "cuda", "tensorrt"]


class Settings(BaseSettings):
    """Every knob of the service; `VAE_MODELS_DIR=/models` sets `models_dir`, and so on."""

    model_config = SettingsConfigDict(env_prefix="VAE_", extra="ignore", frozen=True)

    models_dir: Path = Field(Path("models"), description="folder holding one sub-folder per model")
    default_model: str | None = Field(
        None, description="model used when a request names none; unset: the best unconditional generative model"
    )
    providers: ProviderMode = Field(
        "auto", description="auto: CUDA when a session really runs on it, else CPU; tensorrt adds TensorRT first"
    )
    require_gpu: bool = Field(False, description="refuse to start when no session runs on a GPU provider")
    strict_models: bool = Field(False, description="refuse to start when any model folder is refused")
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    processes: int = Field(
        1, ge=0, description="uvicorn worker processes, each with every model loaded (0: one per two CPU cores)"
    )
    workers: int = Field(2, ge=1, description="threads per process that run inference off the event loop")

    # onnxruntime session options (service/runtime.py)
    graph_optimization: Literal["disabled", "basic", "extended", "all"] = Field(
        "all", description="onnxruntime graph optimisation level (constant folding, fusions, layout)"
    )
    threads: int = Field(0, ge=0, description="onnxruntime intra-op threads per session (0: one per core)")
    inter_op_threads: int = Field(1, ge=1, description="onnxruntime inter-op threads per session")
    thread_spinning: bool = Field(
        True,
        description="intra-op threads busy-wait between parallel sections (onnxruntime's default): on 2 cores "
        "it made 256-image batches about 25% faster and cost /encode under load nothing measurable",
    )
    cpu_memory_arena: bool = Field(
        False,
        description="onnxruntime's CPU memory arena: off by default, since it kept about 70 MiB more resident "
        "after warm-up for no measured gain (BENCHMARKS.md)",
    )
    # CUDA execution provider options (ignored on the CPU)
    cuda_device: int = Field(0, ge=0, description="GPU index for the CUDA and TensorRT providers")
    cuda_memory_limit_mb: int = Field(0, ge=0, description="cap on the CUDA arena per session (0: no cap)")
    cuda_arena_strategy: Literal["next_power_of_two", "same_as_requested"] = Field(
        "next_power_of_two", description="how the CUDA arena grows: doubling (fewer allocations) or exact"
    )
    cudnn_search: Literal["exhaustive", "heuristic", "default"] = Field(
        "exhaustive",
        description="cuDNN convolution algorithm search: exhaustive is fastest per shape, paid once per shape "
        "at warm-up",
    )
    tensorrt_fp16: bool = Field(False, description="let TensorRT build fp16 engines (VAE_PROVIDERS=tensorrt)")
    tensorrt_cache_dir: Path | None = Field(
        None, description="folder for TensorRT engines, so a restart does not rebuild them"
    )

    batching: bool = Field(True, description="combine concurrent requests' rows into one onnxruntime call per graph")
    max_batch_rows: int = Field(
        64, ge=1, description="rows per onnxruntime call; larger requests are split (every bucket is warmed)"
    )
    max_batch_delay_ms: float = Field(
        2.0, ge=0, description="how long a batch may wait to fill while the graph is busy (none when it is idle)"
    )
    queue_capacity: int = Field(256, ge=1, description="requests waiting per graph; one more is answered 503")
    request_deadline_ms: float = Field(
        5000.0, gt=0, description="a request still queued after this long is dropped with a 503"
    )

    max_body_bytes: int = Field(10 * 1024 * 1024, ge=1024, description="largest request body accepted")
    max_images: int = Field(64, ge=1, description="images per request (encode, reconstruct)")
    max_pixels: int = Field(
        4_000_000, ge=1, description="width x height of one uploaded image, checked before decoding"
    )
    max_n: int = Field(256, ge=1, description="images per /sample or /generate request")
    max_latents: int = Field(1024, ge=1, description="latent vectors per /decode request, and z draws per /encode")
    max_samples: int = Field(64, ge=1, description="z draws per image on /encode (samples=k)")
    max_temperature: float = Field(10.0, gt=0, description="largest prior temperature accepted")

    @model_validator(mode="after")
    def _gpu_needs_gpu_provider(self) -> Settings:
        if self.require_gpu and self.providers == "cpu":
            raise ValueError("VAE_REQUIRE_GPU=true contradicts VAE_PROVIDERS=cpu; use auto, cuda or tensorrt")
        return self
