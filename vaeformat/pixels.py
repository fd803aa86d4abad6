"""The pixel model of /score's out-of-distribution test: each pixel's own histogram over the training images.

A VAE's -log p(x) says how well the model explains an image, not whether the image looks like the training data
at all: a smooth crop of a photograph can be explained about as well as a plain garment. The pixel model is the
plainest density of images there is: every pixel (and channel) on its own, with the histogram of its values over
training images in BINS equal bins, each count plus one so that no value is impossible. Its -log likelihood
(`pixel_nll`) is large where an image puts brightness where training images never have it, or leaves dark what
they always fill; it is one statistic of the test beside the model's own (vaeformat/estimates.py), so the mixture
learns how the two go together in the training data rather than trusting either alone.

The file (`pixels.npz`, its sha256 in the manifest's `metrics.ood.pixels`) holds one array, `log_probs` float32
[C * H * W, BINS]: the log probability of each bin for each pixel in the image's C, H, W order, each row summing
to 1 in probability. It is read with allow_pickle=False.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from .arrays import read_arrays
from .errors import ManifestError
from .files import open_confined, shown, verified
from .manifest import Manifest

PIXELS_FILE = "pixels.npz"
BINS = 16
# C x H x W x BINS float32 values: 64 MiB holds a 1024 x 1024 RGB model and refuses a hostile file.
MAX_PIXELS_BYTES = 64 * 1024 * 1024
_REFIT = "refit it: python -m training fit-ood MODEL_FOLDER"


class PixelsFormatError(ValueError):
    """A pixel-model file whose array does not have the documented shape or values; the message says which."""


@dataclass(frozen=True)
class PixelModel:
    log_probs: np.ndarray  # [C * H * W, BINS] float32

    @property
    def bins(self) -> int:
        return int(self.log_probs.shape[1])

    def nll(self, images: np.ndarray) -> np.ndarray:
        """-log likelihood in nats of images [N, C, H, W] in [0, 1] under the per-pixel histograms: [N] float64."""
        binned = _binned(images, self.bins)
        picked = np.take_along_axis(self.log_probs[None], binned[:, :, None], 2)[..., 0]  # [N, P]
        return -picked.sum(1, dtype=np.float64)

    def check(self, pixels: int) -> None:
        """PixelsFormatError unless the array fits images of `pixels` values (C * H * W)."""
        p = self.log_probs
        if p.ndim != 2 or p.shape[0] != pixels or p.shape[1] < 2:
            raise PixelsFormatError(
                f"log_probs has shape {list(p.shape)}; want [{pixels}, BINS] for this model's images; {_REFIT}"
            )
        if not np.isfinite(p).all() or not np.allclose(np.exp(p.astype(np.float64)).sum(1), 1.0, atol=1e-4):
            raise PixelsFormatError(f"each row of log_probs must be a finite log distribution; {_REFIT}")


def _binned(images: np.ndarray, bins: int) -> np.ndarray:
    """Each value's bin: images [N, C, H, W] in [0, 1] -> int64 [N, C * H * W]."""
    return np.minimum((np.clip(images, 0.0, 1.0) * bins).astype(np.int64), bins - 1).reshape(len(images), -1)


def fit_pixels(batches: Iterable[np.ndarray], bins: int = BINS) -> PixelModel:
    """The per-pixel histograms of batches of images [N, C, H, W] in [0, 1], each bin's count plus one."""
    counts: np.ndarray | None = None
    for images in batches:
        binned = _binned(images, bins)
        batch = np.stack([(binned == b).sum(0) for b in range(bins)], 1)  # [P, BINS]
        counts = batch if counts is None else counts + batch
    if counts is None:
        raise ValueError("no images to count")
    smoothed = counts.astype(np.float64) + 1.0
    return PixelModel(np.log(smoothed / smoothed.sum(1, keepdims=True)).astype(np.float32))


def read_pixels(f: BinaryIO) -> PixelModel:
    """A PixelModel from an open .npz file, without pickle; PixelsFormatError for anything else."""
    arrays = read_arrays(f, ["log_probs"], MAX_PIXELS_BYTES, "pixel-model file", PixelsFormatError)
    return PixelModel(arrays["log_probs"].astype(np.float32))


def write_pixels(path: Path, model: PixelModel) -> Path:
    with open(path, "wb") as f:
        np.savez(f, log_probs=model.log_probs)
    return path


def load_pixels(folder: Path, manifest: Manifest, root: Path | None = None) -> PixelModel | None:
    """The out-of-distribution test's pixel model, checked like the graphs (confined, sha256) and against the image
    size; None when the test has none; ManifestError naming the file and the field for anything wrong."""
    ood = manifest.metrics.ood
    entry = ood.pixels if ood is not None else None
    if entry is None:
        return None
    real_root = Path(root or folder).resolve()
    field = "metrics.ood.pixels"
    real = verified(Path(folder) / entry.path, entry.sha256, real_root, root, field, f"after it was fitted ({_REFIT})")
    where = shown(Path(folder) / entry.path, root)
    f, _ = open_confined(real, real_root, where, f"{field}.path")
    image = manifest.image
    try:
        with f:
            model = read_pixels(f)
        model.check(image.channels * image.height * image.width)
    except PixelsFormatError as e:
        raise ManifestError(f"{where}: {e} (manifest field '{field}.path' names it)") from None
    except OSError as e:
        raise ManifestError(
            f"{where}: cannot be read ({e.strerror or e}); manifest field '{field}.path' names it"
        ) from None
    if model.bins != entry.bins:
        raise ManifestError(f"{where}: holds {model.bins} bins, but manifest field '{field}.bins' says {entry.bins}")
    return model
