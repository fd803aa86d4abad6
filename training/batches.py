"""Which rows of each global batch a training process takes, their pixels (read ahead for a folder on disk), shifts."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import cast

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from .data import FolderImages

LOADER_WORKERS = min(4, os.cpu_count() or 1)  # processes that decode a folder on disk, per training process


def shard(n: int, rank: int, world_size: int) -> slice:
    """This process's contiguous rows of a global batch of n; sizes differ by at most one (as torch.tensor_split)."""
    q, r = divmod(n, world_size)
    start = rank * q + min(rank, r)
    return slice(start, start + q + (rank < r))


def pixels(
    images: np.ndarray | FolderImages, batches: list[np.ndarray], workers: int = LOADER_WORKERS
) -> Iterator[torch.Tensor]:
    """uint8 images [len(rows), C, H, W] for each array of dataset rows in `batches`, in that order.

    An array in memory is indexed as training goes. A folder on disk is decoded by `workers` processes a few
    batches ahead, so the GPU does not wait on the disk; what it yields is what the array would have given.
    """
    if isinstance(images, np.ndarray):
        return (torch.from_numpy(images[rows]) for rows in batches)
    loader: DataLoader[torch.Tensor] = DataLoader(
        cast(Dataset, images),  # map-style: it has __len__ and __getitem__
        batch_sampler=[rows.tolist() for rows in batches],
        num_workers=workers,
        prefetch_factor=4 if workers else None,
    )
    return iter(loader)


def shift(x: torch.Tensor, max_shift: int, gen: torch.Generator) -> torch.Tensor:
    """Translate each image by up to max_shift pixels (zero fill): [B, C, H, W] -> same."""
    if max_shift <= 0:
        return x
    b, c, h, w = x.shape
    padded = torch.nn.functional.pad(x, (max_shift,) * 4)
    dy, dx = torch.randint(0, 2 * max_shift + 1, (2, b, 1), generator=gen)
    rows = (dy + torch.arange(h))[:, None, :, None]  # [B, 1, H, 1]
    cols = (dx + torch.arange(w))[:, None, None, :]  # [B, 1, 1, W]
    return padded[torch.arange(b)[:, None, None, None], torch.arange(c)[None, :, None, None], rows, cols]
