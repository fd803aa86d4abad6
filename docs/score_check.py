"""Does `POST /score` reproduce the manifest's bound? `python -m docs.score_check` (writes docs/score_check.json).

Scores every held-out image of each model with a likelihood (the manifest's `training.split.test_indices` of its own
dataset, the rows the export's evaluation measured; a cvae's with each image's own label, as its bound is on
-log p(x | label)) through
the service itself (create_app on models/, in-process over httpx's ASGI transport), at the default K=64 and at the
evaluation's K (`metrics.iw_samples`, 500), and prints the mean `nll` beside the manifest's `iw_bound`. The
importance-weighted estimate of -log p(x) is biased upwards by Jensen's inequality, by less as K grows, so the K=64
mean lies above the K=500 bound; at the evaluation's K the two measure the same thing on the same images and must
agree within sampling noise, and the check fails (exit 1) when they differ by more than TOLERANCE nats.

    python -m docs.score_check                            # score through the service, write docs/score_check.json
    python -m docs.score_check fashion-cvae               # measure one model again; the others' rows stay
    python -m docs.score_check --write docs/service.md    # the table of docs/service.md from that file
    python -m docs.score_check --check docs/service.md    # exit 1 if the copy there is stale (no scoring)
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import sys
import time
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

from docs.markers import print_write_or_check
from service.http.app import create_app
from service.settings import Settings
from training.data import load_dataset
from vaeformat.manifest import Manifest, load_manifest

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_K = 64
ROWS_PER_REQUEST = 16384  # images x K x labels per request: VAE_MAX_SCORE_ROWS' default
CONCURRENT = 4  # requests in flight, so that their decoder rows share batches
TOLERANCE = 0.5  # nats: at the evaluation's K the service's mean and the manifest's bound measure the same thing
BEGIN, END = "<!-- score-check:begin -->", "<!-- score-check:end -->"


def png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


async def mean_nll(
    http: httpx.AsyncClient, model: str, images: list[bytes], k: int, labels: list[int] | None = None, classes: int = 1
) -> float:
    """The mean `nll` over `images` at K=k, each request seeded by its first row (so a rerun gives the same).

    A conditional model scores -log p(x | label): `labels` are the images' own, as the evaluation's bound used; it
    draws K for each of its `classes` labels (its out-of-distribution test uses them all)."""
    per = max(1, min(64, ROWS_PER_REQUEST // (k * classes)))
    gate = asyncio.Semaphore(CONCURRENT)

    async def one(start: int) -> list[float]:
        files = [("files", (f"{i}.png", b, "image/png")) for i, b in enumerate(images[start : start + per])]
        params: dict = {"model": model, "samples": k, "seed": start}
        if labels is not None:
            params["label"] = ",".join(str(c) for c in labels[start : start + per])
        async with gate:
            r = await http.post("/score", params=params, files=files)
        if r.status_code != 200:
            raise SystemExit(f"/score {model} K={k}: {r.status_code} {r.text}")
        return [s["nll"] for s in r.json()["scores"]]

    parts = await asyncio.gather(*(one(s) for s in range(0, len(images), per)))
    return float(np.mean([v for part in parts for v in part]))


async def check(models: Path, names: list[str]) -> dict[str, dict[str, float]]:
    manifests: dict[str, Manifest] = {n: load_manifest(models / n) for n in names}
    # The default batch rows keep a 500-draw image in one runtime call; the deadline fits a backlog of them.
    settings = Settings(models_dir=models, max_batch_rows=512, request_deadline_ms=600_000)
    app = create_app(settings)
    results: dict[str, dict[str, float]] = {}
    async with app.lifespan():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://check", timeout=None) as http:
            for name, m in manifests.items():
                data = load_dataset(m.training.dataset)
                test = np.asarray(m.training.split.test_indices)
                images = [png(d[0] if d.shape[0] == 1 else d.transpose(1, 2, 0)) for d in data.images[test]]
                labels = [int(c) for c in data.known_labels()[0][test]] if m.labels else None
                bound, samples = m.metrics.iw_bound, m.metrics.iw_samples
                if bound is None or samples is None:
                    raise SystemExit(f"{name}: its manifest has no importance-weighted bound to check against")
                row: dict[str, float] = {"iw_bound": bound, "iw_samples": samples}
                for k in sorted({DEFAULT_K, samples}):
                    start = time.perf_counter()
                    row[f"nll_k{k}"] = await mean_nll(http, name, images, k, labels, len(m.labels or [None]))
                    print(
                        f"{name}: K={k}: mean nll {row[f'nll_k{k}']:.2f} over {len(images)} held-out images "
                        f"vs iw_bound {row['iw_bound']:.2f} ({time.perf_counter() - start:.0f} s)",
                        flush=True,
                    )
                results[name] = row
    return results


def table(results: dict[str, dict[str, float]]) -> str:
    """The docs' table of the figures in docs/score_check.json: each mean `nll` with its difference from the bound."""
    ks = sorted({int(key.removeprefix("nll_k")) for row in results.values() for key in row if key.startswith("nll_k")})
    rows = [
        "| model | `iw_bound` | " + " | ".join(f"mean `nll`, K={k}" for k in ks) + " |",
        "|---|---|" + "---|" * len(ks),
    ]
    for name, row in sorted(results.items()):
        cells = [
            f"{row[f'nll_k{k}']:.2f} ({row[f'nll_k{k}'] - row['iw_bound']:+.2f})" if f"nll_k{k}" in row else "–"
            for k in ks
        ]
        rows.append(f"| `{name}` | {row['iw_bound']:.2f} (K={int(row['iw_samples'])}) | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def off_the_bound(results: dict[str, dict[str, float]]) -> list[str]:
    """The models whose mean `nll` at the evaluation's K is more than TOLERANCE from their bound."""
    return [
        f"{name}: mean nll {row[key]:.2f} at K={int(row['iw_samples'])} vs iw_bound {row['iw_bound']:.2f}"
        for name, row in sorted(results.items())
        if abs(row[key := f"nll_k{int(row['iw_samples'])}"] - row["iw_bound"]) > TOLERANCE
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m docs.score_check", description=__doc__.splitlines()[0])
    parser.add_argument("--models-dir", type=Path, default=ROOT / "models")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "score_check.json")
    parser.add_argument("--write", type=Path, help="a page whose table between the markers is replaced from --out")
    parser.add_argument("--check", type=Path, help="a page whose table between the markers must be the one of --out")
    parser.add_argument("models", nargs="*", help="model names (default: every model with a likelihood bound)")
    a = parser.parse_args(argv)
    if a.write or a.check:
        results = json.loads(a.out.read_text())
        return print_write_or_check(table(results), BEGIN, END, a.write, a.check, "python -m docs.score_check")
    names = a.models or sorted(
        p.name
        for p in a.models_dir.iterdir()
        if (p / "manifest.json").is_file() and load_manifest(p).metrics.iw_bound is not None
    )
    results = asyncio.run(check(a.models_dir, names))
    if a.models and a.out.is_file():  # the named models' rows are measured again; the others' stay
        results = {**json.loads(a.out.read_text()), **results}
    a.out.write_text(json.dumps(dict(sorted(results.items())), indent=2) + "\n")
    print(f"wrote {a.out}\n{table(results)}")
    off = off_the_bound(results)
    for line in off:
        print(f"more than {TOLERANCE} nats off: {line}", file=sys.stderr)
    return 1 if off else 0


if __name__ == "__main__":
    sys.exit(main())
