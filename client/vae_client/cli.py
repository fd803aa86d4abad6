"""`vae-client`: offline batch jobs against a running service, resumable, with a progress bar.

    vae-client encode FOLDER -o latents.npy          # mu of every image, in file-name order (+ latents.files.txt)
    vae-client decode latents.npy -o images.npy      # images [N, C, H, W] in [0, 1]
    vae-client sample -n 10000 --seed 1 -o samples.npy
    vae-client score FOLDER -o scores.csv            # file, nll, squared_error, percentile, anomalous

A job writes its finished parts beside the output (OUTPUT.parts/); run the same command again after an
interruption and it goes on from the first part not yet done. The output is written once every part is.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import re
import shutil
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import httpx
import numpy as np

from .clients import Client
from .errors import ServiceError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg"}
PART_ROWS = 1024  # rows a part holds: what an interruption can cost


def natural_key(name: str) -> list[int | str]:
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def image_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise SystemExit(f"vae-client: {folder} is not a folder of PNG or JPEG images")
    found = [p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()]
    if not found:
        raise SystemExit(f"vae-client: no PNG or JPEG images in {folder}")
    return sorted(found, key=lambda p: natural_key(str(p.relative_to(folder))))


class Parts:
    """Finished parts of one job in OUTPUT.parts/, each written whole (a temporary file renamed), so that a
    rerun of the same job skips them; a different job (other inputs or options) starts afresh."""

    def __init__(self, output: Path, job: dict[str, object]) -> None:
        self.folder = output.with_name(output.name + ".parts")
        key = hashlib.sha256(json.dumps(job, sort_keys=True).encode()).hexdigest()
        stamp = self.folder / "job.sha256"
        if self.folder.is_dir() and (not stamp.is_file() or stamp.read_text() != key):
            shutil.rmtree(self.folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        stamp.write_text(key)

    def path(self, index: int) -> Path:
        return self.folder / f"{index:06d}.npy"

    def run(self, count: int, make: Callable[[slice], np.ndarray], quiet: bool) -> list[np.ndarray]:
        spans = [slice(start, min(start + PART_ROWS, count)) for start in range(0, count, PART_ROWS)]
        done = sum(self.path(i).is_file() for i in range(len(spans)))
        if done and not quiet:
            print(f"vae-client: resuming: {done} of {len(spans)} parts already done", file=sys.stderr)
        for i, rows in enumerate(spans):
            if self.path(i).is_file():
                continue
            if not quiet:
                print(f"part {i + 1}/{len(spans)}: rows {rows.start}-{rows.stop - 1}", file=sys.stderr)
            array = make(rows)
            tmp = self.path(i).with_suffix(".tmp")
            with tmp.open("wb") as f:
                np.save(f, array, allow_pickle=False)
            os.replace(tmp, self.path(i))
        return [np.load(self.path(i), allow_pickle=False) for i in range(len(spans))]

    def finish(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def _save(output: Path, array: np.ndarray) -> None:
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(output.name + ".tmp")
    with tmp.open("wb") as f:
        np.save(f, array, allow_pickle=False)
    os.replace(tmp, output)


# Every option that changes what the service answers: a rerun resumes from earlier parts only when all are the same.
ANSWER_OPTIONS = ("model", "label", "n", "seed", "prior", "samples")


def job_of(a: argparse.Namespace, inputs: object) -> dict[str, object]:
    """What names a job's parts: the command, its inputs and the options that change the answers."""
    return {"command": a.command, "inputs": inputs, **{o: getattr(a, o, None) for o in ANSWER_OPTIONS}}


def encode(client: Client, a: argparse.Namespace) -> None:
    files = image_files(a.folder)
    parts = Parts(a.output, job_of(a, [str(f) for f in files]))
    chunks = parts.run(
        len(files),
        lambda rows: client.encode(files[rows], label=a.label, model=a.model, progress=not a.quiet).mu,
        a.quiet,
    )
    _save(a.output, np.concatenate(chunks))
    a.output.with_suffix(".files.txt").write_text("".join(f"{f.relative_to(a.folder)}\n" for f in files))
    parts.finish()


def decode(client: Client, a: argparse.Namespace) -> None:
    z = np.load(a.latents, allow_pickle=False, mmap_mode="r")
    if z.ndim != 2:
        raise SystemExit(f"vae-client: {a.latents} holds an array of shape {z.shape}; decode takes [N, latent_dim]")
    stat = a.latents.stat()
    parts = Parts(a.output, job_of(a, [str(a.latents), stat.st_size, stat.st_mtime_ns]))
    chunks = parts.run(
        len(z),
        lambda rows: client.decode(np.asarray(z[rows]), label=a.label, model=a.model, progress=not a.quiet),
        a.quiet,
    )
    _save(a.output, np.concatenate(chunks))
    parts.finish()


def sample(client: Client, a: argparse.Namespace) -> None:
    if a.seed is None:
        raise SystemExit("vae-client: sample needs --seed: a resumed job must draw the same images")
    parts = Parts(a.output, job_of(a, None))

    def draw(rows: slice) -> np.ndarray:
        seed = a.seed + rows.start // PART_ROWS * 100_003  # parts never share a request seed
        got = client.sample(rows.stop - rows.start, seed=seed, label=a.label, prior=a.prior, model=a.model)
        return got.images

    _save(a.output, np.concatenate(parts.run(a.n, draw, a.quiet)))
    parts.finish()


SCORE_FIELDS = ("nll", "squared_error", "percentile", "anomalous")


def score(client: Client, a: argparse.Namespace) -> None:
    files = image_files(a.folder)

    def rows_of(rows: slice) -> np.ndarray:
        seed = None if a.seed is None else a.seed + rows.start
        got = client.score(files[rows], samples=a.samples, seed=seed, label=a.label, model=a.model)
        return np.array([[_number(getattr(s, f)) for f in SCORE_FIELDS] for s in got.scores], dtype=np.float64)

    parts = Parts(a.output, job_of(a, [str(f) for f in files]))
    table = np.concatenate(parts.run(len(files), rows_of, a.quiet))
    a.output.parent.mkdir(parents=True, exist_ok=True)
    with a.output.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["file", *SCORE_FIELDS])
        for path, row in zip(files, table, strict=True):
            writer.writerow([path.relative_to(a.folder), *("" if np.isnan(v) else f"{v:.6g}" for v in row)])
    parts.finish()


def _number(value: object) -> float:
    return float("nan") if value is None else float(value)  # type: ignore[arg-type]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vae-client", description=__doc__.splitlines()[0])
    p.add_argument(
        "--url",
        default=os.environ.get("VAE_URL", "http://127.0.0.1:8000"),
        help="the service's base URL (default: $VAE_URL, else http://127.0.0.1:8000)",
    )
    p.add_argument("--api-key", default=os.environ.get("VAE_API_KEY"), help="its API key (default: $VAE_API_KEY)")
    p.add_argument("--model", help="model name (default: the service's default model)")
    p.add_argument("--label", help="class label, for a conditional model")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    sub = p.add_subparsers(dest="command", required=True)
    e = sub.add_parser("encode", help="mu of every image in a folder (file-name order) as an .npy [N, latent_dim]")
    e.add_argument("folder", type=Path)
    e.add_argument("-o", "--output", type=Path, required=True)
    d = sub.add_parser("decode", help="images [N, C, H, W] decoded from an .npy of latents [N, latent_dim]")
    d.add_argument("latents", type=Path)
    d.add_argument("-o", "--output", type=Path, required=True)
    s = sub.add_parser("sample", help="n images from the prior as an .npy [N, C, H, W]")
    s.add_argument("-n", type=int, required=True)
    s.add_argument("--seed", type=int, help="needed: a resumed job draws the same images")
    s.add_argument("--prior", choices=["fitted", "standard"])
    s.add_argument("-o", "--output", type=Path, required=True)
    c = sub.add_parser("score", help="-log p(x), squared error and percentile of every image in a folder, as CSV")
    c.add_argument("folder", type=Path)
    c.add_argument("--samples", type=int, help="importance samples per image (default: the service's)")
    c.add_argument("--seed", type=int)
    c.add_argument("-o", "--output", type=Path, required=True)
    return p


COMMANDS: dict[str, Callable[[Client, argparse.Namespace], None]] = {
    "encode": encode,
    "decode": decode,
    "sample": sample,
    "score": score,
}


def main(argv: Sequence[str] | None = None) -> int:
    a = _parser().parse_args(argv)
    try:
        with Client(a.url, api_key=a.api_key, timeout=120) as client:
            COMMANDS[a.command](client, a)
    except ServiceError as e:
        print(f"vae-client: the service answered {e.status}: {e.detail}", file=sys.stderr)
        return 1
    except httpx.TransportError as e:
        print(f"vae-client: cannot reach the service at {a.url} ({e}); start it, or give --url", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"vae-client: {e}", file=sys.stderr)
        return 1
    if not a.quiet:
        print(f"wrote {a.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
