import pytest

torch = pytest.importorskip("torch")

from training.networks import AutoEncoder, NetConfig  # noqa: E402


@pytest.mark.parametrize("kind", ["ae", "vae", "cvae"])
@pytest.mark.parametrize("shape", [(1, 28, 28), (1, 8, 8), (3, 13, 21), (3, 64, 64)])
def test_decoder_returns_the_encoder_input_shape(kind, shape):
    cfg = NetConfig(kind, *shape, latent_dim=5, num_classes=3 if kind == "cvae" else None, base_channels=4, hidden=16)
    model = AutoEncoder(cfg)
    x = torch.rand(2, *shape)
    label = torch.tensor([0, 2]) if kind == "cvae" else None
    mu, logvar = model.encoder(x, label)
    assert mu.shape == (2, 5)
    assert (logvar is None) == (kind == "ae")
    assert model.decoder(mu, label).shape == x.shape
