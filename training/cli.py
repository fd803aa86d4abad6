"""Command line: `python -m training train ...` and `python -m training evaluate models/NAME`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from vaeformat.errors import ManifestError
from vaeformat.files import sha256_file
from vaeformat.manifest import Manifest, load_manifest, verify_files, verify_prior, write_manifest

from .checkpoints import RunInProgress, checkpoint_dir
from .corruption import Corruption
from .data import DataError
from .distributed import DEVICES, PRECISIONS, DeviceError
from .export import ExportError
from .loop import CheckpointMismatch, TrainConfig
from .networks import KINDS, NetConfig
from .pipeline import OutputExists, RunOptions, run


def positive_int(text: str) -> int:
    """An argparse type: a whole number of at least 1 (0 epochs, a batch of 0 ... would train nothing)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def non_negative_float(text: str) -> float:
    """An argparse type: a finite number of at least 0 (a weight)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number of at least 0, got {text}")
    return value


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Appends "(default: X)" to each option's help, except where there is no value to show: a flag, a required
    option, or a default of None or "" (the help says in words what happens then)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.required or action.default in (None, "") or isinstance(action.default, bool):
            return action.help
        return super()._get_help_string(action)


DATASET_AGAIN = (
    "where the model's dataset is now, e.g. folder:/data/pets (default: the one the manifest records, a path "
    "relative to the folder training ran in)"
)


def _load_checked(folder: Path, dataset: str | None) -> Manifest:
    """The model's manifest, its files verified, with `dataset` (when given) in place of the recorded one."""
    manifest = load_manifest(folder)
    verify_files(folder, manifest)
    if dataset is None:
        return manifest
    return manifest.model_copy(update={"training": manifest.training.model_copy(update={"dataset": dataset})})


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m training", description=__doc__, formatter_class=_HelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)

    def command(name: str, text: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=text, description=text, formatter_class=_HelpFormatter)

    t = command("train", "train, evaluate on held-out data, export to ONNX and write the manifest")
    t.add_argument(
        "--kind",
        choices=KINDS,
        required=True,
        help="ae: deterministic autoencoder; vae: Gaussian q(z|x) with an N(0, I) prior; cvae: "
        "conditional VAE (needs class labels)",
    )
    t.add_argument("--dataset", required=True, help="mnist | fashion | digits | folder:PATH | npz:PATH")
    t.add_argument(
        "--out",
        type=Path,
        required=True,
        help="model folder to write, e.g. models/my-vae; a new folder (an existing model needs --force)",
    )
    t.add_argument("--force", action="store_true", help="replace the model already in --out")
    t.add_argument(
        "--keep-checkpoint",
        action="store_true",
        help="keep checkpoints/NAME-KEY/ after the run finishes (by default it is removed once the model is written; "
        "an interrupted run keeps it for --resume)",
    )
    t.add_argument(
        "--latent-dim", type=positive_int, default=NetConfig.latent_dim, help="dimensions of the latent code z"
    )
    t.add_argument("--beta", type=float, default=TrainConfig.beta, help="weight of the KL term (beta > 1: a beta-VAE)")
    t.add_argument("--epochs", type=positive_int, default=TrainConfig.epochs, help="passes over the training rows")
    t.add_argument(
        "--batch-size",
        type=positive_int,
        default=TrainConfig.batch_size,
        help="images per step (the global batch under torchrun)",
    )
    t.add_argument(
        "--lr",
        type=float,
        default=TrainConfig.learning_rate,
        help="Adam's learning rate, decayed on a cosine to 1/20 of it over the epochs",
    )
    t.add_argument(
        "--seed", type=int, default=TrainConfig.seed, help="seeds the split, the initial weights and the batches"
    )
    t.add_argument(
        "--likelihood",
        choices=("auto", "bernoulli", "gaussian"),
        default="auto",
        help="p(x|z); auto decides from the data's channels (after --channels): bernoulli for 1 "
        "(MNIST-like), gaussian with a learned pixel noise for 3 (colour)",
    )
    t.add_argument(
        "--image-size",
        type=positive_int,
        metavar="SIZE",
        help="resize images to SIZE x SIZE (default: the dataset's own size)",
    )
    t.add_argument(
        "--channels",
        type=int,
        choices=(1, 3),
        help="convert images to 1 (grey) or 3 (RGB) channels (default: the dataset's own; a folder "
        "is RGB if any image has colour: RGB, or a palette with a colour in it)",
    )
    t.add_argument(
        "--warmup-epochs",
        type=int,
        default=TrainConfig.warmup_epochs,
        help="the KL weight ramps linearly from 0 to --beta over these epochs",
    )
    t.add_argument(
        "--free-bits",
        type=float,
        default=TrainConfig.free_bits,
        help="nats per latent dimension below which the batch-mean KL is not penalised",
    )
    t.add_argument(
        "--augment-shift",
        type=int,
        default=TrainConfig.augment_shift,
        help="random translation of training images by up to this many pixels",
    )
    t.add_argument(
        "--corrupt",
        type=Corruption.parse,
        metavar="KIND:AMOUNT",
        help="train a denoising autoencoder (ae or vae): the encoder sees the image corrupted by "
        "gaussian:STD, mask:P or saltpepper:P, the target stays clean; evaluation adds the denoising "
        "error on corrupted held-out images (default: no corruption)",
    )
    t.add_argument(
        "--class-guidance",
        type=non_negative_float,
        default=TrainConfig.class_guidance,
        metavar="WEIGHT",
        help="a cvae only: add this weight times the cross-entropy of a frozen classifier, trained first on the "
        "training rows, on the decoder's images of prior draws against the labels asked for, so that samples of "
        "a class keep what tells it from the others (0: likelihood alone)",
    )
    t.add_argument(
        "--base-channels",
        type=positive_int,
        default=NetConfig.base_channels,
        help="channels of the first convolution (doubled at each resolution level)",
    )
    t.add_argument("--hidden", type=positive_int, default=NetConfig.hidden, help="width of the fully connected layer")
    t.add_argument(
        "--extra-convs", type=int, default=NetConfig.extra_convs, help="stride-1 convolutions per resolution level"
    )
    t.add_argument(
        "--test-fraction",
        type=float,
        default=0.2,
        help="share of the images held out for evaluation (of a dataset with its own test split, such as fashion: "
        "the share of that split)",
    )
    t.add_argument(
        "--val-fraction", type=float, default=0.1, help="share of the rest kept aside to choose the best checkpoint"
    )
    t.add_argument(
        "--limit",
        type=positive_int,
        help="use a stratified subset of this many images, for quick runs (default: every image)",
    )
    t.add_argument("--iw-samples", type=positive_int, default=500, help="K for the importance-weighted bound")
    t.add_argument(
        "--resume",
        action="store_true",
        help="continue from checkpoints/NAME-KEY/last.pt, the --out folder's own (also under torchrun)",
    )
    t.add_argument(
        "--device",
        default="auto",
        metavar="DEVICE",
        help=f"{DEVICES}: where to train; auto takes the GPU when PyTorch sees one, else the CPU; "
        "under torchrun each process takes cuda:LOCAL_RANK",
    )
    t.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="fp32",
        help="fp32, or bf16: bf16 autocast of the network passes on a CUDA GPU (losses, weights and the "
        "exported graphs stay float32); refused on the CPU",
    )
    t.add_argument("--no-progress", action="store_true", help="no progress bars (training and evaluation)")
    t.add_argument("--version", default="1", help="the model's version, written into the manifest")
    t.add_argument(
        "--description", default="", help="one line about the model, written into the manifest (default: none)"
    )

    e = command("evaluate", "re-measure an exported model on its held-out split")
    e.add_argument("folder", type=Path, help="the model folder, e.g. models/my-vae")
    e.add_argument("--iw-samples", type=positive_int, default=500, help="K for the importance-weighted bound")
    e.add_argument("--write", action="store_true", help="store the new figures in the manifest")
    e.add_argument("--dataset", help=DATASET_AGAIN)
    e.add_argument(
        "--device",
        default="auto",
        metavar="DEVICE",
        help=f"{DEVICES}: where a cvae's judging classifier trains (the graphs run in onnxruntime)",
    )
    e.add_argument("--no-progress", action="store_true", help="no progress bar")

    f = command(
        "fit-prior",
        "fit (or refit) an exported model's prior: a Gaussian mixture over the posterior means "
        "(an ae: its codes) of the non-held-out rows (per class for a cvae), then re-measure the model with it "
        "and write prior.npz and the figures into the manifest (the weights stay as they are)",
    )
    f.add_argument("folder", type=Path, help="the model folder, e.g. models/my-vae")
    f.add_argument("--iw-samples", type=positive_int, default=500, help="K for the importance-weighted bound")
    f.add_argument("--dataset", help=DATASET_AGAIN)
    f.add_argument(
        "--device",
        default="auto",
        metavar="DEVICE",
        help=f"{DEVICES}: where the judging classifier trains (the graphs run in onnxruntime)",
    )
    f.add_argument("--no-progress", action="store_true", help="no progress bar")

    o = command(
        "fit-ood",
        "fit (or refit) the out-of-distribution test /score uses on the validation images of an exported model's "
        "split, and measure a conditional model without labels (-log p(x) over its labels, p(y|x)) on the "
        "held-out images; writes the figures into the manifest (the weights stay as they are)",
    )
    o.add_argument("folder", type=Path, help="the model folder, e.g. models/my-vae")
    o.add_argument("--iw-samples", type=positive_int, default=500, help="K per label for the held-out figures")
    o.add_argument("--dataset", help=DATASET_AGAIN)
    o.add_argument("--test-fraction", type=float, default=0.2, help="the --test-fraction the model was trained with")
    o.add_argument("--val-fraction", type=float, default=0.1, help="the --val-fraction the model was trained with")
    o.add_argument(
        "--test-only",
        action="store_true",
        help="refit the test alone and keep the label-free held-out figures the manifest records (a cvae's take "
        "K x labels decodes per held-out image)",
    )

    s = command(
        "stamp",
        "write the facts the service checks into an exported model's graphs (the label table's "
        "class count) and their new sha256 into the manifest; for models exported before the export did it "
        "(weights and figures stay as they are)",
    )
    s.add_argument("folder", type=Path, help="the model folder, e.g. models/my-vae")
    return p


def _train(a: argparse.Namespace) -> int:
    # likelihood "auto" is decided by run() once the data's channels are known
    cfg = TrainConfig(
        epochs=a.epochs,
        batch_size=a.batch_size,
        learning_rate=a.lr,
        beta=a.beta,
        warmup_epochs=a.warmup_epochs,
        free_bits=a.free_bits,
        augment_shift=a.augment_shift,
        likelihood=a.likelihood,
        seed=a.seed,
        corrupt=str(a.corrupt) if a.corrupt else None,
        class_guidance=a.class_guidance,
    )
    net = dict(latent_dim=a.latent_dim, base_channels=a.base_channels, hidden=a.hidden, extra_convs=a.extra_convs)
    opts = RunOptions(
        kind=a.kind,
        dataset=a.dataset,
        out=a.out,
        net=net,
        train=cfg,
        image_size=a.image_size,
        channels=a.channels,
        test_fraction=a.test_fraction,
        val_fraction=a.val_fraction,
        limit=a.limit,
        iw_samples=a.iw_samples,
        resume=a.resume,
        force=a.force,
        keep_checkpoint=a.keep_checkpoint,
        device=a.device,
        precision=a.precision,
        progress=not a.no_progress,
        version=a.version,
        description=a.description,
    )
    try:
        run(opts)
    except KeyboardInterrupt:
        last = checkpoint_dir(opts.out) / "last.pt"
        kept = (
            f"the last finished epoch is kept in {last}: run the same command with --resume to continue"
            if last.is_file()
            else "no epoch had finished, so there is nothing to resume"
        )
        print(f"\ninterrupted; {kept}", file=sys.stderr)
        return 130
    return 0


def _evaluate(a: argparse.Namespace) -> int:
    from .distributed import resolve_device
    from .evaluate import EvalSpec, evaluate, format_metrics
    from .ood import with_ood_figures

    manifest = _load_checked(a.folder, a.dataset)
    verify_prior(a.folder, manifest)
    device = resolve_device(a.device)
    metrics = evaluate(
        a.folder, EvalSpec.from_manifest(manifest), iw_samples=a.iw_samples, device=device, progress=not a.no_progress
    )
    metrics = with_ood_figures(metrics, manifest.metrics)  # fit-ood's figures: not measured here
    print(f"{manifest.name}: measured now\n{format_metrics(metrics)}")
    if metrics != manifest.metrics:
        print(f"the manifest records\n{format_metrics(manifest.metrics)}")
    if a.write:
        write_manifest(a.folder, load_manifest(a.folder).model_copy(update={"metrics": metrics}))
        print(f"wrote the figures into {a.folder}/manifest.json")
    return 0


def _fit_prior(a: argparse.Namespace) -> int:
    from .data import check_rows, load_dataset
    from .distributed import resolve_device
    from .evaluate import EvalSpec, evaluate, format_metrics
    from .ood import with_ood_figures
    from .prior import fit_and_save

    m = _load_checked(a.folder, a.dataset)
    data = load_dataset(m.training.dataset, size=(m.image.height, m.image.width), channels=m.image.channels)
    check_rows(data, m.training.split.dataset_size, m.training.split.test_indices, m.name)
    num_classes = len(m.labels) if m.labels else None
    prior = fit_and_save(a.folder, data, m.training.split.test_indices, num_classes, m.latent_dim)
    spec = EvalSpec.from_manifest(m.model_copy(update={"prior": prior}))
    metrics = evaluate(
        a.folder, spec, iw_samples=a.iw_samples, data=data, device=resolve_device(a.device), progress=not a.no_progress
    )
    print(f"{m.name}: measured with the fitted prior\n{format_metrics(metrics)}")
    # Read the manifest again and change only what this command measured, so fields others wrote meanwhile stay.
    current = load_manifest(a.folder)
    metrics = with_ood_figures(metrics, current.metrics)
    measured = {k: getattr(metrics, k) for k, v in metrics.model_dump().items() if v is not None}
    write_manifest(
        a.folder, current.model_copy(update={"prior": prior, "metrics": current.metrics.model_copy(update=measured)})
    )
    print(f"wrote {prior.path} and the figures into {a.folder}/manifest.json")
    return 0


def _fit_ood(a: argparse.Namespace) -> int:
    from .data import check_rows, load_dataset
    from .ood import fit_ood, split_rows

    m = _load_checked(a.folder, a.dataset)
    data = load_dataset(m.training.dataset, size=(m.image.height, m.image.width), channels=m.image.channels)
    check_rows(data, m.training.split.dataset_size, m.training.split.test_indices, m.name)
    training, validation = split_rows(data, m, a.test_fraction, a.val_fraction)
    metrics = fit_ood(a.folder, m, data, training, validation, None if a.test_only else a.iw_samples)
    current = load_manifest(a.folder)
    write_manifest(a.folder, current.model_copy(update={"metrics": metrics}))
    if metrics.marginal_nll is not None:
        nll, accuracy = metrics.marginal_nll, metrics.label_accuracy
        print(f"held-out, no label: -log p(x) {nll:.2f} nats, p(y|x) accuracy {accuracy:.3f}")
    print(f"wrote the out-of-distribution test into {a.folder}/manifest.json")
    return 0


def _stamp(a: argparse.Namespace) -> int:
    from .export import stamp_label_classes

    manifest = load_manifest(a.folder)
    paths = verify_files(a.folder, manifest)  # only files that are what the manifest says get stamped
    files = {}
    for role, path in paths.items():
        classes = stamp_label_classes(path)
        entry = getattr(manifest.files, role)
        files[role] = entry.model_copy(update={"sha256": sha256_file(path)})
        print(f"{entry.path}: " + (f"label table of {classes} classes" if classes is not None else "takes no label"))
    write_manifest(a.folder, manifest.model_copy(update={"files": manifest.files.model_copy(update=files)}))
    print(f"wrote the graphs' new sha256 into {a.folder}/manifest.json")
    return 0


COMMANDS = {"train": _train, "evaluate": _evaluate, "fit-prior": _fit_prior, "fit-ood": _fit_ood, "stamp": _stamp}


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    a = parser.parse_args(argv)
    if a.command == "train" and a.class_guidance > 0 and a.kind != "cvae":
        parser.error(f"--class-guidance guides a decoder by the labels asked for: it needs --kind cvae, not {a.kind}")
    try:
        return COMMANDS[a.command](a)
    except (DataError, DeviceError, ManifestError, ExportError, CheckpointMismatch, OutputExists, RunInProgress) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
