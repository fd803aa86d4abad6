"""An independent digit classifier for judging generated images, and the Frechet distance in its feature space."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from .batches import shift


class Classifier(nn.Module):
    """Small CNN: images [N, C, H, W] -> logits [N, K]; `features` is the 128-d layer the Frechet distance uses."""

    def __init__(self, channels: int, height: int, width: int, num_classes: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(64 * (height // 4) * (width // 4), 128),
            nn.ReLU(),
        )
        self.head = nn.Sequential(nn.Dropout(0.3), nn.Linear(128, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))

    @torch.no_grad()
    def features(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(features [N, 128], predicted class [N]) for float images in [0, 1]."""
        self.eval()
        device = next(self.parameters()).device
        feats, preds = [], []
        for start in range(0, len(x), 500):
            h = self.body(torch.from_numpy(x[start : start + 500]).to(device))
            feats.append(h.cpu().numpy())
            preds.append(self.head(h).argmax(1).cpu().numpy())
        return np.concatenate(feats).astype(np.float64), np.concatenate(preds)


def train_classifier(
    x: np.ndarray,
    y: np.ndarray,
    num_classes: int,
    epochs: int = 12,
    seed: int = 0,
    device: torch.device | str = "cpu",
    progress: bool = False,
) -> Classifier:
    """Trained on the given (training) rows only, with small shifts; x float32 [N, C, H, W] in [0, 1].

    Batches are drawn and shifted on the CPU (one seeded generator, as in training) and then moved to `device`.
    """
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = Classifier(x.shape[1], x.shape[2], x.shape[3], num_classes).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    for _ in tqdm(range(epochs), desc="classifier", unit="epoch", disable=not progress, dynamic_ncols=True):
        model.train()
        order = torch.randperm(len(xt), generator=gen)
        for start in range(0, len(order), 64):
            idx = order[start : start + 64]
            batch = shift(xt[idx], 2, gen).to(device, non_blocking=True)  # [64, C, H, W]
            loss = nn.functional.cross_entropy(model(batch), yt[idx].to(device))
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
    return model.eval()


def _sqrt_psd(m: np.ndarray) -> np.ndarray:
    """Symmetric square root of a symmetric positive semi-definite matrix (rounding's negative eigenvalues -> 0)."""
    w, v = np.linalg.eigh(m)
    return (v * np.sqrt(w.clip(min=0))) @ v.T


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Frechet distance between Gaussians fitted to two feature sets [N, F] (the FID formula)."""
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    # tr sqrt(A B) = tr sqrt(A^1/2 B A^1/2): the right side is symmetric, so eigh computes it stably. scipy's
    # sqrtm(A @ B) of the non-symmetric product warned (LinAlgWarning) whenever the covariances were near singular,
    # which ReLU features that barely vary make them.
    root_a = _sqrt_psd(cov_a)
    cross = np.sqrt(np.linalg.eigvalsh(root_a @ cov_b @ root_a).clip(min=0)).sum()
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2 * cross)
