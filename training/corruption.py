"""Input corruptions for denoising autoencoders: `--corrupt gaussian:STD | mask:P | saltpepper:P`.

Only the encoder's input is corrupted; the target stays the clean image, so the model learns to denoise. Pure
functions of a batch and a seeded torch.Generator: x float [B, C, H, W] in [0, 1] -> the same shape, in [0, 1].
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import torch

KINDS = ("gaussian", "mask", "saltpepper")


@dataclass(frozen=True)
class Corruption:
    kind: str  # gaussian: add N(0, amount^2) noise; mask: zero each pixel with probability amount;
    amount: float  # saltpepper: set each pixel to 0 or 1 (evenly) with probability amount

    @classmethod
    def parse(cls, spec: str) -> Corruption:
        """'gaussian:0.3' -> Corruption('gaussian', 0.3); argparse.ArgumentTypeError saying what is accepted."""
        kind, _, value = spec.partition(":")
        try:
            amount = float(value)
        except ValueError:
            amount = float("nan")
        if kind not in KINDS or not amount > 0 or (kind != "gaussian" and amount >= 1):
            raise argparse.ArgumentTypeError(
                f"{spec!r}: give gaussian:STD (STD > 0), mask:P or saltpepper:P (0 < P < 1), e.g. mask:0.3"
            )
        return cls(kind, amount)

    def __str__(self) -> str:
        return f"{self.kind}:{self.amount:g}"

    def __call__(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """A corrupted copy of x [B, C, H, W]; draws from `gen` (one tensor of x's shape, two for saltpepper)."""
        if self.kind == "gaussian":
            return (x + self.amount * torch.randn(x.shape, generator=gen)).clamp_(0.0, 1.0)
        hit = torch.rand(x.shape, generator=gen) < self.amount
        if self.kind == "mask":
            return x.masked_fill(hit, 0.0)
        salt = (torch.rand(x.shape, generator=gen) < 0.5).to(x.dtype)
        return torch.where(hit, salt, x)
