"""Report images beside each model: samples, held-out digits with their reconstructions, training curves."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from .graphs import OnnxPair  # noqa: E402
from .loop import History  # noqa: E402


def grid(images: np.ndarray, cols: int, pad: int = 2) -> Image.Image:
    """float images [N, C, H, W] in [0, 1] -> one PIL image, `cols` per row, with a dark border between."""
    n, c, h, w = images.shape
    rows = -(-n // cols)
    canvas = np.zeros((rows * (h + pad) + pad, cols * (w + pad) + pad, c), np.float32)
    for i, img in enumerate(images):
        r, k = divmod(i, cols)
        canvas[pad + r * (h + pad) : pad + r * (h + pad) + h, pad + k * (w + pad) : pad + k * (w + pad) + w] = (
            img.transpose(1, 2, 0))
    pixels = (canvas.clip(0, 1) * 255).round().astype(np.uint8)
    return Image.fromarray(pixels[..., 0] if c == 1 else pixels)


def _save(img: Image.Image, path: Path, scale: int = 3) -> str:
    img.resize((img.width * scale, img.height * scale), Image.Resampling.NEAREST).save(path)
    return path.name


def write_reports(folder: Path, pair: OnnxPair, x_test: np.ndarray, y_test: np.ndarray | None, latent_dim: int,
                  num_classes: int | None, stochastic: bool, history: History | None, seed: int = 0) -> dict[str, str]:
    """Write the report PNGs into `folder`; return {report name: file name} for the manifest."""
    rng = np.random.default_rng(seed)
    reports = {}
    if stochastic:
        if num_classes:  # one row per class
            per = 10
            labels = np.repeat(np.arange(num_classes), per).astype(np.int64)
        else:
            per, labels = 8, None
        n = len(labels) if labels is not None else 64
        z = rng.standard_normal((n, latent_dim), dtype=np.float32)
        reports["samples"] = _save(grid(pair.decode(z, labels)["image"], per), folder / "samples.png")
    pick = rng.choice(len(x_test), 16, replace=False)
    lab = None if (y_test is None or not num_classes) else y_test[pick]
    recon = pair.decode(pair.encode(x_test[pick], lab)["mu"], lab)["image"]
    reports["reconstructions"] = _save(grid(np.concatenate([x_test[pick], recon]), 16), folder / "reconstructions.png")
    if history is not None and history.epoch:
        fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.5))
        a.plot(history.epoch, history.train_loss, label="train objective")
        a.plot(history.epoch, history.val_loss, label="validation objective")
        a.set_xlabel("epoch"), a.set_ylabel("nats per image"), a.legend()
        lo = min(history.val_loss + history.train_loss)
        a.set_ylim(lo - 5, lo + 60)
        b.plot(history.epoch, history.train_rec, label="reconstruction")
        b.plot(history.epoch, history.train_kl, label="KL")
        b.set_xlabel("epoch"), b.set_ylabel("nats per image (train)"), b.legend()
        fig.tight_layout()
        fig.savefig(folder / "curves.png", dpi=80)
        plt.close(fig)
        reports["curves"] = "curves.png"
    return reports
