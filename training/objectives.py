"""Loss functions of the VAE family: pure functions of tensors, shapes in the comments."""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F

LOG_2PI = math.log(2 * math.pi)


class LossTerms(NamedTuple):
    total: torch.Tensor  # scalar that is minimised
    rec: torch.Tensor  # mean over the batch of -log p(x|z)
    kl: torch.Tensor  # mean over the batch of KL(q(z|x) || p(z)), the true one (free bits do not change it)


def bernoulli_nll(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """-log p(x|z) per image for binary x: logits, x [..., C, H, W] -> [...]."""
    return F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(-3).sum(-1)


def gaussian_nll(mean: torch.Tensor, x: torch.Tensor, log_sigma: torch.Tensor) -> torch.Tensor:
    """-log N(x; mean, sigma^2 I) per image, one sigma for all pixels: [..., C, H, W] -> [...]."""
    sq = ((x - mean) / log_sigma.exp()).pow(2).flatten(-3).sum(-1)
    pixels = x.shape[-3] * x.shape[-2] * x.shape[-1]
    return 0.5 * sq + pixels * (log_sigma + 0.5 * LOG_2PI)


def kl_per_dim(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Closed-form KL(N(mu, exp(logvar)) || N(0, 1)) per latent dimension: [B, D] -> [B, D]."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar)


def negative_elbo(
    rec: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor, beta: float = 1.0, free_bits: float = 0.0
) -> LossTerms:
    """rec [B] = -log p(x|z); beta weights only the KL; free bits floor each dimension's batch-mean KL (nats)."""
    kl_dims = kl_per_dim(mu, logvar)  # [B, D]
    kl = kl_dims.sum(1)  # [B]
    kl_objective = kl_dims.mean(0).clamp(min=free_bits).sum() if free_bits > 0 else kl.mean()
    return LossTerms(total=rec.mean() + beta * kl_objective, rec=rec.mean(), kl=kl.mean())


def log_normal(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """log N(z; mu, diag exp(logvar)), summed over the last axis: [..., D] -> [...]."""
    return -0.5 * (LOG_2PI + logvar + (z - mu).pow(2) / logvar.exp()).sum(-1)


def log_standard_normal(z: torch.Tensor) -> torch.Tensor:
    return -0.5 * (LOG_2PI + z.pow(2)).sum(-1)


def importance_weighted_bound(log_px_z: torch.Tensor, log_pz: torch.Tensor, log_qz: torch.Tensor) -> torch.Tensor:
    """log (1/K) sum_k p(x, z_k) / q(z_k|x), a lower bound on log p(x): [K, B] each -> [B]."""
    log_w = log_px_z + log_pz - log_qz
    return torch.logsumexp(log_w, dim=0) - math.log(log_w.shape[0])
