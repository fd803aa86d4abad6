"""Class guidance for a conditional VAE: a frozen classifier's cross-entropy on what the decoder draws from the prior.

Trained on likelihood alone, a cvae's decoder draws what is common to the garments a code could be: a coat without
its zip, a sandal without its straps, so that samples of one class look like another. Class guidance (as in the
CVAE-GAN of Bao et al., 2017) adds to each training batch the cross-entropy, against the label asked for, of a
classifier that reads the decoder's images of prior draws z ~ N(0, I). The classifier is trained first, on the
training rows only, and stays frozen: it is a fixed critic, not a second player. Its shape (strided convolutions, no
pooling) differs from the evaluation's judge (training/classifier.py), which is trained apart from it, on other
seeds, so the judge's label agreement measures drawing, not a shared quirk. The likelihood is unchanged, and the best
checkpoint is still the one of the best validation objective (likelihood and KL only).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .batches import pixels, shift
from .data import FolderImages

GUIDE_EPOCHS = 12
GUIDE_BATCH = 128
GUIDE_SEED = 123


class Guide(nn.Module):
    """images [N, C, H, W] in [0, 1] -> logits [N, K]: two strided 5x5 convolutions and a hidden layer."""

    def __init__(self, channels: int, height: int, width: int, num_classes: int):
        super().__init__()
        h, w = (height + 3) // 4, (width + 3) // 4  # after two stride-2 convolutions with padding 2
        self.net = nn.Sequential(
            nn.Conv2d(channels, 32, 5, stride=2, padding=2),
            nn.SiLU(),
            nn.Conv2d(32, 64, 5, stride=2, padding=2),
            nn.SiLU(),
            nn.Flatten(),
            nn.Linear(64 * h * w, 256),
            nn.SiLU(),
            nn.Dropout(0.3),
            nn.Linear(256, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def train_guide(
    images: np.ndarray | FolderImages,
    labels: np.ndarray,
    rows: np.ndarray,
    num_classes: int,
    device: torch.device,
) -> Guide:
    """The frozen guide, trained on `rows` (the training rows) with shifts of up to 2 pixels; same seed, same guide."""
    c, h, w = images.shape[1:]
    gen = torch.Generator().manual_seed(GUIDE_SEED)
    y = torch.from_numpy(np.asarray(labels, np.int64))
    # Its own seed for the weights and the dropout, leaving the caller's random state as it was.
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(GUIDE_SEED)
        guide = Guide(c, h, w, num_classes).to(device)
        opt = torch.optim.Adam(guide.parameters(), lr=2e-3)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=GUIDE_EPOCHS)
        guide.train()
        for _ in range(GUIDE_EPOCHS):
            order = torch.from_numpy(rows)[torch.randperm(len(rows), generator=gen)].numpy()
            batches = [order[s : s + GUIDE_BATCH] for s in range(0, len(order), GUIDE_BATCH)]
            for idx, batch in zip(batches, pixels(images, batches), strict=True):
                x = shift(batch.float().div_(255.0), 2, gen).to(device)
                loss = F.cross_entropy(guide(x), y[idx].to(device))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            sched.step()
    return freeze(guide)


def freeze(guide: Guide) -> Guide:
    guide.eval()  # no dropout: the same critic for every batch
    for p in guide.parameters():
        p.requires_grad_(False)
    return guide


def guidance_loss(guide: Guide, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of the guide on the decoder's images (their logits [B, C, H, W]) against `labels` [B]."""
    return F.cross_entropy(guide(torch.sigmoid(logits.float())), labels)
