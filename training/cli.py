"""Command line: `python -m training train ...` and `python -m training evaluate models/NAME`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from service.manifest import ManifestError, load_manifest, verify_files, write_manifest

from .data import DataError
from .distributed import DEVICES, PRECISIONS, DeviceError
from .export import ExportError
from .loop import CheckpointMismatch, TrainConfig
from .networks import KINDS, NetConfig


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m training", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train, evaluate on held-out data, export to ONNX and write the manifest")
    t.add_argument("--kind", choices=KINDS, required=True)
    t.add_argument("--dataset", required=True, help="mnist | digits | folder:PATH | npz:PATH")
    t.add_argument("--out", type=Path, required=True, help="model folder to write, e.g. models/my-vae")
    t.add_argument("--latent-dim", type=int, default=NetConfig.latent_dim)
    t.add_argument("--beta", type=float, default=1.0, help="weight of the KL term (beta > 1: a beta-VAE)")
    t.add_argument("--epochs", type=int, default=TrainConfig.epochs)
    t.add_argument("--batch-size", type=int, default=TrainConfig.batch_size)
    t.add_argument("--lr", type=float, default=TrainConfig.learning_rate)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--likelihood", choices=("auto", "bernoulli", "gaussian"), default="auto",
                   help="auto: bernoulli for 1 channel (MNIST-like), gaussian for colour")
    t.add_argument("--image-size", type=int, help="resize images to SIZE x SIZE")
    t.add_argument("--channels", type=int, choices=(1, 3), help="convert images to 1 (grey) or 3 (RGB) channels")
    t.add_argument("--warmup-epochs", type=int, default=TrainConfig.warmup_epochs)
    t.add_argument("--free-bits", type=float, default=TrainConfig.free_bits)
    t.add_argument("--augment-shift", type=int, default=TrainConfig.augment_shift)
    t.add_argument("--base-channels", type=int, default=NetConfig.base_channels)
    t.add_argument("--hidden", type=int, default=NetConfig.hidden)
    t.add_argument("--extra-convs", type=int, default=NetConfig.extra_convs, help="stride-1 convolutions per resolution level")
    t.add_argument("--test-fraction", type=float, default=0.2)
    t.add_argument("--val-fraction", type=float, default=0.1)
    t.add_argument("--limit", type=int, help="use a stratified subset of this many images (quick runs)")
    t.add_argument("--iw-samples", type=int, default=500, help="K for the importance-weighted bound")
    t.add_argument("--resume", action="store_true", help="continue from checkpoints/NAME/last.pt (also under torchrun)")
    t.add_argument("--device", default="auto", metavar="DEVICE",
                   help=f"{DEVICES}: where to train; auto takes the GPU when PyTorch sees one, else the CPU; "
                        "under torchrun each process takes cuda:LOCAL_RANK (default: auto)")
    t.add_argument("--precision", choices=PRECISIONS, default="fp32",
                   help="fp32, or bf16: bf16 autocast of the network passes on a CUDA GPU (losses, weights and the "
                        "exported graphs stay float32); refused on the CPU (default: fp32)")
    t.add_argument("--no-progress", action="store_true")
    t.add_argument("--version", default="1")
    t.add_argument("--description", default="")

    e = sub.add_parser("evaluate", help="re-measure an exported model on its held-out split")
    e.add_argument("folder", type=Path)
    e.add_argument("--iw-samples", type=int, default=500)
    e.add_argument("--write", action="store_true", help="store the new figures in the manifest")
    e.add_argument("--device", default="auto", metavar="DEVICE",
                   help=f"{DEVICES}: where a cvae's judging classifier trains (the graphs run in onnxruntime)")
    return p


def _train(a: argparse.Namespace) -> int:
    from .pipeline import RunOptions, run  # torch is imported only for commands that need it

    likelihood = a.likelihood
    if likelihood == "auto":
        likelihood = "gaussian" if a.channels == 3 else "bernoulli"
    cfg = TrainConfig(epochs=a.epochs, batch_size=a.batch_size, learning_rate=a.lr, beta=a.beta,
                      warmup_epochs=a.warmup_epochs, free_bits=a.free_bits, augment_shift=a.augment_shift,
                      likelihood=likelihood, seed=a.seed)
    net = dict(latent_dim=a.latent_dim, base_channels=a.base_channels, hidden=a.hidden, extra_convs=a.extra_convs)
    opts = RunOptions(kind=a.kind, dataset=a.dataset, out=a.out, net=net, train=cfg, image_size=a.image_size,
                      channels=a.channels, test_fraction=a.test_fraction, val_fraction=a.val_fraction,
                      limit=a.limit, iw_samples=a.iw_samples, resume=a.resume, device=a.device,
                      precision=a.precision, progress=not a.no_progress,
                      version=a.version, description=a.description)
    run(opts)
    return 0


def _evaluate(a: argparse.Namespace) -> int:
    from .distributed import resolve_device
    from .evaluate import EvalSpec, evaluate, format_metrics

    manifest = load_manifest(a.folder)
    verify_files(a.folder, manifest)
    device = resolve_device(a.device)
    metrics = evaluate(a.folder, EvalSpec.from_manifest(manifest), iw_samples=a.iw_samples, device=device)
    print(f"{manifest.name}: measured now\n{format_metrics(metrics)}")
    if metrics != manifest.metrics:
        print(f"the manifest records\n{format_metrics(manifest.metrics)}")
    if a.write:
        write_manifest(a.folder, manifest.model_copy(update={"metrics": metrics}))
        print(f"wrote the figures into {a.folder}/manifest.json")
    return 0


def main(argv: list[str] | None = None) -> int:
    a = _parser().parse_args(argv)
    try:
        return _train(a) if a.command == "train" else _evaluate(a)
    except (DataError, DeviceError, ManifestError, ExportError, CheckpointMismatch) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
