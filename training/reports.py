"""Report images beside each model: samples, held-out digits with their reconstructions, training curves."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
from PIL import Image, ImageDraw, ImageFont  # noqa: E402

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
            img.transpose(1, 2, 0)
        )
    pixels = (canvas.clip(0, 1) * 255).round().astype(np.uint8)
    return Image.fromarray(pixels[..., 0] if c == 1 else pixels)


SCALE = 3  # report grids are enlarged this many times (nearest neighbour), then captioned


def _save(img: Image.Image, path: Path, title: str, rows: list[str] | None = None, cell: int = 0, pad: int = 2) -> str:
    """Enlarge a grid, write `title` above it and, when given, each row's name at its left; save as PNG.

    `cell` and `pad` are the grid's image height and border in pixels before enlarging (where its rows are).
    """
    font = ImageFont.load_default(size=14)
    img = img.convert("RGB").resize((img.width * SCALE, img.height * SCALE), Image.Resampling.NEAREST)
    names = [name if len(name) <= 24 else name[:23] + "…" for name in rows or []]
    margin = max((int(font.getlength(n)) + 12 for n in names), default=0)
    title_h = 24
    width = max(margin + img.width, int(font.getlength(title)) + 12)
    canvas = Image.new("RGB", (width, title_h + img.height), "white")
    canvas.paste(img, (margin, title_h))
    draw = ImageDraw.Draw(canvas)
    draw.text((6, title_h // 2), title, fill="black", font=font, anchor="lm")
    for r, name in enumerate(names):
        middle = title_h + (pad + r * (cell + pad) + cell / 2) * SCALE
        draw.text((margin - 6, middle), name, fill="black", font=font, anchor="rm")
    canvas.save(path)
    return path.name


def loss_range(history: History) -> tuple[float, float]:
    """The curves' y-range, from the train and validation objectives, so a colour model's thousands of nats fit as
    MNIST's ~100 do. In a run of 5 epochs or more, the first is left above the range when it alone would squeeze
    the rest into less than half the height (a long run's first epoch often sits far above everything after it)."""
    values = history.train_loss + history.val_loss
    rest = history.train_loss[1:] + history.val_loss[1:]
    lo, hi = min(values), max(values)
    if len(history.epoch) >= 5 and hi - lo > 2 * (max(rest) - lo):
        hi = max(rest)
    margin = max(0.05 * (hi - lo), 0.01 * abs(hi), 1.0)
    return lo - margin, hi + margin


def write_reports(
    folder: Path,
    pair: OnnxPair,
    x_test: np.ndarray,
    y_test: np.ndarray | None,
    latent_dim: int,
    num_classes: int | None,
    stochastic: bool,
    history: History | None,
    seed: int = 0,
    class_names: list[str] | None = None,
) -> dict[str, str]:
    """Write the report PNGs into `folder`; return {report name: file name} for the manifest.

    `class_names` label a conditional model's rows of samples (default: the class indices).
    """
    rng = np.random.default_rng(seed)
    reports = {}
    h = x_test.shape[2]
    if stochastic:
        if num_classes:  # one row per class
            per = 10
            labels = np.repeat(np.arange(num_classes), per).astype(np.int64)
            names = class_names or [str(c) for c in range(num_classes)]
            title, rows = f"{per} draws z ~ N(0, I) per row, decoded with the row's label", names
        else:
            per, labels = 8, None
            title, rows = "64 draws z ~ N(0, I) from the prior, decoded (pixel means)", None
        n = len(labels) if labels is not None else 64
        z = rng.standard_normal((n, latent_dim), dtype=np.float32)
        reports["samples"] = _save(grid(pair.decode(z, labels)["image"], per), folder / "samples.png", title, rows, h)
    pick = rng.choice(len(x_test), min(16, len(x_test)), replace=False)
    lab = None if (y_test is None or not num_classes) else y_test[pick]
    recon = pair.decode(pair.encode(x_test[pick], lab)["mu"], lab)["image"]
    reports["reconstructions"] = _save(
        grid(np.concatenate([x_test[pick], recon]), len(pick)),
        folder / "reconstructions.png",
        f"{len(pick)} held-out images and their reconstructions, decoded at z = mu",
        ["held-out", "reconstruction"],
        h,
    )
    if history is not None and history.epoch:
        fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.5))
        a.plot(history.epoch, history.train_loss, label="train objective")
        a.plot(history.epoch, history.val_loss, label="validation objective")
        a.set_xlabel("epoch"), a.set_ylabel("nats per image"), a.legend()
        a.set_ylim(*loss_range(history))
        b.plot(history.epoch, history.train_rec, label="reconstruction")
        b.plot(history.epoch, history.train_kl, label="KL")
        b.set_xlabel("epoch"), b.set_ylabel("nats per image (train)"), b.legend()
        for axes in (a, b):
            axes.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
        fig.tight_layout()
        fig.savefig(folder / "curves.png", dpi=80)
        plt.close(fig)
        reports["curves"] = "curves.png"
    return reports
