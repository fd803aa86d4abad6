import numpy as np
import pytest

torch = pytest.importorskip("torch")
sklearn_datasets = pytest.importorskip("sklearn.datasets")

from training.cli import main  # noqa: E402
from training.loop import TrainConfig, Trainer  # noqa: E402
from training.networks import AutoEncoder, NetConfig  # noqa: E402


def _digits():
    """scikit-learn's real 8x8 digits as uint8 [N, 1, 8, 8] and their labels."""
    d = sklearn_datasets.load_digits()
    return (d.images * (255 / 16)).round().astype(np.uint8)[:, None], d.target.astype(np.int64)


def _trainer(tmp_path, images, labels, rows=600, **overrides):
    torch.manual_seed(0)
    model = AutoEncoder(NetConfig("cvae", 1, 8, 8, latent_dim=4, num_classes=10, base_channels=8, hidden=32))
    cfg = TrainConfig(**{"epochs": 4, "batch_size": 32, "warmup_epochs": 1, "class_guidance": 5.0, **overrides})
    train, val = np.arange(rows), np.arange(rows, rows + 200)
    return Trainer(model, cfg, images, labels, train, val, checkpoint_dir=tmp_path)


def test_an_interrupted_guided_run_resumes_exactly_with_its_guide(tmp_path):
    images, labels = _digits()
    straight = _trainer(tmp_path / "a", images, labels)
    straight.fit(progress=False)
    first = _trainer(tmp_path / "b", images, labels)
    first.fit(progress=False, stop_after=2)
    resumed = _trainer(tmp_path / "b", images, labels)
    resumed.resume(tmp_path / "b" / "last.pt")
    assert resumed.guide is not None  # from the checkpoint, not trained again
    resumed.fit(progress=False)
    assert resumed.history.val_loss == straight.history.val_loss
    for name, value in straight.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[name]), name


def test_guidance_makes_prior_draws_read_as_the_label_asked_for(tmp_path):
    """The guided decoder's drawings of N(0, I) codes are read as their label more often than the unguided one's."""
    images, labels = _digits()
    guided = _trainer(tmp_path / "g", images, labels, rows=1400, epochs=8, class_guidance=20.0)
    guided.fit(progress=False)
    plain = _trainer(tmp_path / "p", images, labels, rows=1400, epochs=8, class_guidance=0.0)
    plain.fit(progress=False)
    assert plain.guide is None
    judge = guided.guide
    assert judge is not None
    want = torch.arange(10).repeat(100)
    z = torch.randn(len(want), 4, generator=torch.Generator().manual_seed(1))
    agreement = {}
    with torch.no_grad():
        for name, trainer in (("guided", guided), ("plain", plain)):
            drawn = torch.sigmoid(trainer.model.decoder(z, want))
            agreement[name] = (judge(drawn).argmax(1) == want).float().mean().item()
    assert agreement["guided"] > agreement["plain"] + 0.2, agreement


def test_a_checkpoint_from_before_class_guidance_resumes(tmp_path):
    """Its config has no class_guidance: it trained without, which is the default, so it is not refused."""
    images, labels = _digits()
    _trainer(tmp_path, images, labels, class_guidance=0.0).fit(progress=False, stop_after=1)
    ckpt = torch.load(tmp_path / "last.pt", weights_only=False)
    del ckpt["config"]["class_guidance"], ckpt["guide"]
    torch.save(ckpt, tmp_path / "last.pt")
    resumed = _trainer(tmp_path, images, labels, class_guidance=0.0)
    resumed.resume(tmp_path / "last.pt")
    assert resumed.epoch == 1


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--kind", "vae", "--class-guidance", "5"], "needs --kind cvae, not vae"),
        (["--kind", "cvae", "--class-guidance", "-1"], "must be a finite number of at least 0"),
        (["--kind", "cvae", "--class-guidance", "nan"], "must be a finite number of at least 0"),
    ],
)
def test_a_guidance_weight_that_cannot_apply_is_refused_before_training(tmp_path, capsys, args, says):
    with pytest.raises(SystemExit) as stop:
        main(["train", "--dataset", "digits", *args, "--out", str(tmp_path / "m")])
    assert stop.value.code == 2
    assert says in capsys.readouterr().err
    assert not (tmp_path / "m").exists()
