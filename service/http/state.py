"""What both planes of one process share: the settings' slices they read, the metrics, the model repository once
it has loaded, requests in flight per model, and whether shutdown has begun."""

from __future__ import annotations

from pathlib import Path

from ..engine.gpu_memory import GpuMemory
from ..errors import NotReady
from ..metrics import Metrics
from ..models.registry import ModelRegistry
from ..models.repository import InFlight, ModelRepository
from ..settings import LimitSettings, ProviderMode


class ServiceState:
    """One per app; the lifespan fills in the repository, the signal handler marks shutdown."""

    def __init__(self, limits: LimitSettings, provider_mode: ProviderMode, models_dir: Path, metrics: Metrics) -> None:
        self.limits = limits
        self.provider_mode = provider_mode
        self.models_dir = models_dir
        self.metrics = metrics
        self.repository: ModelRepository | None = None  # set once every model is loaded and warm
        self.in_flight = InFlight()  # OIP requests per model, which an unload waits for
        self.gpu_memory: GpuMemory | None = None
        self.shutting_down = False

    @property
    def registry(self) -> ModelRegistry | None:
        return None if self.repository is None else self.repository.registry

    def loaded_registry(self) -> ModelRegistry:
        """The loaded registry; NotReady (503) until start-up has loaded and warmed every model."""
        if self.repository is None:
            raise NotReady("the service is starting or stopping; models are not loaded yet, retry shortly")
        return self.repository.registry

    def ready_registry(self) -> ModelRegistry:
        """The loaded registry, unless shutdown has begun: NotReady (503) then as well."""
        if self.shutting_down:
            raise NotReady("the service is shutting down; send requests to another instance")
        return self.loaded_registry()

    def begin_shutdown(self) -> None:
        """From now on /ready answers 503, so that a load balancer sends no new requests; the others still work."""
        self.shutting_down = True
