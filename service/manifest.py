"""The model manifest: one pydantic schema shared by training (writes it) and the service (validates it).

This module imports pydantic and the standard library only, so the serving image needs no torch.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

SCHEMA_VERSION = 1
MANIFEST_FILE = "manifest.json"

Kind = Literal["ae", "vae", "cvae"]
Likelihood = Literal["bernoulli", "gaussian"]
DType = Literal["float32", "int64"]


class ManifestError(Exception):
    """A model folder whose manifest or files do not match the contract; the message names file and field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ImageSpec(_Strict):
    channels: Literal[1, 3]
    height: int = Field(gt=0)
    width: int = Field(gt=0)


class TensorSpec(_Strict):
    """One named graph input or output; shape entries are ints, or a string for a dynamic axis ("N")."""

    name: str
    dtype: DType
    shape: list[int | str]


class GraphFile(_Strict):
    path: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]

    def input(self, name: str) -> TensorSpec | None:
        return next((t for t in self.inputs if t.name == name), None)

    def output(self, name: str) -> TensorSpec | None:
        return next((t for t in self.outputs if t.name == name), None)


class Files(_Strict):
    encoder: GraphFile
    decoder: GraphFile


class Split(_Strict):
    """How the dataset was divided; `test_indices` are the exact held-out rows of the dataset."""

    seed: int
    stratified: bool
    train_size: int
    validation_size: int
    test_size: int
    test_indices: list[int]

    @model_validator(mode="after")
    def _sizes_agree(self) -> Split:
        if len(self.test_indices) != self.test_size:
            raise ValueError(f"test_size is {self.test_size} but test_indices holds {len(self.test_indices)} entries")
        return self


class Training(_Strict):
    dataset: str
    split: Split
    seed: int
    epochs: int
    best_epoch: int
    batch_size: int
    learning_rate: float
    beta: float
    warmup_epochs: int
    free_bits: float
    augment_shift: int
    train_seconds: float
    library_versions: dict[str, str]


class Metrics(_Strict):
    """Held-out figures measured by `python -m training evaluate` on the exported graphs (nats per image)."""

    split: Literal["test"] = "test"
    n_images: int
    binarization_seed: int | None = None
    negative_elbo: float | None = None
    iw_bound: float | None = None  # negative importance-weighted bound, an upper bound on -log p(x)
    iw_samples: int | None = None
    reconstruction: float | None = None  # E_q[-log p(x|z)]
    kl: float | None = None
    active_units: int
    recon_squared_error: float  # per image, grayscale in [0, 1], decoded at z = mu
    classifier_accuracy: float | None = None  # the independent classifier on real held-out images
    label_agreement: float | None = None  # share of generated images classified as the requested label
    frechet_distance: float | None = None  # generated vs held-out, classifier features
    frechet_floor: float | None = None  # real training images vs held-out, same features and counts


class Manifest(_Strict):
    schema_version: Literal[1] = SCHEMA_VERSION
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    version: str
    kind: Kind
    description: str = ""
    created: str
    image: ImageSpec
    latent_dim: int = Field(gt=0)
    labels: list[str] | None = None
    encoder_conditioned: bool = False
    likelihood: Likelihood
    gaussian_sigma: float | None = None  # the decoder's learned pixel noise, for a gaussian likelihood
    files: Files
    training: Training
    metrics: Metrics
    reports: dict[str, str] = {}

    @property
    def conditional(self) -> bool:
        return self.labels is not None

    @property
    def stochastic(self) -> bool:
        """True when q(z|x) is a distribution and the prior can be sampled (vae, cvae)."""
        return self.kind != "ae"

    @model_validator(mode="after")
    def _consistent(self) -> Manifest:
        if self.kind == "cvae" and not self.labels:
            raise ValueError("kind 'cvae' needs 'labels' (the class names)")
        if self.kind != "cvae" and self.labels is not None:
            raise ValueError(f"kind {self.kind!r} is unconditional: 'labels' must be null")
        if self.encoder_conditioned and self.kind != "cvae":
            raise ValueError("'encoder_conditioned' is only meaningful for kind 'cvae'")
        if self.likelihood == "gaussian" and self.gaussian_sigma is None:
            raise ValueError("likelihood 'gaussian' needs 'gaussian_sigma'")
        return self


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _describe(error: ValidationError) -> str:
    parts = []
    for e in error.errors():
        field = ".".join(str(p) for p in e["loc"]) or "(top level)"
        parts.append(f"field '{field}': {e['msg']}")
    return "; ".join(parts)


def load_manifest(folder: Path) -> Manifest:
    """Read and validate `folder/manifest.json`; raise ManifestError naming the file and the field."""
    path = Path(folder) / MANIFEST_FILE
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise ManifestError(f"{path}: missing; every model folder needs a {MANIFEST_FILE}") from None
    except json.JSONDecodeError as e:
        raise ManifestError(f"{path}: not valid JSON ({e})") from None
    try:
        return Manifest.model_validate(raw)
    except ValidationError as e:
        raise ManifestError(f"{path}: {_describe(e)}") from None


def verify_files(folder: Path, manifest: Manifest) -> dict[str, Path]:
    """Check each graph file exists and matches its sha256; return {'encoder': path, 'decoder': path}."""
    found = {}
    for role in ("encoder", "decoder"):
        entry: GraphFile = getattr(manifest.files, role)
        path = Path(folder) / entry.path
        if not path.is_file():
            raise ManifestError(f"{path}: missing, but manifest field 'files.{role}.path' names it")
        actual = sha256_file(path)
        if actual != entry.sha256:
            raise ManifestError(
                f"{path}: sha256 is {actual}, but manifest field 'files.{role}.sha256' says {entry.sha256}; "
                "the file was changed after export (re-export the model)"
            )
        found[role] = path
    return found


def write_manifest(folder: Path, manifest: Manifest) -> Path:
    path = Path(folder) / MANIFEST_FILE
    path.write_text(json.dumps(manifest.model_dump(mode="json"), indent=2) + "\n")
    return path
