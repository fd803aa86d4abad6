"""Load a models folder into a registry without an app: what service tests of models and runners start from."""

from __future__ import annotations

from concurrent.futures import Executor, ThreadPoolExecutor

from service.engine.split import Splitter
from service.metrics import Metrics
from service.models.loading import Loader
from service.models.registry import ModelRegistry
from service.models.repository import load_all
from service.settings import Settings, cpu_cores


def load_registry(
    settings: Settings, executor: Executor | None = None, metrics: Metrics | None = None
) -> ModelRegistry:
    """Every model folder of `settings.models_dir`, loaded and warmed as the service loads them."""
    executor = executor or ThreadPoolExecutor(2)
    splitter = Splitter(cpu_cores(), max_rows=4 * settings.max_batch_rows)
    loader = Loader.probe(settings.models, settings.engine, settings.batcher, executor, splitter, metrics or Metrics())
    return load_all(loader)
