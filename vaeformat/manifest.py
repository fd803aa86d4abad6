"""The model manifest: one pydantic schema shared by training (writes it) and the service (validates it).

This package imports pydantic, numpy and the standard library only, so the serving image needs no torch. Paths in a
manifest are relative to the model's folder and never climb out of it ('..' and absolute paths fail validation);
files are read through vaeformat/files.py, which confines every read to the models folder.
"""

from __future__ import annotations

import json
import os
from pathlib import Path, PurePosixPath
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from .errors import ManifestError
from .files import MANIFEST_FILE, open_confined, shown, verified, why

SCHEMA_VERSION: Literal[1] = 1
# The largest part of a manifest is test_indices: 16 KB for the shipped models' 1,000 held-out images, about 120 KB
# for all 10,000 of MNIST's. 4 MiB refuses only a mistake or an attack, before a byte of it is read.
MAX_MANIFEST_BYTES = 4 * 1024 * 1024

Kind = Literal["ae", "vae", "cvae"]
Likelihood = Literal["bernoulli", "gaussian"]
DType = Literal["float32", "int64"]


def _inside_the_folder(value: str) -> str:
    """A manifest's file path: '/'-separated, relative to the model's folder, and never leaving it."""
    fix = "give a '/'-separated path relative to the model's folder, such as 'encoder.onnx'"
    quoted = repr(value if len(value) <= 80 else value[:77] + "...")
    if "\\" in value or "\0" in value:
        raise ValueError(f"{quoted} holds a backslash or a NUL character; {fix}")
    if value.startswith("/"):
        raise ValueError(f"{quoted} is absolute; {fix}")
    parts = PurePosixPath(value).parts
    if ".." in parts:
        raise ValueError(f"{quoted} climbs out of the model's folder with '..'; {fix}")
    if not parts:
        raise ValueError(f"{quoted} names no file; {fix}")
    return value


RelativeFile = Annotated[str, AfterValidator(_inside_the_folder)]


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
    path: RelativeFile
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


class PriorFile(_Strict):
    """A fitted prior beside the graphs (vaeformat/prior.py documents the file), checked at load like them."""

    path: RelativeFile
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    kind: Literal["gmm"] = "gmm"  # a Gaussian mixture over the posterior means, full covariances
    components: list[int]  # per class (one entry for an unconditional model)
    fitted_on: int = Field(ge=1)  # posterior means fitted: the dataset's rows outside the held-out split
    selection: str  # how the covariance type and the number of components were chosen


class Split(_Strict):
    """How the dataset was divided; `test_indices` are the exact held-out rows of the dataset."""

    seed: int
    stratified: bool
    train_size: int
    validation_size: int
    test_size: int
    test_indices: list[int]
    dataset_size: int | None = None  # images in the dataset the rows index: a dataset that changed is refused

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
    # Where it trained (optional: manifests written before these fields existed still load).
    device: str | None = None  # "cpu" or "cuda (<GPU name>)"
    precision: Literal["fp32", "bf16"] | None = None  # bf16: autocast of the network passes on CUDA
    world_size: int | None = Field(default=None, ge=1)  # processes in the data-parallel (torchrun) run
    corrupt: str | None = None  # a denoising autoencoder's input corruption: gaussian:STD, mask:P or saltpepper:P
    class_guidance: float | None = Field(default=None, ge=0)  # a cvae's weight of class guidance (0: none)


OodFeature = Literal["nll", "kl", "reconstruction", "squared_error", "complexity", "pixel_nll"]


class PixelsFile(_Strict):
    """The test's pixel model beside the graphs (vaeformat/pixels.py documents the file), checked at load like them."""

    path: RelativeFile
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    kind: Literal["histogram"] = "histogram"  # each pixel's histogram of values, each count plus one
    bins: int = Field(ge=2)
    fitted_on: int = Field(ge=1)  # training images counted


class OodCheck(_Strict):
    """One out-of-distribution set measured through the service against the held-out images."""

    dataset: str  # what the images are, e.g. "fashion test split" or "uniform noise"
    images: int
    auroc: float  # of the out-of-distribution test's `ood`, out-of-distribution images as positives
    auroc_nll: float | None = None  # of the raw -log p(x) (or an ae's squared error), for comparison
    flagged: float  # share `anomalous` at the default threshold


class OodFit(_Strict):
    """/score's out-of-distribution test (vaeformat/estimates.py): a Gaussian mixture over the statistics of
    in-distribution images never trained on, and the quantiles of their own -log densities under it."""

    method: Literal["gaussian-mixture"] = "gaussian-mixture"
    features: list[OodFeature] = Field(min_length=1)
    weights: list[float] = Field(min_length=1)  # [M], summing to 1
    means: list[list[float]]  # [M][F]
    precisions: list[list[list[float]]]  # [M][F][F], inverse covariances
    quantiles: list[float] = Field(min_length=2)  # 101: 0, 1, ..., 100 %
    samples: int = Field(gt=0)  # importance samples per image (and label) the statistics were measured with
    binarization_seed: int | None = None
    fitted_on: str  # which images, e.g. "validation split"
    rows: list[int]  # their rows of the dataset
    held_out_flagged: float | None = None  # share of the test split above the default threshold, through the service
    checks: list[OodCheck] = []
    pixels: PixelsFile | None = None  # needed by the feature pixel_nll

    @model_validator(mode="after")
    def _shapes(self) -> OodFit:
        f, m = len(self.features), len(self.weights)
        if "pixel_nll" in self.features and self.pixels is None:
            raise ValueError("ood: the feature pixel_nll needs the pixel model, 'pixels'")
        if len(self.means) != m or any(len(r) != f for r in self.means):
            raise ValueError(f"ood: means must be {m}x{f} for {m} components and {f} features")
        if len(self.precisions) != m or any(len(p) != f or any(len(r) != f for r in p) for p in self.precisions):
            raise ValueError(f"ood: precisions must be {m}x{f}x{f} for {m} components and {f} features")
        if any(w < 0 for w in self.weights) or abs(sum(self.weights) - 1.0) > 1e-6:
            raise ValueError("ood: weights must be non-negative and sum to 1")
        if any(b < a for a, b in zip(self.quantiles, self.quantiles[1:], strict=False)):
            raise ValueError("ood: quantiles must not decrease")
        return self


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
    # Per latent dimension, over the held-out images (optional: older manifests load without them). /traverse ranks
    # dimensions by kl_per_dim (mean closed-form KL(q(z_d|x) || N(0, 1))), else, for an ae, by code_variance.
    kl_per_dim: list[float] | None = None  # vae, cvae: nats per image
    code_variance: list[float] | None = None  # every kind: Var_x of the posterior mean (what active_units counts)
    # The fitted prior (optional: models without one load), judged exactly like the standard prior above, and the
    # held-out scores /score ranks an image among (101 quantiles, 0..100%: -log p(x) by the IW bound with
    # iw_samples draws on the evaluation's binarization, and the squared reconstruction error).
    label_agreement_fitted: float | None = None
    frechet_distance_fitted: float | None = None
    score_quantiles: dict[Literal["nll", "squared_error", "marginal_nll"], list[float]] | None = None
    denoising_squared_error: float | None = None  # a denoising model: corrupted held-out input vs the clean image
    # A conditional model scored without labels: mean -log p(x) over the held-out images and how often the most
    # probable label p(y|x) is the true one (measured with the ood test's importance samples).
    marginal_nll: float | None = None
    label_accuracy: float | None = None
    ood: OodFit | None = None


MODEL_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"  # a model's name: also its folder's, and a URL path segment


class Manifest(_Strict):
    schema_version: Literal[1] = SCHEMA_VERSION
    name: str = Field(pattern=MODEL_NAME_PATTERN)
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
    reports: dict[str, RelativeFile] = {}
    prior: PriorFile | None = None  # a fitted prior, the default for sampling when present

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


def _describe(error: ValidationError) -> str:
    parts = []
    for e in error.errors():
        field = ".".join(str(p) for p in e["loc"]) or "(top level)"
        parts.append(f"field '{field}': {e['msg']}")
    return "; ".join(parts)


def load_manifest(folder: Path, root: Path | None = None) -> Manifest:
    """Read and validate `folder/manifest.json`; raise ManifestError naming the file and the field.

    `root` is the models folder the manifest must lie in (default: `folder` itself); messages show paths relative
    to it.
    """
    path = Path(folder) / MANIFEST_FILE
    where = shown(path, root)
    f, _ = open_confined(path, Path(root or folder).resolve(), where)
    with f:
        try:
            size = os.fstat(f.fileno()).st_size
            if size > MAX_MANIFEST_BYTES:
                raise ManifestError(
                    f"{where}: {size} bytes, over the limit of {MAX_MANIFEST_BYTES} bytes for a manifest"
                )
            data = f.read(MAX_MANIFEST_BYTES + 1)
        except OSError as e:
            raise ManifestError(f"{where}: cannot be read ({why(e)})") from None
    if len(data) > MAX_MANIFEST_BYTES:  # it grew while we looked
        raise ManifestError(f"{where}: over the limit of {MAX_MANIFEST_BYTES} bytes for a manifest")
    try:
        raw = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise ManifestError(f"{where}: not UTF-8 (byte {e.start}); write the manifest as UTF-8 JSON") from None
    except json.JSONDecodeError as e:
        raise ManifestError(f"{where}: not valid JSON ({e})") from None
    except RecursionError:
        raise ManifestError(f"{where}: not valid JSON for a manifest (nested too deeply to parse)") from None
    except ValueError as e:  # e.g. an integer longer than Python's digit limit
        raise ManifestError(f"{where}: not valid JSON for a manifest ({e})") from None
    try:
        return Manifest.model_validate(raw)
    except ValidationError as e:
        raise ManifestError(f"{where}: {_describe(e)}") from None


def verify_files(folder: Path, manifest: Manifest, root: Path | None = None) -> dict[str, Path]:
    """Check each graph file lies inside `root` (default: `folder`) and matches its sha256.

    Returns {'encoder': path, 'decoder': path}, each resolved (no symlink left), so that what is loaded afterwards
    is the file that was checked; messages show paths relative to `root`.
    """
    found = {}
    real_root = Path(root or folder).resolve()
    for role in ("encoder", "decoder"):
        entry: GraphFile = getattr(manifest.files, role)
        found[role] = verified(
            Path(folder) / entry.path,
            entry.sha256,
            real_root,
            root,
            f"files.{role}",
            "after export (re-export the model)",
        )
    return found


def verify_prior(folder: Path, manifest: Manifest, root: Path | None = None) -> Path | None:
    """The fitted prior's file, checked like the graphs (inside `root`, sha256 as recorded); None without one."""
    entry = manifest.prior
    if entry is None:
        return None
    return verified(
        Path(folder) / entry.path,
        entry.sha256,
        Path(root or folder).resolve(),
        root,
        "prior",
        "after it was fitted (refit it: python -m training fit-prior MODEL_FOLDER)",
    )


def write_manifest(folder: Path, manifest: Manifest) -> Path:
    path = Path(folder) / MANIFEST_FILE
    path.write_text(json.dumps(manifest.model_dump(mode="json"), indent=2) + "\n")
    return path
