"""The training loop: minibatches, KL warm-up, validation, best-checkpoint keeping, resumable checkpoints.

Data-parallel runs (torchrun) train on the same global batches as one process would: every process draws the
randomness of the whole global batch (order, shifts, binarization, noise) from the same seeded CPU generator, then
trains on its own contiguous shard of rows, and DistributedDataParallel averages the gradients.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from .batches import pixels, shard, shift
from .corruption import Corruption
from .data import FolderImages
from .distributed import Placement, all_sum, broadcast
from .guidance import Guide, freeze, guidance_loss, train_guide
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
    corrupt: str | None = None  # a denoising autoencoder: the encoder sees a corrupted input (training/corruption.py)
    class_guidance: float = 0.0  # a cvae's weight of the guide's cross-entropy on prior draws (training/guidance.py)


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


def objective(
    logits: torch.Tensor,
    mu: torch.Tensor,
    logvar: torch.Tensor | None,
    target: torch.Tensor,
    log_sigma: torch.Tensor,
    likelihood: str,
    beta: float,
    free_bits: float,
) -> LossTerms:
    """The loss of one batch from the network's outputs: logits [B, C, H, W], mu and logvar [B, D]; `target` scored."""
    # Under bf16 autocast the network returns bf16; the sums over pixels and latents stay in float32.
    # (.float() of a float32 tensor is the tensor itself: fp32 runs are unchanged.)
    logits, mu = logits.float(), mu.float()
    if likelihood == "bernoulli":
        rec = bernoulli_nll(logits, target)
    else:
        rec = gaussian_nll(torch.sigmoid(logits), target, log_sigma)
    if logvar is None:
        zero = rec.new_zeros(())
        return LossTerms(total=rec.mean(), rec=rec.mean(), kl=zero)
    return negative_elbo(rec, mu, logvar.float(), beta=beta, free_bits=free_bits)


class Trainer:
    """Trains `model` on uint8 images; validation scores a fixed binarization with fixed noise, so epochs compare.

    `place` says on which device, in which precision and as which of how many processes (see distributed.py).
    Batches are built on the CPU, from one seeded CPU generator, so a seed gives the same batches on every device
    and with any number of processes; each process then moves only its own rows to its device.
    """

    def __init__(
        self,
        model: AutoEncoder,
        cfg: TrainConfig,
        images: np.ndarray | FolderImages,
        labels: np.ndarray | None,
        train_idx: np.ndarray,
        val_idx: np.ndarray,
        checkpoint_dir: Path | None = None,
        place: Placement | None = None,
    ):
        self.place = place or Placement(torch.device("cpu"))
        self.device = self.place.device
        # A Bernoulli decoder has no pixel noise: a log_sigma that never gets a gradient would make DDP wait for it.
        model.log_sigma.requires_grad_(cfg.likelihood == "gaussian")
        self.model, self.cfg = model.to(self.device), cfg
        self.net: torch.nn.Module = model
        if self.place.distributed:  # averages gradients over the processes during backward()
            cuda = self.device.type == "cuda"
            self.net = DistributedDataParallel(model, device_ids=[self.device] if cuda else None)
        self.images = images  # uint8 [N, C, H, W], in memory or a folder on disk
        self.y = None if labels is None else torch.from_numpy(labels)
        self.train_idx, self.val_idx = torch.from_numpy(train_idx), torch.from_numpy(val_idx)
        # Which rows of how many images trained and validated: a resumed run on other rows would train on images
        # the first part held out, and compare validation figures of two different sets.
        rows = [np.asarray(train_idx, np.int64).tobytes(), np.asarray(val_idx, np.int64).tobytes(), b"%d" % len(images)]
        self.rows_digest = hashlib.sha256(b"|".join(rows)).hexdigest()
        self.checkpoint_dir = checkpoint_dir
        self.gen = torch.Generator().manual_seed(cfg.seed)  # every draw of training randomness, on the CPU
        self.opt = torch.optim.Adam(model.parameters(), lr=cfg.learning_rate, fused=True)  # fused: ~15% faster on CPU
        self.sched = torch.optim.lr_scheduler.CosineAnnealingLR(
            self.opt, T_max=cfg.epochs, eta_min=cfg.learning_rate / 20
        )
        self.history = History()
        self.epoch = 0
        self.best_val = float("inf")
        self.best_epoch = 0
        self.best_state = copy.deepcopy(model.state_dict())
        val_gen = torch.Generator().manual_seed(cfg.seed + 1)
        xv = torch.from_numpy(images[val_idx]).float().div_(255.0)  # [V, C, H, W] in [0, 1]
        val_target = torch.bernoulli(xv, generator=val_gen) if cfg.likelihood == "bernoulli" else xv
        val_noise = torch.randn(len(val_idx), model.cfg.latent_dim, generator=val_gen)
        self.corruption = Corruption.parse(cfg.corrupt) if cfg.corrupt else None
        if self.corruption is not None:  # validation measures denoising: a fixed corruption, a clean target
            xv = self.corruption(xv, val_gen)
        # The validation set is drawn once and lives on the device: [V, C, H, W], [V, C, H, W], [V, D], [V].
        self.val_x, self.val_target, self.val_noise = (t.to(self.device) for t in (xv, val_target, val_noise))
        self.val_labels = self._labels(self.val_idx)
        self.elapsed = 0.0
        self.guide: Guide | None = None  # trained when fit() starts, unless a resumed checkpoint brings it

    @property
    def guided(self) -> bool:
        return self.cfg.class_guidance > 0 and self.y is not None and self.model.cfg.conditional

    def _train_guide(self) -> None:
        """Rank 0 trains the guide on the training rows and sends its weights, so every process has the same critic."""
        assert self.y is not None and self.model.cfg.num_classes is not None
        weights = None
        if self.place.is_main:
            rows = self.train_idx.numpy()
            guide = train_guide(self.images, self.y.numpy(), rows, self.model.cfg.num_classes, self.device)
            weights = {k: v.cpu() for k, v in guide.state_dict().items()}
        self._set_guide(broadcast(weights, self.place))

    def _set_guide(self, weights: dict) -> None:
        c, h, w = self.images.shape[1:]
        assert self.model.cfg.num_classes is not None
        guide = Guide(c, h, w, self.model.cfg.num_classes)
        guide.load_state_dict(weights)
        self.guide = freeze(guide.to(self.device))

    def beta_now(self) -> float:
        if self.cfg.warmup_epochs <= 0:
            return self.cfg.beta
        return self.cfg.beta * min(1.0, (self.epoch + 1) / self.cfg.warmup_epochs)

    def _labels(self, idx: torch.Tensor) -> torch.Tensor | None:
        return None if self.y is None or not self.model.cfg.conditional else self.y[idx].to(self.device)

    def _to_device(self, t: torch.Tensor) -> torch.Tensor:
        """A CPU batch on the device; on CUDA through pinned memory, so the CPU goes on while the copy runs."""
        return t.pin_memory().to(self.device, non_blocking=True) if self.device.type == "cuda" else t

    def loss(
        self,
        net,
        x: torch.Tensor,
        target: torch.Tensor,
        label: torch.Tensor | None,
        beta: float,
        free_bits: float,
        noise: torch.Tensor,
        prior_z: torch.Tensor | None = None,
    ) -> LossTerms:
        """One batch's objective; `net` is the model, or its DDP wrapper in training. bf16 covers the network only.

        With `prior_z` (class guidance) the total adds the guide's weighted cross-entropy on the decoder's drawings
        of those codes with the batch's labels; `rec` and `kl` stay the likelihood's own terms.
        """
        autocast = (
            torch.autocast("cuda", dtype=torch.bfloat16) if self.place.precision == "bf16" else contextlib.nullcontext()
        )
        with autocast:
            logits, mu, logvar = net(x, label, noise, prior_z)
        terms = objective(
            logits[: len(x)], mu, logvar, target, self.model.log_sigma, self.cfg.likelihood, beta, free_bits
        )
        if prior_z is None or self.guide is None or label is None:
            return terms
        guided = self.cfg.class_guidance * guidance_loss(self.guide, logits[len(x) :], label)
        return terms._replace(total=terms.total + guided)

    def train_epoch(self) -> dict[str, float]:
        self.net.train()
        rank, world = self.place.rank, self.place.world_size
        order = self.train_idx[torch.randperm(len(self.train_idx), generator=self.gen)]
        batches = [order[s : s + self.cfg.batch_size] for s in range(0, len(order), self.cfg.batch_size)]
        # A batch with fewer rows than processes (a last one) cannot be split: every process skips it.
        mine = [idx[shard(len(idx), rank, world)].numpy() for idx in batches if len(idx) >= world]
        loaded = pixels(self.images, mine)  # uint8 [rows, C, H, W] for each of them, in order
        beta = self.beta_now()
        sums = torch.zeros(4, dtype=torch.float64, device=self.device)  # rows x (loss, rec, kl), rows
        for idx in batches:  # the global batches, the same on every process
            rows = shard(len(idx), rank, world)  # this process's rows: all of them in a single process
            # The draws below depend only on the batch's shape, so the other processes' rows may stay zero: for its
            # own rows a process draws exactly what a single process would for the whole global batch.
            x = torch.zeros(len(idx), *self.images.shape[1:])  # [B, C, H, W]
            if len(idx) >= world:
                x[rows] = next(loaded).float().div_(255.0)
            x = shift(x, self.cfg.augment_shift, self.gen)
            # Bernoulli: a fresh random binarization each batch (dynamic binarization) regularises the model.
            target = torch.bernoulli(x, generator=self.gen) if self.cfg.likelihood == "bernoulli" else x
            noise = torch.randn(len(idx), self.model.cfg.latent_dim, generator=self.gen)
            # Drawn only when guided, so that an unguided run's randomness is what it always was.
            prior_z = torch.randn(len(idx), self.model.cfg.latent_dim, generator=self.gen) if self.guided else None
            if self.corruption is not None:  # the input only: the target above stays the clean image
                x = self.corruption(x, self.gen)
            if len(idx) < world:
                continue  # after its draws, so that the generator stays where a single process's would be
            x, target, noise = (self._to_device(t[rows]) for t in (x, target, noise))
            drawn = None if prior_z is None else self._to_device(prior_z[rows])
            terms = self.loss(self.net, x, target, self._labels(idx[rows]), beta, self.cfg.free_bits, noise, drawn)
            self.opt.zero_grad(set_to_none=True)
            if self.place.distributed:
                # DDP averages the processes' gradients; weighting each shard's mean by its share of the global batch
                # turns that average into the global-batch mean, also when the batch does not divide evenly.
                (terms.total * (len(x) * world / len(idx))).backward()
            else:
                terms.total.backward()
            self.opt.step()
            sums += (
                len(x)
                * torch.stack(
                    [terms.total.detach(), terms.rec.detach(), terms.kl.detach(), terms.total.new_ones(())]
                ).double()
            )
        self.sched.step()
        totals = all_sum(sums.cpu().numpy(), self.place)  # one transfer per epoch, not one per step
        return dict(zip(("loss", "rec", "kl"), (totals[:3] / totals[3]).tolist(), strict=True))

    @torch.no_grad()
    def validate(self) -> float:
        """Validation objective with the full beta and no free bits (nats per image)."""
        self.model.eval()
        total = 0.0
        for start in range(0, len(self.val_idx), 500):
            sl = slice(start, start + 500)
            labels = None if self.val_labels is None else self.val_labels[sl]
            terms = self.loss(
                self.model, self.val_x[sl], self.val_target[sl], labels, self.cfg.beta, 0.0, self.val_noise[sl]
            )
            total += terms.total.item() * len(self.val_x[sl])
        return total / len(self.val_idx)

    def fit(self, progress: bool = True, stop_after: int | None = None) -> TrainResult:
        """Train to cfg.epochs (or stop after `stop_after` epochs, as an interruption would) and load the best."""
        last = self.cfg.epochs if stop_after is None else min(self.cfg.epochs, stop_after)
        main = self.place.is_main
        progress = progress and main
        if self.guided and self.guide is None:
            start = time.perf_counter()
            self._train_guide()
            self.elapsed += time.perf_counter() - start  # part of what the model cost to train
        bar = tqdm(total=self.cfg.epochs, initial=self.epoch, disable=not progress, unit="epoch", dynamic_ncols=True)
        while self.epoch < last:
            start = time.perf_counter()
            train = self.train_epoch()
            # Rank 0 validates and every process takes its figure, so all keep the same best epoch.
            val = broadcast(self.validate() if main else None, self.place)
            self.epoch += 1
            self.history.add(self.epoch, train, val)
            if val < self.best_val:
                self.best_val, self.best_epoch = val, self.epoch
                self.best_state = copy.deepcopy(self.model.state_dict())
            self.elapsed += time.perf_counter() - start
            self.save()
            status = dict(
                loss=f"{train['loss']:.1f}",
                rec=f"{train['rec']:.1f}",
                kl=f"{train['kl']:.1f}",
                val=f"{val:.1f}",
                best=f"{self.best_val:.1f}@{self.best_epoch}",
            )
            bar.set_postfix(status)
            bar.update(1)
            if main and not progress and (self.epoch % 10 == 0 or self.epoch == last):  # still a trace in logs and CI
                print(
                    f"epoch {self.epoch}/{self.cfg.epochs} "
                    + " ".join(f"{k}={v}" for k, v in status.items())
                    + f" ({self.elapsed:.0f} s)",
                    flush=True,
                )
        bar.close()
        self.model.load_state_dict(self.best_state)
        return TrainResult(self.best_epoch, self.best_val, self.history, self.elapsed)

    def state(self) -> dict:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.opt.state_dict(),
            "scheduler": self.sched.state_dict(),
            "epoch": self.epoch,
            "best_val": self.best_val,
            "best_epoch": self.best_epoch,
            "best_state": self.best_state,
            "history": asdict(self.history),
            "generator": self.gen.get_state(),
            "elapsed": self.elapsed,
            "config": asdict(self.cfg),
            "net": self.model.cfg.to_dict(),
            "rows": self.rows_digest,
            "guide": None if self.guide is None else self.guide.state_dict(),
        }

    def save(self) -> None:
        """Rank 0 writes checkpoints/NAME-KEY/last.pt; the other processes hold the same state."""
        if self.checkpoint_dir is None or not self.place.is_main:
            return
        self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.checkpoint_dir / "last.pt.tmp"
        torch.save(self.state(), tmp)
        tmp.replace(self.checkpoint_dir / "last.pt")  # atomic: an interrupted save never corrupts the checkpoint

    def resume(self, path: Path) -> None:
        """Continue from a checkpoint of the same network and settings (only the number of epochs may grow)."""
        self.load_state(torch.load(path, map_location="cpu", weights_only=False), path)

    def load_state(self, ckpt: dict, path: Path) -> None:
        """Continue from a checkpoint already read (under torchrun rank 0 reads it and sends it to the others).

        The device, the precision and the number of processes may differ from the run that wrote it: the global
        batches are the same whatever they are.
        """
        # Settings added since a checkpoint was written take their defaults, which is what it trained with.
        theirs = {**asdict(TrainConfig()), **ckpt["config"], "epochs": None}
        ours = dict(asdict(self.cfg), epochs=None)
        if ckpt["net"] != self.model.cfg.to_dict() or theirs != ours:
            changed = sorted(k for k in ours if theirs.get(k) != ours[k]) or ["network"]
            raise CheckpointMismatch(
                f"{path}: made with other settings ({', '.join(changed)}); pass the same "
                "options to resume, or start afresh without --resume"
            )
        if ckpt.get("rows") != self.rows_digest:
            raise CheckpointMismatch(
                f"{path}: made on other images or another split (the dataset, --limit, --test-fraction or "
                "--val-fraction differ), so resuming would train on images held out before; pass the same data and "
                "options to resume, or start afresh without --resume"
            )
        self.model.load_state_dict(ckpt["model"])
        self.opt.load_state_dict(ckpt["optimizer"])
        self.sched.load_state_dict(ckpt["scheduler"])
        self.sched.T_max = self.cfg.epochs  # a resumed run may have been given more epochs
        self.epoch, self.best_val, self.best_epoch = ckpt["epoch"], ckpt["best_val"], ckpt["best_epoch"]
        self.best_state = {k: v.to(self.device) for k, v in ckpt["best_state"].items()}
        self.history = History(**ckpt["history"])
        self.gen.set_state(ckpt["generator"])
        self.elapsed = ckpt["elapsed"]
        if ckpt.get("guide") is not None:
            self._set_guide(ckpt["guide"])
