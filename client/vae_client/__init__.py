"""A Python client for the VAE service: numpy arrays in and out, `.npy` on the wire where the route takes it.

    from vae_client import Client
    with Client("http://localhost:8000") as client:
        mu = client.encode(["two.png", "seven.png"]).mu        # [2, D]
        images = client.decode(mu)                            # [2, C, H, W] in [0, 1]

Importing it loads neither onnxruntime, torch nor FastAPI: only httpx, numpy and Pillow.
"""

from .calls import Label, Labels
from .clients import AsyncClient, Client
from .errors import ServiceError
from .results import Classified, Encoding, Generated, Reconstruction, Score, Scores
from .wire import ImageInput, Images, to_image, to_images

__all__ = [
    "AsyncClient",
    "Classified",
    "Client",
    "Encoding",
    "Generated",
    "ImageInput",
    "Images",
    "Label",
    "Labels",
    "Reconstruction",
    "Score",
    "Scores",
    "ServiceError",
    "to_image",
    "to_images",
]
