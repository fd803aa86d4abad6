"""HTTP routes, one module per concern; `ROUTERS` is what `create_app` mounts."""

from .generation import router as generation
from .inference import router as inference
from .meta import router as meta

ROUTERS = (inference, generation, meta)
