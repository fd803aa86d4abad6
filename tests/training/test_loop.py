import numpy as np
import pytest

torch = pytest.importorskip("torch")

from training.batches import shift  # noqa: E402
from training.loop import CheckpointMismatch, TrainConfig, Trainer  # noqa: E402
from training.networks import AutoEncoder, NetConfig  # noqa: E402


def _trainer(tmp_path, train=range(48), val=range(48, 60), **overrides):
    rng = np.random.default_rng(0)
    images = (rng.random((60, 1, 8, 8)) * 255).astype(np.uint8)
    torch.manual_seed(0)
    model = AutoEncoder(NetConfig("vae", 1, 8, 8, latent_dim=2, base_channels=4, hidden=8))
    cfg = TrainConfig(**{"epochs": 4, "batch_size": 16, "warmup_epochs": 2, **overrides})
    return Trainer(model, cfg, images, None, np.array(train), np.array(val), checkpoint_dir=tmp_path)


def test_interrupted_and_resumed_run_ends_exactly_where_an_uninterrupted_one_does(tmp_path):
    straight = _trainer(tmp_path / "a")
    straight.fit(progress=False)
    first = _trainer(tmp_path / "b")
    first.fit(progress=False, stop_after=2)
    resumed = _trainer(tmp_path / "b")
    resumed.resume(tmp_path / "b" / "last.pt")
    assert resumed.epoch == 2
    resumed.fit(progress=False)
    assert resumed.history.val_loss == straight.history.val_loss
    for name, value in straight.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[name]), name


def test_resume_with_other_settings_is_refused(tmp_path):
    _trainer(tmp_path).fit(progress=False, stop_after=1)
    other = _trainer(tmp_path, beta=4.0)
    with pytest.raises(CheckpointMismatch, match="beta"):
        other.resume(tmp_path / "last.pt")


def test_resume_on_other_rows_is_refused(tmp_path):
    """Another split (or dataset) would train the resumed part on images the first part held out."""
    _trainer(tmp_path).fit(progress=False, stop_after=1)
    other = _trainer(tmp_path, train=range(12, 60), val=range(12))
    with pytest.raises(CheckpointMismatch, match="held out before"):
        other.resume(tmp_path / "last.pt")


def test_best_checkpoint_is_the_lowest_validation_loss(tmp_path):
    trainer = _trainer(tmp_path)
    result = trainer.fit(progress=False)
    assert result.best_val == min(result.history.val_loss)
    assert result.best_epoch == result.history.epoch[int(np.argmin(result.history.val_loss))]
    assert trainer.validate() == pytest.approx(result.best_val, rel=1e-5)  # the best weights are the ones loaded


def test_warmup_ramps_beta():
    trainer = _trainer(None, beta=2.0, warmup_epochs=4)
    seen = []
    for epoch in range(5):
        trainer.epoch = epoch
        seen.append(trainer.beta_now())
    assert seen == [0.5, 1.0, 1.5, 2.0, 2.0]


def test_shift_moves_content_without_wrapping():
    x = torch.zeros(1, 1, 5, 5)
    x[0, 0, 2, 2] = 1.0
    out = shift(x.expand(200, 1, 5, 5), 2, torch.Generator().manual_seed(0))
    assert torch.all(out.sum((1, 2, 3)) == 1.0)  # one bright pixel stays one, never wraps or vanishes
    positions = {tuple(torch.nonzero(o[0])[0].tolist()) for o in out}
    assert len(positions) == 25
