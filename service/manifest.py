"""The model manifest: one pydantic schema shared by training (writes it) and the service (validates it).

This module imports pydantic and the standard library only, so the serving image needs no torch.

The model repository is confined to its folder (the models root): paths in a manifest are relative to the model's
folder and never climb out of it ('..' and absolute paths fail validation), and every file that is read is first
resolved (symlinks followed) and refused unless it lies inside the root. A symlink from one place inside the root
to another is allowed (a `current -> .releases/v3` folder, a graph shared by two models); one that leads out is
not. Files are opened without blocking and refused unless they are regular files (a FIFO would hang the reader).
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path, PurePosixPath
from typing import Annotated, BinaryIO, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

SCHEMA_VERSION: Literal[1] = 1
MANIFEST_FILE = "manifest.json"
# The largest part of a manifest is test_indices: 16 KB for the shipped models' 1,000 held-out images, about 120 KB
# for all 10,000 of MNIST's. 4 MiB refuses only a mistake or an attack, before a byte of it is read.
MAX_MANIFEST_BYTES = 4 * 1024 * 1024

Kind = Literal["ae", "vae", "cvae"]
Likelihood = Literal["bernoulli", "gaussian"]
DType = Literal["float32", "int64"]


class ManifestError(Exception):
    """A model folder whose manifest or files do not match the contract; the message names file and field."""


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
    """A fitted prior beside the graphs (service/prior.py documents the file), checked at load like them."""

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
    score_quantiles: dict[Literal["nll", "squared_error"], list[float]] | None = None
    denoising_squared_error: float | None = None  # a denoising model: corrupted held-out input vs the clean image


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


def sha256_file(path: Path) -> str:
    with open(path, "rb") as f:
        return _sha256(f)


def _sha256(f: BinaryIO) -> str:
    digest = hashlib.sha256()
    for block in iter(lambda: f.read(1 << 20), b""):
        digest.update(block)
    return digest.hexdigest()


def shown(path: Path, root: Path | None = None) -> str:
    """`path` as messages show it: relative to the models folder `root` when given, undecodable bytes escaped."""
    if root is not None and path.is_relative_to(root):
        path = path.relative_to(root)
    return os.fsencode(path).decode("utf-8", "backslashreplace")


# O_NONBLOCK: opening a FIFO swapped in after the stat() must not wait for a writer. O_NOFOLLOW: `real` has no
# symlink left, so one found now was swapped in after the check. (Both are POSIX; training may run elsewhere.)
_READ_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
_KINDS = {stat.S_ISDIR: "directory", stat.S_ISFIFO: "FIFO", stat.S_ISSOCK: "socket", stat.S_ISCHR: "device"}


def _not_regular(mode: int) -> str | None:
    """What a file mode is when it is not a regular file ('directory', 'FIFO', ...), else None."""
    if stat.S_ISREG(mode):
        return None
    return next((kind for test, kind in _KINDS.items() if test(mode)), "device")


def _named(field: str) -> str:
    return f", but manifest field '{field}' names it" if field else ""


def confined(path: Path, root: Path, where: str, field: str = "") -> Path:
    """`path` with every symlink resolved; ManifestError unless it exists and lies inside the resolved `root`.

    Messages name `where` (the path as shown) and the manifest `field` that named the path, if any; they never show
    where a symlink points, since /models shows them to clients.
    """
    named = _named(field)
    try:
        real = path.resolve(strict=True)
    except FileNotFoundError:
        needed = f"; every model folder needs a {MANIFEST_FILE}" if path.name == MANIFEST_FILE else ""
        raise ManifestError(f"{where}: missing{named or needed}") from None
    except (OSError, RuntimeError) as e:  # RuntimeError: a symlink loop (Python < 3.13)
        raise ManifestError(f"{where}: cannot be resolved ({_why(e)}){named}; fix or remove the symlink") from None
    if not real.is_relative_to(root):
        raise ManifestError(
            f"{where}: a symlink to a place outside the models folder{named}; the service reads only files inside "
            "the models folder: copy them in instead of linking to them"
        )
    return real


def open_confined(path: Path, root: Path, where: str, field: str = "") -> tuple[BinaryIO, Path]:
    """Open `path` for reading if it resolves to a regular file inside the resolved `root`: (file, resolved path).

    Raises ManifestError as `confined` does, and for anything but a regular file. Never blocks: a FIFO or device is
    refused from stat() before it is opened, and checked again on the descriptor.
    """
    real = confined(path, root, where, field)
    named = _named(field)
    try:
        kind = _not_regular(os.stat(real).st_mode)
        if kind is None:
            f = os.fdopen(os.open(real, _READ_FLAGS), "rb")
            kind = _not_regular(os.fstat(f.fileno()).st_mode)
            if kind is None:
                return f, real
            f.close()
    except OSError as e:
        raise ManifestError(f"{where}: cannot be read ({_why(e)}){named}; make it readable by the service") from None
    raise ManifestError(f"{where}: a {kind}, not a regular file{named}; replace it with the file itself")


def _why(error: BaseException) -> str:
    return error.strerror if isinstance(error, OSError) and error.strerror else str(error)


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
            raise ManifestError(f"{where}: cannot be read ({_why(e)})") from None
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
        found[role] = _verified(
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
    return _verified(
        Path(folder) / entry.path,
        entry.sha256,
        Path(root or folder).resolve(),
        root,
        "prior",
        "after it was fitted (refit it: python -m training fit-prior MODEL_FOLDER)",
    )


def _verified(path: Path, sha256: str, real_root: Path, root: Path | None, field: str, when: str) -> Path:
    """`path` resolved, once it is a regular file inside `real_root` whose sha256 is the one manifest `field` records.

    Messages show the path relative to `root` and name `{field}.path` / `{field}.sha256`; `when` says when the file
    should have stopped changing and how to make a new one.
    """
    where = shown(path, root)
    f, real = open_confined(path, real_root, where, f"{field}.path")
    with f:
        try:
            actual = _sha256(f)
        except OSError as e:
            raise ManifestError(f"{where}: cannot be read ({_why(e)})") from None
    if actual != sha256:
        raise ManifestError(
            f"{where}: sha256 is {actual}, but manifest field '{field}.sha256' says {sha256}; "
            f"the file was changed {when}"
        )
    return real


def write_manifest(folder: Path, manifest: Manifest) -> Path:
    path = Path(folder) / MANIFEST_FILE
    path.write_text(json.dumps(manifest.model_dump(mode="json"), indent=2) + "\n")
    return path
