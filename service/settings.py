"""Service settings: typed, read from `VAE_*` environment variables once, in `create_app`, and passed down in slices.

Each part of the service declares the settings it reads as one slice (`EngineSettings` for onnxruntime,
`BatchingSettings` for the micro-batcher, `LimitSettings` for what a request may ask, `HttpSettings` for the
connection and the edge, `ModelSettings` for the model repository). `Settings` is all of them together, read from
the environment; a part receives its slice (`settings.engine`, `settings.batcher`, `settings.limits`, ...), never
the whole.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ProviderMode = Literal["auto", "cpu", "cuda", "tensorrt"]


GIB = 1024**3


def cpu_cores() -> int:
    """The cores this process may use: its CPU affinity, within a cgroup's CPU quota where one is set."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            cores = min(cores, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):  # no cgroup v2 quota here
        pass
    return max(1, cores)


def available_memory() -> int | None:
    """Bytes of memory available to new processes (MemAvailable, within a cgroup's limit); None where unknown."""
    try:
        lines = Path("/proc/meminfo").read_text().splitlines()
        available = next(int(line.split()[1]) * 1024 for line in lines if line.startswith("MemAvailable:"))
    except (OSError, StopIteration, ValueError):
        return None
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        used = int(Path("/sys/fs/cgroup/memory.current").read_text())
        if limit != "max":
            available = min(available, int(limit) - used)
    except (OSError, ValueError):
        pass
    return max(0, available)


class _Slice(BaseModel):
    model_config = ConfigDict(frozen=True)


class ModelSettings(_Slice):
    """Where models come from and how the set of them may change (service/models/)."""

    models_dir: Path = Field(Path("models"), description="folder holding one sub-folder per model")
    default_model: str | None = Field(
        None,
        description="model used when a request names none; unset: the best unconditional generative model among "
        "those whose bounds compare (service/models/registry.py, `ranked`)",
    )
    default_conditional_model: str | None = Field(
        None, description="conditional model /generate uses when a request names none; unset: chosen as above"
    )
    strict_models: bool = Field(False, description="refuse to start when any model folder is refused")
    model_control: Literal["none", "explicit", "poll"] = Field(
        "none",
        description="none: every model folder loads at start and the set never changes; explicit: "
        "POST /v2/repository/models/{name}/load and /unload change it; poll: the models folder is rescanned "
        "every VAE_MODEL_POLL_S seconds (new folders load, changed ones reload, removed ones unload)",
    )
    model_poll_s: float = Field(15.0, gt=0, description="seconds between rescans of the models folder (poll mode)")
    load_threads: int = Field(
        4, ge=1, description="models loaded and warmed side by side at start-up (their warm-ups overlap on a GPU)"
    )
    warm_buckets: Literal["auto", "all", "none"] = Field(
        "auto",
        description="warm every batch-size bucket before /ready: auto warms them on a GPU provider only (a new "
        "shape costs the CPU provider a few ms, once)",
    )


class EngineSettings(_Slice):
    """How graphs run: execution providers and onnxruntime's options (service/engine/)."""

    providers: ProviderMode = Field(
        "auto", description="auto: CUDA when a session really runs on it, else CPU; tensorrt adds TensorRT first"
    )
    require_gpu: bool = Field(False, description="refuse to start when no session runs on a GPU provider")
    workers: int = Field(2, ge=1, description="threads per process that run inference off the event loop")
    graph_optimization: Literal["disabled", "basic", "extended", "all"] = Field(
        "all", description="onnxruntime graph optimisation level (constant folding, fusions, layout)"
    )
    threads: int = Field(
        1,
        ge=0,
        description="onnxruntime intra-op threads per session; 1 (the default): a large batch on the CPU is split "
        "across threads instead (service/engine/split.py: 256 rows of a conv decoder ran 1.2 times faster than "
        "onnxruntime's own two threads on 2 cores, and no spinning thread took a core from the event loop or the "
        "other processes); 0: the cores each process has, cores / processes",
    )
    inter_op_threads: int = Field(1, ge=1, description="onnxruntime inter-op threads per session")
    thread_spinning: bool = Field(
        False,
        description="intra-op threads busy-wait between parallel sections (onnxruntime's default is on): on 2 "
        "cores it made 256-image batches about 25% faster, but under load a spinning thread takes the core the "
        "event loop needs (null model, 64 clients: /encode 770 req/s with it, 1410 without), so it is off",
    )
    cpu_memory_arena: bool = Field(
        True,
        description="onnxruntime's CPU memory arena: a session reuses its activations' memory instead of asking "
        "the heap for it on every call (without it, large batches ran up to a third slower in some server starts), "
        "and keeps its largest calls' activations resident (at most 4 x VAE_MAX_BATCH_ROWS rows a call on the "
        "CPU); off saves about 15 MiB a process",
    )
    cuda_device: int = Field(0, ge=0, description="GPU index for the CUDA and TensorRT providers")
    cuda_memory_limit_mb: int | Literal["auto"] = Field(
        "auto",
        description="ceiling on each session's CUDA arena, in MiB: auto derives it from the graph (256 MiB plus 16 "
        "times the file's size, several times what the shipped models need at VAE_MAX_BATCH_ROWS, so a leak or a "
        "runaway stops there rather than taking the GPU; raise it for large images or batches), 0 sets none",
    )
    cuda_arena_strategy: Literal["next_power_of_two", "same_as_requested"] = Field(
        "same_as_requested",
        description="how the CUDA arena grows: exactly by what is asked (the default: warm-up runs every batch "
        "shape, so the arena ends at the largest need and stays there) or doubling (held 1.9-2.9 GiB per process "
        "for 53 MB of weights on an H100)",
    )
    cudnn_search: Literal["exhaustive", "heuristic", "default"] = Field(
        "heuristic",
        description="cuDNN convolution algorithm search per new shape: heuristic (the default) picks from cuDNN's "
        "own ranking, hundreds of times cheaper than timing every algorithm (exhaustive: start to ready 8.5 s "
        "against 4.3 s on an H100 with the shipped models) and as fast for convolutions this small",
    )
    cuda_tf32: bool = Field(
        False,
        description="let float32 convolutions and matrix products run in TF32 on the GPU (use_tf32): faster, but "
        "a row's result then depends on what shares its batch (6e-4 apart), so the same seed would not give the "
        "same bytes; off by default",
    )
    tensorrt_fp16: bool = Field(False, description="let TensorRT build fp16 engines (VAE_PROVIDERS=tensorrt)")
    tensorrt_cache_dir: Path | None = Field(
        None, description="folder for TensorRT engines, so a restart does not rebuild them"
    )


class BatchingSettings(_Slice):
    """How concurrent requests share graph runs (service/engine/batching.py)."""

    batching: bool = Field(True, description="combine concurrent requests' rows into one onnxruntime call per graph")
    max_batch_rows: int = Field(
        64,
        ge=1,
        description="rows per onnxruntime call; on a GPU larger requests are split into warmed buckets, on the CPU "
        "a larger request on an idle graph runs as one call",
    )
    max_batch_delay_ms: float = Field(
        2.0, ge=0, description="how long a batch may wait to fill while the graph is busy (none when it is idle)"
    )
    queue_capacity: int = Field(256, ge=1, description="requests waiting per graph; one more is answered 503")
    request_deadline_ms: float = Field(
        5000.0, gt=0, description="a request still queued after this long is dropped with a 503"
    )


class LimitSettings(_Slice):
    """What one request may ask for, checked before anything is allocated (service/http/)."""

    max_body_bytes: int = Field(10 * 1024 * 1024, ge=1024, description="largest request body accepted")
    max_images: int = Field(64, ge=1, description="images per request (encode, reconstruct)")
    max_pixels: int = Field(
        4_000_000, ge=1, description="width x height of one uploaded image, checked before decoding"
    )
    max_n: int = Field(256, ge=1, description="images per /sample or /generate request")
    max_latents: int = Field(1024, ge=1, description="latent vectors per /decode request, and z draws per /encode")
    max_samples: int = Field(64, ge=1, description="z draws per image on /encode (samples=k)")
    max_temperature: float = Field(10.0, gt=0, description="largest prior temperature accepted")
    max_score_samples: int = Field(1000, ge=1, description="importance samples per image on /score (samples=k)")
    max_score_rows: int = Field(
        16384, ge=1, description="images x samples per /score request (each is one decoder row)"
    )
    anomaly_percentile: float = Field(
        99.0, ge=0, le=100, description="/score flags an image 'anomalous' above this percentile of held-out scores"
    )
    max_scale: int = Field(8, ge=1, description="largest scale= of a PNG output (8: a 28x28 digit at 224x224)")
    max_output_pixels: int = Field(
        4 * 1024 * 1024,
        ge=1,
        description="width x height of a response's PNG images once enlarged by scale= (summed over JSON's "
        "images), checked before any is made: 4 Mi is a 2048x2048 image, a 256-digit grid at scale 4",
    )
    max_steps: int = Field(
        64, ge=2, description="points on an /interpolate path, strengths per /edit, columns of a /traverse grid"
    )
    max_response_bytes: int = Field(
        16 * 1024 * 1024,
        ge=1024,
        description="largest answer an inference request may ask for, reckoned before the model runs from what it "
        "asks (rows, images, format, scale; a PNG at its incompressible size, a JSON number at its longest, 24 "
        "bytes); larger ones are refused with 413: ask for fewer images, a smaller scale, or binary outputs",
    )
    max_range: float = Field(
        20.0, gt=0, description="largest /traverse range (offsets from -range to +range around the base)"
    )


class HttpSettings(_Slice):
    """The server, its connections and the edge every request passes (service/http/)."""

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["text", "json"] = Field(
        "text",
        description="text: one line a record, with its request's X-Request-ID in brackets; json: one JSON object a "
        "line (time, level, logger, message, request_id, exception) for log collectors",
    )
    processes: int | Literal["auto"] = Field(
        "auto",
        description="server processes, each with every model loaded and its own event loop (a supervisor starts "
        "them on one port and replaces one that dies; /metrics merges them all); auto (or 0): one per CPU core the "
        "service may use (its affinity and cgroup quota), at most one per GiB of available memory, and one with "
        "VAE_MODEL_CONTROL=explicit",
    )
    api_key: SecretStr | None = Field(
        None,
        description="API key(s) every route but /health, /ready and /metrics needs (X-API-Key: KEY or "
        "Authorization: Bearer KEY); several separated by commas or whitespace; unset or empty: no key needed",
    )
    api_key_file: Path | None = Field(
        None,
        description="file of API keys, one per line ('#' comments allowed), e.g. a mounted Kubernetes Secret; "
        "read once at start, together with VAE_API_KEY",
    )
    cors_origins: str = Field(
        "",
        description="origins that browsers may call the API from, comma-separated (https://app.example.com), "
        "or * for any; empty: no CORS headers, so other origins' pages cannot read responses",
    )
    max_header_bytes: int = Field(
        32 * 1024,
        ge=1024,
        description="request line plus headers, in bytes; more is answered 431 and the connection closed, "
        "before the excess is buffered",
    )
    header_timeout_s: float = Field(
        10.0,
        gt=0,
        description="seconds a connection may take from opening (or from a request's first byte) to the end of "
        "its headers; then 408 and close, so a slowloris or silent connection does not hold a socket forever",
    )
    body_timeout_s: float = Field(
        10.0,
        gt=0,
        description="seconds an upload may go without a byte; then 408 and close. Also the grace period before "
        "VAE_MIN_BODY_BYTES_PER_S applies",
    )
    min_body_bytes_per_s: int = Field(
        1024,
        ge=0,
        description="slowest average upload rate accepted once VAE_BODY_TIMEOUT_S has passed (408 below it), so "
        "a body sent a byte at a time cannot hold a connection; 0: no rate check",
    )
    upload_timeout_s: float = Field(
        120.0,
        gt=0,
        description="seconds a request's whole body may take to arrive, however steadily it comes (time the "
        "server is not reading does not count); then 408 and close, so slow uploads cannot hold the connection "
        "slots for long",
    )
    send_timeout_s: float = Field(
        30.0,
        gt=0,
        description="seconds a client may leave its answer unread once the server's send buffer for it is full; "
        "then the connection is dropped and the buffered answer freed, so clients that do not read cannot "
        "hold memory",
    )
    max_unsent_bytes: int = Field(
        64 * 1024 * 1024,
        ge=1024 * 1024,
        description="answers waiting in send buffers for clients that read them slower than they are made, over "
        "all of a process's connections; past it the connections that have waited longest are dropped and their "
        "answers freed (one connection alone is never dropped for it: one answer is bounded by "
        "VAE_MAX_RESPONSE_BYTES)",
    )
    keep_alive_timeout_s: int = Field(
        5, ge=1, description="seconds an idle keep-alive connection stays open between requests"
    )
    max_connections: int = Field(
        512,
        ge=1,
        description="open connections per process; one more is answered 503 and closed at once, while the "
        "open ones keep working (keep it below the process's open-file limit)",
    )
    graceful_shutdown_timeout_s: int = Field(
        8,
        ge=0,
        description="after SIGTERM, seconds to let requests in flight finish before they are cancelled; fits "
        "in docker stop's default 10 s",
    )


S = TypeVar("S", bound=_Slice)


def _slice(settings: Settings, kind: type[S], **resolved: object) -> S:
    return kind.model_validate({name: getattr(settings, name) for name in kind.model_fields} | resolved)


class Settings(BaseSettings, ModelSettings, EngineSettings, BatchingSettings, LimitSettings, HttpSettings):
    """Every knob of the service; `VAE_MODELS_DIR=/models` sets `models_dir`, and so on."""

    model_config = SettingsConfigDict(env_prefix="VAE_", extra="ignore", frozen=True)

    def process_count(self) -> int:
        """VAE_PROCESSES, or for auto (0) one per core the service may use, at most one per GiB of available
        memory (each process loads every model; the shipped ones take about 150 MiB a process)."""
        if self.processes == "auto" or self.processes == 0:
            if self.model_control == "explicit":
                return 1  # a load or unload request reaches one process: the others would not follow
            memory = available_memory()
            by_memory = max(1, memory // GIB) if memory is not None else cpu_cores()
            return max(1, min(cpu_cores(), by_memory))
        return self.processes

    def session_threads(self) -> int:
        """Intra-op threads per onnxruntime session: VAE_THREADS, or for 0 the cores each process has."""
        return self.threads or max(1, cpu_cores() // self.process_count())

    @property
    def models(self) -> ModelSettings:
        return _slice(self, ModelSettings)

    @property
    def engine(self) -> EngineSettings:
        """The engine's slice, with `threads` resolved to a count."""
        return _slice(self, EngineSettings, threads=self.session_threads())

    @property
    def batcher(self) -> BatchingSettings:
        return _slice(self, BatchingSettings)

    @property
    def limits(self) -> LimitSettings:
        return _slice(self, LimitSettings)

    @property
    def http(self) -> HttpSettings:
        return _slice(self, HttpSettings)

    @model_validator(mode="after")
    def _gpu_needs_gpu_provider(self) -> Settings:
        if self.require_gpu and self.providers == "cpu":
            raise ValueError("VAE_REQUIRE_GPU=true contradicts VAE_PROVIDERS=cpu; use auto, cuda or tensorrt")
        if isinstance(self.processes, int) and self.processes < 0:
            raise ValueError("processes must be auto or at least 0 (0 means auto)")
        return self
