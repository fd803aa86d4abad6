"""HTTP routes, one module per concern; `ROUTERS` is what `create_app` mounts."""

from .generation import router as generation
from .inference import router as inference
from .latent import router as latent
from .meta import router as meta
from .playground import router as playground
from .scoring import router as scoring
from .v2 import router as v2

ROUTERS = (inference, generation, scoring, latent, meta, v2, playground)
