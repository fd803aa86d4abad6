"""distributed.py (with loop.py and pipeline.py): --device, --precision, and data-parallel training under torchrun.

Data-parallel runs here are two gloo processes on the CPU; a GPU machine runs the same code over NCCL.
"""

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from tests.integration.server import free_port  # noqa: E402
from training.checkpoints import checkpoint_dir  # noqa: E402
from training.cli import main  # noqa: E402
from training.distributed import finish, start  # noqa: E402
from training.loop import TrainConfig, Trainer  # noqa: E402
from training.networks import AutoEncoder, NetConfig  # noqa: E402
from vaeformat.manifest import load_manifest, verify_files  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
# 45 training rows in batches of 16: 16, 16, then a ragged 13 that two processes split 7 + 6.
TRAIN_ROWS, VAL_ROWS, BATCH, EPOCHS = 45, 12, 16, 2


def _trainer(kind: str, likelihood: str, place=None, guidance: float = 0.0) -> Trainer:
    rng = np.random.default_rng(0)
    images = (rng.random((TRAIN_ROWS + VAL_ROWS, 1, 8, 8)) * 255).astype(np.uint8)
    labels = rng.integers(0, 3, TRAIN_ROWS + VAL_ROWS)
    torch.manual_seed(0)
    net = NetConfig(kind, 1, 8, 8, latent_dim=2, num_classes=3 if kind == "cvae" else None, base_channels=4, hidden=8)
    cfg = TrainConfig(epochs=EPOCHS, batch_size=BATCH, warmup_epochs=1, likelihood=likelihood, class_guidance=guidance)
    return Trainer(
        AutoEncoder(net),
        cfg,
        images,
        labels,
        np.arange(TRAIN_ROWS),
        np.arange(TRAIN_ROWS, TRAIN_ROWS + VAL_ROWS),
        place=place,
    )


def _train_recording_gradients(trainer: Trainer) -> dict:
    """Fit, keeping every step's gradients as the optimizer is about to apply them (after DDP's all-reduce)."""
    grads = []
    trainer.opt.register_step_pre_hook(
        lambda opt, args, kwargs: grads.append(
            {n: p.grad.clone() for n, p in trainer.model.named_parameters() if p.grad is not None}
        )
    )
    result = trainer.fit(progress=False)
    return {
        "grads": grads,
        "state": trainer.model.state_dict(),
        "train_loss": result.history.train_loss,
        "val_loss": result.history.val_loss,
    }


def _rank_main(rank: int, world: int, port: int, out: str, kind: str, likelihood: str, guidance: float) -> None:
    """One process of a torchrun-like job (the environment torchrun would set), writing what it saw to `out`."""
    torch.set_num_threads(1)
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world)
    )
    place = start("cpu")
    seen = _train_recording_gradients(_trainer(kind, likelihood, place, guidance))
    finish(place)
    torch.save(seen, Path(out) / f"rank{rank}.pt")


@pytest.mark.parametrize(
    "kind, likelihood, guidance", [("cvae", "bernoulli", 0.0), ("cvae", "bernoulli", 5.0), ("vae", "gaussian", 0.0)]
)
def test_two_processes_take_the_same_steps_as_one_on_the_same_global_batches(tmp_path, kind, likelihood, guidance):
    """With class guidance, rank 0's guide is every process's, and the prior draws are split as the images are."""
    args = (2, free_port(), str(tmp_path), kind, likelihood, guidance)
    torch.multiprocessing.spawn(_rank_main, args=args, nprocs=2)
    single = _train_recording_gradients(_trainer(kind, likelihood, guidance=guidance))
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]

    assert len(single["grads"]) == EPOCHS * 3  # two full batches and the ragged one, every epoch
    for seen in ranks:
        assert len(seen["grads"]) == len(single["grads"])
        for step, (ours, theirs) in enumerate(zip(seen["grads"], single["grads"], strict=True)):
            assert ours.keys() == theirs.keys(), step
            for name in theirs:
                torch.testing.assert_close(
                    ours[name], theirs[name], msg=lambda m, n=name, i=step: f"gradient of {n} at step {i}: {m}"
                )
        for name, value in single["state"].items():
            torch.testing.assert_close(seen["state"][name], value, msg=lambda m, n=name: f"{n} after training: {m}")
        assert seen["train_loss"] == pytest.approx(single["train_loss"], rel=1e-5)  # summed over both processes
        assert seen["val_loss"] == pytest.approx(single["val_loss"], rel=1e-5)
    for name, value in ranks[0]["state"].items():  # DDP keeps the replicas identical, bit for bit
        assert torch.equal(ranks[1]["state"][name], value), name


def _torchrun(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
        "-m",
        "training",
        "train",
        "--kind",
        "vae",
        "--dataset",
        "digits",
        "--limit",
        "300",
        "--iw-samples",
        "10",
        "--device",
        "cpu",
        "--no-progress",
        "--out",
        "models/ddp-vae",
        *args,
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def test_torchrun_trains_resumes_and_exports_a_model_the_service_loads(tmp_path):
    from service.metrics import Metrics
    from service.settings import Settings

    from ..registries import load_registry

    first = _torchrun(tmp_path, "--epochs", "1", "--keep-checkpoint")
    assert "data-parallel over 2 processes" in first.stdout
    assert first.stdout.count("wrote models/ddp-vae/") == 1  # rank 0 alone exports and writes
    # A finished run continued for more epochs replaces its model: that takes --force.
    again = _torchrun(tmp_path, "--epochs", "2", "--resume", "--force")
    assert f"resumed from {checkpoint_dir(tmp_path / 'models' / 'ddp-vae')}/last.pt at epoch 1" in again.stdout
    assert not list((tmp_path / "checkpoints").iterdir())  # a finished run leaves no checkpoint behind

    out = tmp_path / "models" / "ddp-vae"
    manifest = load_manifest(out)
    verify_files(out, manifest)
    t = manifest.training
    assert (t.device, t.precision, t.world_size, t.epochs) == ("cpu", "fp32", 2, 2)
    registry = load_registry(Settings(models_dir=tmp_path / "models"), ThreadPoolExecutor(1), Metrics())
    assert registry.refused == [] and sorted(registry.models) == ["ddp-vae"]


def test_help_documents_device_and_precision(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    assert "--device DEVICE auto | cpu | cuda | cuda:N: where to train; auto takes the GPU" in text
    assert "--precision {fp32,bf16} fp32, or bf16: bf16 autocast" in text


@pytest.mark.parametrize(
    "args, message",
    [
        (["--device", "tpu"], "--device 'tpu': expected one of auto | cpu | cuda | cuda:N"),
        (["--device", "cpu", "--precision", "bf16"], "--precision bf16: bf16 autocast is for CUDA GPUs"),
        pytest.param(
            ["--device", "cuda"],
            "--device cuda: ",
            marks=pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU"),
        ),
    ],
)
def test_a_device_this_machine_cannot_give_is_a_message_and_exit_2(tmp_path, monkeypatch, capsys, args, message):
    monkeypatch.chdir(tmp_path)
    code = main(["train", "--kind", "vae", "--dataset", "digits", "--epochs", "1", "--out", "m", *args])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith(f"error: {message}") and "Traceback" not in err
    assert not (tmp_path / "m").exists()
