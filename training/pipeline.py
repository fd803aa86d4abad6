"""One training run end to end: data, split, train, export, evaluate, reports, manifest."""

from __future__ import annotations

import platform
import re
import shutil
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from importlib.metadata import version as pkg_version
from pathlib import Path

import numpy as np
import torch

from vaeformat.manifest import MODEL_NAME_PATTERN, Files, ImageSpec, Manifest, Split, Training, write_manifest

from .checkpoints import checkpoint_dir, exclusive, legacy_checkpoint
from .data import DataError, Dataset, load_dataset, split_dataset
from .distributed import Placement, broadcast, finish, start
from .evaluate import EvalSpec, evaluate, format_metrics
from .export import export_model
from .graphs import OnnxPair
from .loop import CheckpointMismatch, TrainConfig, Trainer
from .networks import AutoEncoder, NetConfig
from .ood import fit_ood
from .prior import fit_and_save
from .reports import write_reports


@dataclass(frozen=True)
class RunOptions:
    kind: str
    dataset: str
    out: Path
    net: dict  # NetConfig fields besides kind and the image shape
    train: TrainConfig
    image_size: int | None = None
    channels: int | None = None
    test_fraction: float = 0.2
    val_fraction: float = 0.1
    limit: int | None = None  # train on a stratified subset of this many images (smoke runs)
    iw_samples: int = 500
    resume: bool = False
    force: bool = False  # replace the model already in `out`
    keep_checkpoint: bool = False  # keep checkpoints/NAME-KEY/ after a finished run (it is removed by default)
    device: str = "auto"  # auto | cpu | cuda | cuda:N (distributed.resolve_device)
    precision: str = "fp32"  # fp32 | bf16
    progress: bool = True
    version: str = "1"
    description: str = ""


def library_versions() -> dict[str, str]:
    names = ("torch", "onnx", "onnxscript", "onnxruntime-gpu", "onnxruntime", "numpy", "mlxtend", "scikit-learn")
    found = {"python": platform.python_version()}
    for name in names:
        try:
            found[name] = pkg_version(name)
        except Exception:  # not installed: simply not recorded
            pass
    return found


def choose_rows(data: Dataset, limit: int | None, seed: int) -> np.ndarray:
    """All rows, or a random subset of `limit` rows, stratified by label (indices stay those of the whole dataset)."""
    if limit is None or limit >= len(data):
        return np.arange(len(data))
    rng = np.random.default_rng(seed)
    if data.labels is None:
        return np.sort(rng.choice(len(data), limit, replace=False))
    groups = [np.flatnonzero(data.labels == c) for c in np.unique(data.labels)]
    return np.sort(np.concatenate([rng.choice(g, round(limit * len(g) / len(data)), replace=False) for g in groups]))


MIN_VALIDATION = 3  # the out-of-distribution test's folds each fit on at least two of them
MODEL_NAME = re.compile(MODEL_NAME_PATTERN)


class OutputExists(Exception):
    """`--out` already holds a model (and no --force), or files that are not a model's; nothing was trained."""


def check_out_folder(out: Path, force: bool) -> None:
    """Refuse to replace a model unasked, and never replace a folder that is not a model's (run() deletes it); refuse
    a folder name a manifest cannot hold as the model's name."""
    if not MODEL_NAME.fullmatch(out.name):
        raise OutputExists(
            f"--out {out}: the folder's name {out.name!r} becomes the model's name, which takes letters, digits and "
            "'.', '_', '-' (starting with a letter or digit); choose such a name"
        )
    if not out.exists():
        return
    if not out.is_dir():
        raise OutputExists(f"--out {out}: a file of that name is there; choose a new folder")
    if (out / "manifest.json").is_file():
        if not force:
            raise OutputExists(
                f"--out {out}: a model is already there ({out / 'manifest.json'}); choose a new "
                "folder, or pass --force to replace it"
            )
    elif any(out.iterdir()):
        raise OutputExists(
            f"--out {out}: the folder holds other files and no manifest.json, so it is not a model "
            "folder that could be replaced; choose a new or empty folder"
        )


def resolve_likelihood(choice: str, channels: int) -> str:
    """The likelihood asked for; "auto" is bernoulli for one channel (grey, MNIST-like), gaussian for colour."""
    if choice != "auto":
        return choice
    return "gaussian" if channels == 3 else "bernoulli"


def run(opts: RunOptions, log=print) -> Manifest | None:
    """Train, export and evaluate one model into `opts.out`; returns the manifest written there.

    Under torchrun every process trains; rank 0 alone then exports, evaluates and writes, and the others return None.
    """
    check_out_folder(opts.out, opts.force)  # before any work: a refusal costs nothing
    place = start(opts.device, opts.precision)  # joins the torchrun job, if there is one
    if not place.is_main:
        return _train_and_write(opts, place, lambda *_: None)  # one voice in the logs: rank 0's
    with exclusive(checkpoint_dir(opts.out), opts.out):  # rank 0 alone writes checkpoints/ and --out
        return _train_and_write(opts, place, log)


def _train_and_write(opts: RunOptions, place: Placement, log) -> Manifest | None:
    data = load_dataset(opts.dataset, size=opts.image_size, channels=opts.channels)
    if opts.kind == "cvae" and data.labels is None:
        raise DataError(
            f"{opts.dataset}: a cvae needs class labels; give folder:PATH with one subfolder per class "
            "or an npz with a 'y' array (the unconditional kinds, ae and vae, take a flat folder)"
        )
    if opts.kind == "cvae" and len(np.unique(data.known_labels()[0])) < 2:
        raise DataError(
            f"{opts.dataset}: a cvae needs at least two classes to condition on, and this data has one; add "
            "class folders, or train a vae (--kind vae) on these images"
        )
    c, h, w = data.shape  # after --image-size and --channels
    train = replace(opts.train, likelihood=resolve_likelihood(opts.train.likelihood, c))
    rows = choose_rows(data, opts.limit, train.seed)
    labels = None if data.labels is None else data.labels[rows]
    official = None if data.official_test is None else np.flatnonzero(np.isin(rows, data.official_test))
    local = split_dataset(labels, len(rows), opts.test_fraction, opts.val_fraction, train.seed, official)
    train_idx, val_idx, test_idx = rows[local.train], rows[local.validation], rows[local.test]
    if len(val_idx) < MIN_VALIDATION:  # before any training: they choose the checkpoint and fit /score's OOD test
        raise DataError(
            f"{opts.dataset}: {len(rows)} images leave {len(val_idx)} for validation, and at least "
            f"{MIN_VALIDATION} are needed (to choose the checkpoint and fit the out-of-distribution test); give more "
            "images or a larger --val-fraction"
        )
    log(
        f"{opts.dataset}: {len(data)} images of {c}x{h}x{w}; train {len(train_idx)}, "
        f"validation {len(val_idx)}, held-out test {len(test_idx)}; {train.likelihood} likelihood"
    )
    log(
        f"training on {place.describe()} in {place.precision}"
        + (f", data-parallel over {place.world_size} processes" if place.distributed else "")
    )
    if data.class_names is not None:
        log("classes (label: name): " + ", ".join(f"{i}: {n}" for i, n in enumerate(data.class_names)))
    if place.distributed and train.free_bits > 0:
        log(
            "note: --free-bits floors each process's batch-mean KL, not the global batch's: with free bits a "
            "data-parallel run is close to, not the same as, one process on the same batches"
        )

    torch.manual_seed(train.seed)
    num_classes = len(data.known_labels()[1]) if opts.kind == "cvae" else None
    net = NetConfig(kind=opts.kind, channels=c, height=h, width=w, num_classes=num_classes, **opts.net)
    model = AutoEncoder(net)
    ckpt_dir = checkpoint_dir(opts.out)
    trainer = Trainer(model, train, data.images, data.labels, train_idx, val_idx, checkpoint_dir=ckpt_dir, place=place)
    last = ckpt_dir / "last.pt"
    # Rank 0 reads the checkpoint and sends it to the others, so other machines need no copy of checkpoints/.
    state = (
        torch.load(last, map_location="cpu", weights_only=False)
        if opts.resume and place.is_main and last.is_file()
        else None
    )
    state = broadcast(state, place)
    if state is not None:
        trainer.load_state(state, last)
        log(f"resumed from {last} at epoch {trainer.epoch}")
    elif opts.resume:
        older = broadcast(legacy_checkpoint(opts.out) if place.is_main else None, place)  # rank 0's disk decides
        if older is not None:  # the user asked to resume, and one of the old layout may be this run's: not afresh
            raise CheckpointMismatch(
                f"--resume: no checkpoint at {last} (the one for this --out folder), but {older} is one written by "
                f"an earlier version for a folder named {opts.out.name!r}: if it is this run's, move it there "
                f"(mkdir -p {last.parent} && mv {older} {last}) and run again; otherwise run without --resume"
            )
        log(f"--resume: no checkpoint at {last} (the one for this --out folder); starting afresh")
    if trainer.guided and trainer.guide is None:
        log(
            f"class guidance (weight {train.class_guidance:g}): training its classifier on the {len(train_idx)} "
            "training rows first"
        )
    result = trainer.fit(progress=opts.progress)
    finish(place)  # every process has finished training; the others leave here
    if not place.is_main:
        return None
    log(
        f"best validation objective {result.best_val:.2f} nats at epoch {result.best_epoch} "
        f"({result.seconds:.0f} s of training)"
    )
    model.cpu()  # the export, its parity check against onnxruntime and the reports run on the CPU

    # Build the whole folder beside the checkpoints, then move it into place, so a failure never leaves
    # a half-written model where the service would load it.
    staging = ckpt_dir / "export"
    shutil.rmtree(staging, ignore_errors=True)
    files, worst = export_model(model, train.likelihood, staging)
    log(f"exported encoder.onnx and decoder.onnx; onnxruntime matches PyTorch to {worst:.1e} at batches 1, 7, 64")
    sigma = model.log_sigma.detach().exp().item() if train.likelihood == "gaussian" else None
    prior = fit_and_save(staging, data, test_idx.tolist(), num_classes, net.latent_dim, log=log)
    spec = EvalSpec(
        opts.dataset,
        c,
        h,
        w,
        net.stochastic,
        net.conditional,
        num_classes,
        train.likelihood,
        sigma,
        test_idx.tolist(),
        prior_path=prior.path,
        corrupt=train.corrupt,
    )
    log(f"evaluating the exported graphs on {len(test_idx)} held-out images ...")
    metrics = evaluate(
        staging, spec, iw_samples=opts.iw_samples, data=data, log=log, device=place.device, progress=opts.progress
    )
    log("held-out metrics:\n" + format_metrics(metrics))
    x_test = data.images[test_idx].astype(np.float32) / 255.0
    reports = write_reports(
        staging,
        OnnxPair(staging),
        x_test,
        data.known_labels()[0][test_idx] if num_classes else None,
        net.latent_dim,
        num_classes,
        net.stochastic,
        result.history,
        seed=train.seed,
        class_names=data.class_names,
    )
    manifest = Manifest(
        name=opts.out.name,
        version=opts.version,
        kind=opts.kind,
        description=opts.description,
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        image=ImageSpec(channels=c, height=h, width=w),
        latent_dim=net.latent_dim,
        labels=data.class_names if num_classes else None,
        encoder_conditioned=net.conditional,
        likelihood=train.likelihood,
        gaussian_sigma=sigma,
        files=Files(**files),
        training=Training(
            dataset=recorded_dataset(opts.dataset),
            split=Split(
                seed=train.seed,
                stratified=labels is not None,
                train_size=len(train_idx),
                validation_size=len(val_idx),
                test_size=len(test_idx),
                test_indices=test_idx.tolist(),
                dataset_size=len(data),
            ),
            seed=train.seed,
            epochs=train.epochs,
            best_epoch=result.best_epoch,
            batch_size=train.batch_size,
            learning_rate=train.learning_rate,
            beta=train.beta,
            warmup_epochs=train.warmup_epochs,
            free_bits=train.free_bits,
            augment_shift=train.augment_shift,
            train_seconds=round(result.seconds, 1),
            library_versions=library_versions(),
            device=place.describe(),
            precision=place.precision,
            world_size=place.world_size,
            corrupt=train.corrupt,
            class_guidance=train.class_guidance,
        ),
        metrics=metrics,
        reports=reports,
        prior=prior,
    )
    # /score's out-of-distribution test, fitted on validation images (never trained on, never the held-out ones).
    ood = fit_ood(staging, manifest, data, train_idx, val_idx, opts.iw_samples, log)
    manifest = manifest.model_copy(update={"metrics": ood})
    write_manifest(staging, manifest)
    if opts.out.exists():
        shutil.rmtree(opts.out)
    opts.out.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(staging), str(opts.out))
    log(f"wrote {opts.out}/ ({', '.join(sorted(p.name for p in opts.out.iterdir()))})")
    if not opts.keep_checkpoint:
        shutil.rmtree(ckpt_dir, ignore_errors=True)  # the run is done: its resume point would only pile up
    log(serve_hint(opts.out, manifest))
    return manifest


def recorded_dataset(spec: str) -> str:
    """The dataset as the manifest records it: a path relative to the working folder when it lies below it, else
    the folder's or file's name alone (`evaluate --dataset` points at it again), never this machine's absolute path."""
    kind, _, arg = spec.partition(":")
    if not arg:
        return spec
    path = Path(arg).resolve()
    try:
        return f"{kind}:{path.relative_to(Path.cwd().resolve()).as_posix()}"
    except ValueError:
        return f"{kind}:{path.name}"


def serve_hint(out: Path, manifest: Manifest) -> str:
    """The last line of a run: how to serve the model and call it."""
    models_dir = out.parent
    in_repository = models_dir.resolve() == Path("models").resolve() and _has_run_target(Path("Makefile"))
    serve = "make run" if in_repository else f"vae-serve --models-dir {models_dir}"
    return f"serve it: {serve}, then curl localhost:8000/models/{manifest.name} (its routes take model={manifest.name})"


def _has_run_target(makefile: Path) -> bool:
    """Whether `makefile` is one with a `run` target (this repository's, which serves models/)."""
    try:
        return any(line.startswith("run:") for line in makefile.read_text().splitlines())
    except (OSError, UnicodeDecodeError):
        return False
