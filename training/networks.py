"""Convolutional encoder and decoder, sized from the image shape; the VAE family differs only in configuration."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

KINDS = ("ae", "vae", "cvae")


@dataclass(frozen=True)
class NetConfig:
    kind: str  # ae | vae | cvae
    channels: int
    height: int
    width: int
    latent_dim: int = 32
    num_classes: int | None = None  # set for a cvae
    base_channels: int = 32
    hidden: int = 512
    label_dim: int = 16
    extra_convs: int = 0  # stride-1 3x3 convolutions after each resampling one: depth at every resolution

    @property
    def stochastic(self) -> bool:
        return self.kind != "ae"

    @property
    def conditional(self) -> bool:
        return self.kind == "cvae"

    @property
    def classes(self) -> int:
        """The label count a conditional network embeds."""
        if self.num_classes is None:
            raise ValueError(f"a {self.kind} network has no label classes")
        return self.num_classes

    def to_dict(self) -> dict:
        return asdict(self)


def feature_sizes(height: int, width: int, max_levels: int = 4) -> list[tuple[int, int]]:
    """Spatial sizes after each stride-2 convolution: halve (rounding up) while the smaller side is >= 8."""
    sizes = [(height, width)]
    while len(sizes) <= max_levels and min(sizes[-1]) >= 8:
        h, w = sizes[-1]
        sizes.append(((h + 1) // 2, (w + 1) // 2))
    if len(sizes) == 1:  # tiny images still get one level
        sizes.append(((height + 1) // 2, (width + 1) // 2))
    return sizes


def _widths(cfg: NetConfig, levels: int) -> list[int]:
    return [cfg.base_channels * 2**i for i in range(levels)]


class Encoder(nn.Module):
    """image [N, C, H, W] (+ label [N]) -> mu [N, D], logvar [N, D] (logvar is None for an ae)."""

    def __init__(self, cfg: NetConfig):
        super().__init__()
        sizes = feature_sizes(cfg.height, cfg.width)
        widths = _widths(cfg, len(sizes) - 1)
        layers, c_in = [], cfg.channels
        for c_out in widths:
            layers += [nn.Conv2d(c_in, c_out, 3, stride=2, padding=1), nn.SiLU()]
            for _ in range(cfg.extra_convs):
                layers += [nn.Conv2d(c_out, c_out, 3, padding=1), nn.SiLU()]
            c_in = c_out
        self.convs = nn.Sequential(*layers, nn.Flatten())
        flat = widths[-1] * sizes[-1][0] * sizes[-1][1]
        self.label = nn.Embedding(cfg.classes, cfg.label_dim) if cfg.conditional else None
        extra = cfg.label_dim if cfg.conditional else 0
        out = 2 * cfg.latent_dim if cfg.stochastic else cfg.latent_dim
        self.head = nn.Sequential(nn.Linear(flat + extra, cfg.hidden), nn.SiLU(), nn.Linear(cfg.hidden, out))
        self.stochastic = cfg.stochastic

    def forward(self, image: torch.Tensor, label: torch.Tensor | None = None):
        h = self.convs(image)
        if self.label is not None:
            h = torch.cat([h, self.label(label)], dim=1)
        out = self.head(h)
        if not self.stochastic:
            return out, None
        mu, logvar = out.chunk(2, dim=1)
        return mu, logvar


class Decoder(nn.Module):
    """z [N, D] (+ label [N]) -> logits [N, C, H, W]; the image is their sigmoid."""

    def __init__(self, cfg: NetConfig):
        super().__init__()
        sizes = feature_sizes(cfg.height, cfg.width)
        widths = _widths(cfg, len(sizes) - 1)
        self.start = (widths[-1], *sizes[-1])
        self.label = nn.Embedding(cfg.classes, cfg.label_dim) if cfg.conditional else None
        extra = cfg.label_dim if cfg.conditional else 0
        flat = widths[-1] * sizes[-1][0] * sizes[-1][1]
        self.head = nn.Sequential(
            nn.Linear(cfg.latent_dim + extra, cfg.hidden), nn.SiLU(), nn.Linear(cfg.hidden, flat), nn.SiLU()
        )
        layers = []
        outs = widths[::-1][1:] + [widths[0]]
        for i, (c_in, c_out) in enumerate(zip(widths[::-1], outs, strict=True)):
            (h_in, w_in), (h_out, w_out) = sizes[-1 - i], sizes[-2 - i]
            # output_padding makes each transposed convolution land exactly on the encoder's size.
            pad = (h_out - (2 * h_in - 1), w_out - (2 * w_in - 1))
            layers += [nn.ConvTranspose2d(c_in, c_out, 3, stride=2, padding=1, output_padding=pad), nn.SiLU()]
            for _ in range(cfg.extra_convs):
                layers += [nn.Conv2d(c_out, c_out, 3, padding=1), nn.SiLU()]
        layers.append(nn.Conv2d(widths[0], cfg.channels, 3, padding=1))  # per-pixel logits at full resolution
        self.deconvs = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor, label: torch.Tensor | None = None) -> torch.Tensor:
        if self.label is not None:
            z = torch.cat([z, self.label(label)], dim=1)
        return self.deconvs(self.head(z).view(-1, *self.start))


class AutoEncoder(nn.Module):
    """Encoder + decoder (+ the learned pixel noise of a gaussian likelihood). Losses live in objectives.py."""

    def __init__(self, cfg: NetConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)
        self.log_sigma = nn.Parameter(torch.tensor(-2.0))  # used only by a gaussian likelihood

    def reparameterize(self, mu: torch.Tensor, logvar: torch.Tensor | None) -> torch.Tensor:
        if logvar is None:
            return mu
        return mu + torch.randn_like(mu) * (0.5 * logvar).exp()

    def forward(
        self, image: torch.Tensor, label: torch.Tensor | None, noise: torch.Tensor, prior_z: torch.Tensor | None = None
    ):
        """The training pass, noise given: image [B, C, H, W], noise [B, D] -> logits [B, C, H, W], mu, logvar [B, D].

        One call through the whole network, so that DistributedDataParallel (which hooks `forward`) can wrap it.
        With `prior_z` [B, D] (class guidance, training/guidance.py) the decoder also draws those codes with the same
        labels, in the same call: the logits are then [2B, C, H, W], the reconstructions first.
        """
        mu, logvar = self.encoder(image, label)
        z = mu if logvar is None else mu + noise * (0.5 * logvar).exp()
        if prior_z is None or label is None:
            return self.decoder(z, label), mu, logvar
        return self.decoder(torch.cat([z, prior_z]), torch.cat([label, label])), mu, logvar


class EncoderGraph(nn.Module):
    """What encoder.onnx computes: image (+ label) -> mu (+ logvar)."""

    def __init__(self, model: AutoEncoder):
        super().__init__()
        self.encoder = model.encoder

    def forward(self, image, label=None):
        mu, logvar = self.encoder(image, label)
        return mu if logvar is None else (mu, logvar)


class DecoderGraph(nn.Module):
    """What decoder.onnx computes: z (+ label) -> image in [0, 1] (+ logits for a bernoulli likelihood)."""

    def __init__(self, model: AutoEncoder, with_logits: bool):
        super().__init__()
        self.decoder = model.decoder
        self.with_logits = with_logits

    def forward(self, z, label=None):
        logits = self.decoder(z, label)
        image = torch.sigmoid(logits)
        return (image, logits) if self.with_logits else image
