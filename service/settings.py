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

    models_dir: Path = Field(Path("models"), description="folder with one sub-folder per model")
    default_model: str | None = Field(
        None,
        description="model used when a request names none; unset: chosen by the rule below",
    )
    default_conditional_model: str | None = Field(
        None,
        description=(
            "conditional model `/generate` uses when a request names none; must be a cvae; unset: chosen by the "
            "rule below"
        ),
    )
    strict_models: bool = Field(False, description="refuse to start if any model folder is refused")
    model_control: Literal["none", "explicit", "poll"] = Field(
        "none",
        description=(
            "model control as Triton's: `none` (load every folder at start), `explicit` "
            "(`/v2/repository/models/NAME/load` and `unload`), `poll` (rescan the folder)"
        ),
    )
    model_poll_s: float = Field(15.0, gt=0, description="seconds between rescans with `VAE_MODEL_CONTROL=poll`")
    version_policy: str = Field(
        "latest:1",
        pattern=r"^(all|latest:[1-9][0-9]*|specific:[^,\s]+(,[^,\s]+)*)$",
        description=(
            "which versions of a model to serve when several folders hold the same model name with different "
            "versions (each manifest's `version`), as Triton's version policy: `latest:N` (the N newest), `all`, "
            "or `specific:1,3`; requests take `version=` and reach the newest served one without it"
        ),
    )
    load_threads: int = Field(4, ge=1, description="models loaded and warmed side by side at start-up")
    warm_buckets: Literal["auto", "all", "none"] = Field(
        "auto",
        description=(
            "run every bucket once before `/ready`: `auto` does on a GPU provider only (a new shape costs cuDNN a"
            " search there, the CPU provider a few ms once), `all` always, `none` never"
        ),
    )


class EngineSettings(_Slice):
    """How graphs run: execution providers and onnxruntime's options (service/engine/)."""

    providers: ProviderMode = Field("auto", description="`auto`, `cpu`, `cuda` or `tensorrt`")
    require_gpu: bool = Field(False, description="refuse to start unless the sessions run on a GPU provider")
    workers: int = Field(
        2, ge=1, description="threads per process that run the batchers' drain loops off the event loop"
    )
    graph_optimization: Literal["disabled", "basic", "extended", "all"] = Field(
        "all", description="onnxruntime graph optimisation: `disabled`, `basic`, `extended`, `all`"
    )
    threads: int = Field(
        1,
        ge=0,
        description=(
            "onnxruntime intra-op threads per session; a large batch on the CPU is split across threads instead "
            "(`0`: the cores each process has, cores / processes)"
        ),
    )
    inter_op_threads: int = Field(
        1, ge=1, description="onnxruntime inter-op threads per session (the graphs are chains)"
    )
    thread_spinning: bool = Field(
        False,
        description=(
            "with more than one intra-op thread, they busy-wait within a call (never between calls): faster "
            "alone, but under load a spinning thread takes a core the others need"
        ),
    )
    cpu_memory_arena: bool = Field(
        True,
        description=(
            "onnxruntime's CPU arena: a session reuses its activations' memory rather than asking the heap on "
            "every call (without it, large batches ran up to a third slower in some server starts), and keeps its"
            " largest calls' activations resident (a CPU call holds at most 4 x `VAE_MAX_BATCH_ROWS` rows); "
            "`false` saves about 15 MiB a process"
        ),
    )
    cuda_device: int = Field(0, ge=0, description="GPU index for the CUDA and TensorRT providers")
    cuda_memory_limit_mb: int | Literal["auto"] = Field(
        "auto",
        description=(
            "ceiling on each session's CUDA arena in MiB: `auto` is 256 MiB + 16 x the graph file's size (see "
            '"GPU"), `0` none'
        ),
    )
    cuda_arena_strategy: Literal["next_power_of_two", "same_as_requested"] = Field(
        "same_as_requested",
        description="CUDA arena growth: exactly what is asked (`same_as_requested`), or doubling (`next_power_of_two`)",
    )
    cudnn_search: Literal["exhaustive", "heuristic", "default"] = Field(
        "heuristic",
        description=(
            "cuDNN convolution algorithm search: `heuristic`, `exhaustive`, `default` (paid once per shape, at warm-up)"
        ),
    )
    cuda_tf32: bool = Field(
        False,
        description=(
            "let float32 convolutions and matrix products run in TF32 on the GPU; off so the same seed gives the "
            "same bytes"
        ),
    )
    tensorrt_fp16: bool = Field(False, description="let TensorRT build fp16 engines (`VAE_PROVIDERS=tensorrt`)")
    tensorrt_cache_dir: Path | None = Field(
        None, description="a folder where built TensorRT engines are kept across restarts"
    )


class BatchingSettings(_Slice):
    """How concurrent requests share graph runs (service/engine/batching.py)."""

    batching: bool = Field(
        True,
        description=(
            "combine concurrent requests' rows into one onnxruntime call per graph; `false`: one call per request"
        ),
    )
    max_batch_rows: int = Field(
        64,
        ge=1,
        description=(
            "rows a batch of concurrent requests gathers; on a GPU larger requests are split and reassembled, and"
            " batches are padded to power-of-two buckets (and this value); on the CPU a large request runs as "
            "chunks side by side on every core (one call at most 4 x this value)"
        ),
    )
    max_batch_delay_ms: float = Field(
        2.0,
        ge=0,
        description=(
            "while a graph is busy, how long a batch may wait to fill (from its oldest request); an idle graph "
            "runs at once"
        ),
    )
    queue_capacity: int = Field(
        256, ge=1, description="requests waiting per graph; one more is answered 503 `overloaded` with `Retry-After`"
    )
    request_deadline_ms: float = Field(
        5000.0,
        gt=0,
        description=(
            "a request still queued after this long is dropped with 503 `deadline-exceeded` (one already running "
            "is not)"
        ),
    )


class LimitSettings(_Slice):
    """What one request may ask for, checked before anything is allocated (service/http/)."""

    max_body_bytes: int = Field(10 * 1024 * 1024, ge=1024, description="largest request body")
    max_images: int = Field(64, ge=1, description="images per request")
    max_pixels: int = Field(4_000_000, ge=1, description="width x height of one uploaded image")
    max_n: int = Field(256, ge=1, description="images per `/sample` or `/generate` request")
    max_latents: int = Field(
        1024, ge=1, description="latent vectors per `/decode`; z draws per `/encode` (images x samples)"
    )
    max_samples: int = Field(64, ge=1, description="`samples=k` per image on `/encode`")
    max_temperature: float = Field(10.0, gt=0, description="largest `temperature`")
    max_score_samples: int = Field(1000, ge=1, description="importance samples per image on `/score` (`samples=k`)")
    max_score_rows: int = Field(
        16384,
        ge=1,
        description=(
            "images x samples per `/score` request (each is one decoder row), checked before anything is decoded"
        ),
    )
    anomaly_percentile: float = Field(
        99.0,
        ge=0,
        le=100,
        description="`/score` flags an image `anomalous` above this percentile of the in-distribution images' "
        "out-of-distribution distances (of the held-out scores, for a model without the test)",
    )
    max_scale: int = Field(8, ge=1, description="largest `scale=` of a PNG output (a 28x28 digit at 224x224)")
    max_output_pixels: int = Field(
        4 * 1024 * 1024,
        ge=1,
        description=(
            "width x height of a response's PNGs once enlarged by `scale` (summed over JSON's images), checked "
            "before any is made"
        ),
    )
    max_steps: int = Field(
        64,
        ge=2,
        description=(
            "`steps` of `/interpolate` and `/traverse`, `strengths` per `/edit` (the images made also count "
            "against `VAE_MAX_N`)"
        ),
    )
    max_response_bytes: int = Field(
        16 * 1024 * 1024,
        ge=1024,
        description=(
            "largest answer any inference request may ask for, reckoned before the model runs from what it asks "
            "(images, format, scale, rows and outputs: a PNG at its incompressible size, a JSON number at its "
            "longest, 24 bytes, binary outputs at their dtype's size); 413 past it"
        ),
    )
    max_range: float = Field(20.0, gt=0, description="largest `range` of `/traverse`")


class HttpSettings(_Slice):
    """The server, its connections and the edge every request passes (service/http/)."""

    host: str = Field(
        "127.0.0.1", description="address to listen on (`0.0.0.0` in a container, to be reached from outside it)"
    )
    port: int = Field(
        8000,
        ge=1,
        le=65535,
        description="port to listen on; a port already in use stops the start at once with a message",
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        "info", description="`debug`, `info`, `warning`, `error`"
    )
    log_format: Literal["text", "json"] = Field(
        "text",
        description=(
            "`text`: a line a record, the request's ID in brackets; `json`: one JSON object a line (`time`, "
            "`level`, `logger`, `message`, `request_id`, `exception`)"
        ),
    )
    processes: int | Literal["auto"] = Field(
        "auto",
        description=(
            "server processes sharing the port, each with every model loaded and its own event loop: `auto` (or "
            "`0`) is one per CPU core the service may use (affinity, cgroup quota), at most one per GiB of "
            "available memory, and one with `VAE_MODEL_CONTROL=explicit`; a supervisor replaces one that dies "
            "(the replacement takes connections once its models are loaded), and `/metrics` merges them all. "
            "Each process costs its own copy of the models (about 200 MiB resident with the shipped ones; "
            "BENCHMARKS.md)"
        ),
    )
    api_key: SecretStr | None = Field(
        None,
        description=(
            "API key(s) every route but `/health`, `/ready` and `/metrics` needs (`X-API-Key: KEY` or "
            "`Authorization: Bearer KEY`); several separated by commas or whitespace"
        ),
    )
    api_key_file: Path | None = Field(
        None,
        description=(
            "a file of API keys, one per line (`#` comments allowed), e.g. a mounted Kubernetes Secret; read once"
            " at start, with `VAE_API_KEY`; unreadable or empty: start-up fails"
        ),
    )
    cors_origins: str = Field(
        "",
        description=(
            "origins whose pages may call the API from a browser, comma-separated, or `*`; empty: no CORS headers"
        ),
    )
    max_header_bytes: int = Field(
        32 * 1024,
        ge=1024,
        description=(
            "request line plus headers; more is answered 431 and the connection closed, before the excess is buffered"
        ),
    )
    header_timeout_s: float = Field(
        10.0,
        gt=0,
        description=(
            "from a connection's opening (or a request's first byte) to the end of its headers; then 408 and "
            "close; a connection that sends nothing is closed"
        ),
    )
    body_timeout_s: float = Field(
        10.0,
        gt=0,
        description="longest pause inside an upload; then 408 and close; also the grace period before the rate check",
    )
    min_body_bytes_per_s: int = Field(
        1024,
        ge=0,
        description="slowest average upload rate accepted after that grace period (`0`: no rate check)",
    )
    upload_timeout_s: float = Field(
        120.0,
        gt=0,
        description=(
            "longest time a request's whole body may take to arrive, however steadily (time the server is not "
            "reading does not count); then 408 and close"
        ),
    )
    send_timeout_s: float = Field(
        30.0,
        gt=0,
        description=(
            "longest a client may leave its answer unread once the server's send buffer for it is full; then the "
            "connection is dropped and the buffered answer freed"
        ),
    )
    max_unsent_bytes: int = Field(
        64 * 1024 * 1024,
        ge=1024 * 1024,
        description=(
            "answers waiting in full send buffers over all of a process's connections; past it the connections "
            "that have waited longest are dropped and their answers freed (one connection alone is never dropped "
            "for it)"
        ),
    )
    keep_alive_timeout_s: int = Field(5, ge=1, description="how long an idle keep-alive connection stays open")
    max_connections: int = Field(
        512,
        ge=1,
        description="open connections per process; one more is answered 503 and closed, the open ones keep working",
    )
    graceful_shutdown_timeout_s: int = Field(
        8,
        ge=0,
        description=(
            "after SIGTERM, how long requests in flight may run before they are cancelled (fits `docker stop`'s 10 s)"
        ),
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
