"""The training loop: minibatches, KL warm-up, validation, best-checkpoint keeping, resumable checkpoints."""

from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from .networks import AutoEncoder
from .objectives import LossTerms, bernoulli_nll, gaussian_nll, negative_elbo


class CheckpointMismatch(Exception):
    """--resume with options that differ from the checkpoint's."""


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 70
    batch_size: int = 64
    learning_rate: float = 2e-3
    beta: float = 1.0
    warmup_epochs: int = 10  # beta ramps linearly from 0 over these epochs
    free_bits: float = 0.0  # nats per latent dimension, on the batch-mean KL
    augment_shift: int = 1  # random translation of training images by up to this many pixels
    likelihood: str = "bernoulli"
    seed: int = 0


@dataclass
class History:
    epoch: list[int] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    train_rec: list[float] = field(default_factory=list)
    train_kl: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)

    def add(self, epoch: int, train: dict[str, float], val: float) -> None:
        self.epoch.append(epoch)
        self.train_loss.append(train["loss"])
        self.train_rec.append(train["rec"])
        self.train_kl.append(train["kl"])
        self.val_loss.append(val)


@dataclass
class TrainResult:
    best_epoch: int
    best_val: float
    history: History
    seconds: float


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


def loss_terms(model: AutoEncoder, image: torch.Tensor, target: torch.Tensor, label: torch.Tensor | None,
               likelihood: str, beta: float, free_bits: float, noise: torch.Tensor) -> LossTerms:
    """The objective for one batch: the encoder sees `image`, the likelihood scores `target`; noise [B, D]."""
    mu, logvar = model.encoder(image, label)
    z = mu if logvar is None else mu + noise * (0.5 * logvar).exp()
    out = model.decoder(z, label)
    if likelihood == "bernoulli":
        rec = bernoulli_nll(out, target)
    else:
        rec = gaussian_nll(torch.sigmoid(out), target, model.log_sigma)
    if logvar is None:
        zero = rec.new_zeros(())
        return LossTerms(total=rec.mean(), rec=rec.mean(), kl=zero)
    return negative_elbo(rec, mu, logvar, beta=beta, free_bits=free_bits)


class Trainer:
    """Trains `model` on uint8 images; validation scores a fixed binarization with fixed noise, so epochs compare."""

    def __init__(self, model: AutoEncoder, cfg: TrainConfig, images: np.ndarray, labels: np.ndarray | None,
                 train_idx: np.ndarray, val_idx: np.ndarray, checkpoint_dir: Path | None = None):
        self.model, self.cfg = model, cfg
        self.x = torch.from_numpy(images).float().div_(255.0)  # [N, C, H, W] in [0, 1]
        self.y = None if labels is None else torch.from_numpy(labels)
        self.train_idx, self.val_idx = torch.from_numpy(train_idx), torch.from_numpy(val_idx)
        self.checkpoint_dir = checkpoint_dir
        self.gen = torch.Generator().manual_seed(cfg.seed)
        self.opt = torch.optim.Adam(model.parameters(), lr=cfg.learning_rate, fused=True)  # fused: ~15% faster on CPU
        self.sched = torch.optim.lr_scheduler.CosineAnnealingLR(self.opt, T_max=cfg.epochs, eta_min=cfg.learning_rate / 20)
        self.history = History()
        self.epoch = 0
        self.best_val = float("inf")
        self.best_epoch = 0
        self.best_state = copy.deepcopy(model.state_dict())
        val_gen = torch.Generator().manual_seed(cfg.seed + 1)
        xv = self.x[self.val_idx]
        self.val_target = torch.bernoulli(xv, generator=val_gen) if cfg.likelihood == "bernoulli" else xv
        self.val_noise = torch.randn(len(val_idx), model.cfg.latent_dim, generator=val_gen)
        self.elapsed = 0.0

    def beta_now(self) -> float:
        if self.cfg.warmup_epochs <= 0:
            return self.cfg.beta
        return self.cfg.beta * min(1.0, (self.epoch + 1) / self.cfg.warmup_epochs)

    def _labels(self, idx: torch.Tensor) -> torch.Tensor | None:
        return None if self.y is None or not self.model.cfg.conditional else self.y[idx]

    def train_epoch(self) -> dict[str, float]:
        self.model.train()
        order = self.train_idx[torch.randperm(len(self.train_idx), generator=self.gen)]
        beta, sums, seen = self.beta_now(), np.zeros(3), 0
        for start in range(0, len(order), self.cfg.batch_size):
            idx = order[start : start + self.cfg.batch_size]
            x = shift(self.x[idx], self.cfg.augment_shift, self.gen)
            # Bernoulli: a fresh random binarization each batch (dynamic binarization) regularises the model.
            target = torch.bernoulli(x, generator=self.gen) if self.cfg.likelihood == "bernoulli" else x
            noise = torch.randn(len(idx), self.model.cfg.latent_dim, generator=self.gen)
            terms = loss_terms(self.model, x, target, self._labels(idx), self.cfg.likelihood, beta, self.cfg.free_bits,
                               noise)
            self.opt.zero_grad(set_to_none=True)
            terms.total.backward()
            self.opt.step()
            sums += len(idx) * np.array([terms.total.item(), terms.rec.item(), terms.kl.item()])
            seen += len(idx)
        self.sched.step()
        return dict(zip(("loss", "rec", "kl"), (sums / seen).tolist()))

    @torch.no_grad()
    def validate(self) -> float:
        """Validation objective with the full beta and no free bits (nats per image)."""
        self.model.eval()
        total = 0.0
        for start in range(0, len(self.val_idx), 500):
            idx = self.val_idx[start : start + 500]
            sl = slice(start, start + len(idx))
            terms = loss_terms(self.model, self.x[idx], self.val_target[sl], self._labels(idx), self.cfg.likelihood,
                               self.cfg.beta, 0.0, noise=self.val_noise[sl])
            total += terms.total.item() * len(idx)
        return total / len(self.val_idx)

    def fit(self, progress: bool = True, stop_after: int | None = None) -> TrainResult:
        """Train to cfg.epochs (or stop after `stop_after` epochs, as an interruption would) and load the best."""
        last = self.cfg.epochs if stop_after is None else min(self.cfg.epochs, stop_after)
        bar = tqdm(total=self.cfg.epochs, initial=self.epoch, disable=not progress, unit="epoch", dynamic_ncols=True)
        while self.epoch < last:
            start = time.perf_counter()
            train = self.train_epoch()
            val = self.validate()
            self.epoch += 1
            self.history.add(self.epoch, train, val)
            if val < self.best_val:
                self.best_val, self.best_epoch = val, self.epoch
                self.best_state = copy.deepcopy(self.model.state_dict())
            self.elapsed += time.perf_counter() - start
            self.save()
            status = dict(loss=f"{train['loss']:.1f}", rec=f"{train['rec']:.1f}", kl=f"{train['kl']:.1f}",
                          val=f"{val:.1f}", best=f"{self.best_val:.1f}@{self.best_epoch}")
            bar.set_postfix(status)
            bar.update(1)
            if not progress and (self.epoch % 10 == 0 or self.epoch == last):  # still a trace in logs and CI
                print(f"epoch {self.epoch}/{self.cfg.epochs} " + " ".join(f"{k}={v}" for k, v in status.items())
                      + f" ({self.elapsed:.0f} s)", flush=True)
        bar.close()
        self.model.load_state_dict(self.best_state)
        return TrainResult(self.best_epoch, self.best_val, self.history, self.elapsed)

    def state(self) -> dict:
        return {
            "model": self.model.state_dict(), "optimizer": self.opt.state_dict(), "scheduler": self.sched.state_dict(),
            "epoch": self.epoch, "best_val": self.best_val, "best_epoch": self.best_epoch,
            "best_state": self.best_state, "history": asdict(self.history), "generator": self.gen.get_state(),
            "elapsed": self.elapsed, "config": asdict(self.cfg), "net": self.model.cfg.to_dict(),
        }

    def save(self) -> None:
        if self.checkpoint_dir is None:
            return
        self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.checkpoint_dir / "last.pt.tmp"
        torch.save(self.state(), tmp)
        tmp.replace(self.checkpoint_dir / "last.pt")  # atomic: an interrupted save never corrupts the checkpoint

    def resume(self, path: Path) -> None:
        """Continue from a checkpoint of the same network and settings (only the number of epochs may grow)."""
        ckpt = torch.load(path, weights_only=False)
        theirs, ours = dict(ckpt["config"], epochs=None), dict(asdict(self.cfg), epochs=None)
        if ckpt["net"] != self.model.cfg.to_dict() or theirs != ours:
            changed = sorted(k for k in ours if theirs.get(k) != ours[k]) or ["network"]
            raise CheckpointMismatch(f"{path}: made with other settings ({', '.join(changed)}); pass the same "
                                     "options to resume, or start afresh without --resume")
        self.model.load_state_dict(ckpt["model"])
        self.opt.load_state_dict(ckpt["optimizer"])
        self.sched.load_state_dict(ckpt["scheduler"])
        self.sched.T_max = self.cfg.epochs  # a resumed run may have been given more epochs
        self.epoch, self.best_val, self.best_epoch = ckpt["epoch"], ckpt["best_val"], ckpt["best_epoch"]
        self.best_state = ckpt["best_state"]
        self.history = History(**ckpt["history"])
        self.gen.set_state(ckpt["generator"])
        self.elapsed = ckpt["elapsed"]
