"""Measure /score's out-of-distribution test through the service, and write the figures into the manifests.

    python -m training.ood_report models/mnist-vae models/fashion-cvae ... [--write]

Starts the service on the models' folder (or uses --url), sends each model's held-out images and images of other
kinds as PNG files through the Python client, and reports per set: the AUROC of the test's `ood` and of the raw
-log p(x) (an ae: its squared error), out-of-distribution images as positives, and the share flagged `anomalous`
at the default threshold; for a conditional model, also its label-free -log p(x) and the accuracy of p(y|x) on the
held-out images. The other kinds: the other bundled dataset (Fashion-MNIST for a digit model, MNIST digits for a
clothing model), uniform noise, the held-out images inverted, letters drawn in a font, and crops of photographs.
"""

from __future__ import annotations

import argparse
import os
import socket
import string
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np
from PIL import Image, ImageDraw, ImageFont
from sklearn.metrics import roc_auc_score
from vae_client import Client

from vaeformat.manifest import Manifest, OodCheck, load_manifest, write_manifest

from .data import check_rows, load_dataset

SEED = 0
PER_SET = 1000  # images of the other dataset; the smaller generated sets have OTHER_KINDS images
OTHER_KINDS = 300


def _floats(images: np.ndarray) -> np.ndarray:
    return images.astype(np.float32) / 255.0


def other_dataset(dataset: str, rng: np.random.Generator) -> tuple[str, np.ndarray]:
    """1,000 images of the bundled dataset the model was not trained on."""
    if dataset == "fashion":
        digits = load_dataset("mnist")
        return "MNIST digits", _floats(digits.images[np.sort(rng.choice(len(digits), PER_SET, replace=False))])
    clothes = load_dataset("fashion")
    assert clothes.official_test is not None
    rows = np.sort(rng.choice(clothes.official_test, PER_SET, replace=False))
    return "Fashion-MNIST test images", _floats(clothes.images[rows])


def letters(n: int, rng: np.random.Generator) -> np.ndarray:
    out = []
    for _ in range(n):
        image = Image.new("L", (28, 28), 0)
        font = ImageFont.load_default(size=int(rng.integers(16, 24)))
        char = string.ascii_letters[int(rng.integers(len(string.ascii_letters)))]
        ImageDraw.Draw(image).text((int(rng.integers(4, 10)), int(rng.integers(0, 6))), char, fill=255, font=font)
        out.append(np.asarray(image))
    return _floats(np.stack(out)[:, None])


def photo_crops(n: int, rng: np.random.Generator) -> np.ndarray:
    from sklearn.datasets import load_sample_images

    photos = [np.asarray(Image.fromarray(p).convert("L")) for p in load_sample_images().images]
    out = []
    for i in range(n):
        grey = photos[i % len(photos)]
        side = int(rng.integers(28, 200))
        y, x = int(rng.integers(0, grey.shape[0] - side)), int(rng.integers(0, grey.shape[1] - side))
        crop = Image.fromarray(grey[y : y + side, x : x + side]).resize((28, 28), Image.Resampling.BILINEAR)
        out.append(np.asarray(crop))
    return _floats(np.stack(out)[:, None])


def other_sets(m: Manifest, held_out: np.ndarray) -> list[tuple[str, np.ndarray]]:
    rng = np.random.default_rng(SEED)
    sets = [other_dataset(m.training.dataset, rng)]
    sets.append(("uniform noise", rng.random((OTHER_KINDS, *held_out.shape[1:]), dtype=np.float32)))
    sets.append(("held-out images inverted", 1.0 - held_out[:OTHER_KINDS]))
    if held_out.shape[1:] == (1, 28, 28):
        sets.append(("letters in a font", letters(OTHER_KINDS, rng)))
        sets.append(("photograph crops", photo_crops(OTHER_KINDS, rng)))
    return sets


def _column(scores, name: str) -> np.ndarray:
    return np.array([np.inf if getattr(s, name) is None else getattr(s, name) for s in scores.scores])


def auroc(inside: np.ndarray, outside: np.ndarray) -> float:
    labels = np.r_[np.zeros(len(inside)), np.ones(len(outside))]
    values = np.nan_to_num(np.r_[inside, outside], posinf=np.finfo(np.float64).max)
    return float(roc_auc_score(labels, values))


def measure(client: Client, folder: Path, samples: int, marginal_samples: int, log: Callable[[str], None]) -> Manifest:
    m = load_manifest(folder)
    data = load_dataset(m.training.dataset, size=(m.image.height, m.image.width), channels=m.image.channels)
    check_rows(data, m.training.split.dataset_size, m.training.split.test_indices, m.name)
    held = np.asarray(m.training.split.test_indices)
    held_out = _floats(data.images[held])
    raw = "nll" if m.stochastic else "squared_error"

    def score(images: np.ndarray, k: int = samples):
        return client.score(images, samples=k if m.stochastic else None, seed=SEED, model=m.name)

    inside = score(held_out)
    ood_in, raw_in = _column(inside, "ood"), _column(inside, raw)
    flagged_in = float(np.mean([bool(s.anomalous) for s in inside.scores]))
    log(f"{m.name}: {len(held)} held-out images, {100 * flagged_in:.1f}% flagged")
    checks = []
    for name, images in other_sets(m, held_out):
        outside = score(images)
        check = OodCheck(
            dataset=name,
            images=len(images),
            auroc=auroc(ood_in, _column(outside, "ood")),
            auroc_nll=auroc(raw_in, _column(outside, raw)),
            flagged=float(np.mean([bool(s.anomalous) for s in outside.scores])),
        )
        checks.append(check)
        log(
            f"  {name:<28} AUROC {check.auroc:.4f} (raw {raw} {check.auroc_nll:.4f}), "
            f"{100 * check.flagged:.1f}% flagged"
        )
    assert m.metrics.ood is not None, f"{m.name} has no out-of-distribution test; run python -m training fit-ood"
    ood = m.metrics.ood.model_copy(update={"held_out_flagged": flagged_in, "checks": checks})
    update: dict = {"ood": ood}
    if m.kind == "cvae" and marginal_samples > 0:
        truth = data.known_labels()[0][held]
        free = score(held_out, marginal_samples)
        nll = float(np.mean(_column(free, "nll")))
        names = m.labels or []
        probs = [s.label_probabilities or {} for s in free.scores]
        best = [max(p, key=lambda name, p=p: p[name]) for p in probs]
        accuracy = float(np.mean([names.index(b) == t for b, t in zip(best, truth, strict=True)]))
        update.update(marginal_nll=nll, label_accuracy=accuracy)
        log(f"  no label, K={marginal_samples}: -log p(x) {nll:.2f} nats, p(y|x) accuracy {100 * accuracy:.1f}%")
    return m.model_copy(update={"metrics": m.metrics.model_copy(update=update)})


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def served(models_dir: Path) -> Iterator[str]:
    port = _free_port()
    env = {**os.environ, "VAE_MODELS_DIR": str(models_dir), "VAE_PORT": str(port), "VAE_LOG_LEVEL": "warning"}
    proc = subprocess.Popen([sys.executable, "-m", "service"], env=env, stdout=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while True:
            try:
                if httpx.get(f"{url}/ready", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the service on {models_dir} did not become ready")
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        proc.wait(30)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.ood_report", description=__doc__.splitlines()[0])
    p.add_argument("folders", type=Path, nargs="+", help="model folders in one models folder, e.g. models/mnist-vae")
    p.add_argument("--url", help="a running service that serves them (default: start one on their folder)")
    p.add_argument("--samples", type=int, default=64, help="importance samples per image (the service's default)")
    p.add_argument(
        "--marginal-samples",
        type=int,
        default=500,
        help="K per label for a conditional model's label-free -log p(x) and p(y|x); 0 keeps the figures the "
        "export measured in-process at its own K (the label-free pass is most of a cvae's time here)",
    )
    p.add_argument("--write", action="store_true", help="write the figures into the manifests")
    a = p.parse_args(argv)
    parents = {f.resolve().parent for f in a.folders}
    if a.url is None and len(parents) != 1:
        p.error("the folders must share one models folder (or give --url of a service that serves them all)")
    with served(parents.pop()) if a.url is None else _given(a.url) as url:
        client = Client(url, timeout=600)
        for folder in a.folders:
            manifest = measure(client, folder, a.samples, a.marginal_samples, print)
            if a.write:
                write_manifest(folder, manifest)
    return 0


@contextmanager
def _given(url: str) -> Iterator[str]:
    yield url


if __name__ == "__main__":
    sys.exit(main())
