"""Where a training process runs: its device, its precision, and its place in a torchrun job.

`python -m training train` is one process; `torchrun --nproc-per-node N -m training train` starts N of them with
RANK, WORLD_SIZE and LOCAL_RANK in the environment, and they train data-parallel (DistributedDataParallel over
NCCL on GPUs, gloo on CPUs). Rank 0 is the one that checkpoints, evaluates, exports and writes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist

DEVICES = "auto | cpu | cuda | cuda:N"
PRECISIONS = ("fp32", "bf16")


class DeviceError(Exception):
    """A device or precision this machine cannot give; the message says what to pass instead."""


@dataclass(frozen=True)
class Placement:
    device: torch.device
    precision: str = "fp32"  # fp32 | bf16 (autocast of the network passes, CUDA only)
    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def describe(self) -> str:
        """What the manifest records, e.g. 'cpu' or 'cuda (NVIDIA H100 80GB HBM3)'."""
        if self.device.type == "cuda":
            return f"cuda ({torch.cuda.get_device_name(self.device)})"
        return self.device.type


def _cuda_missing(spec: str) -> DeviceError:
    build = (
        f"this torch ({torch.__version__}) is a CPU-only build"
        if torch.version.cuda is None
        else "PyTorch sees no CUDA GPU"
    )
    return DeviceError(
        f"--device {spec}: {build}; pass --device cpu (or auto), or install a CUDA build of torch "
        "(README, 'Training on GPUs')"
    )


def resolve_device(spec: str, local_rank: int = 0, world_size: int = 1) -> torch.device:
    """auto -> cuda when available, else cpu; under torchrun on CUDA each process takes cuda:LOCAL_RANK."""
    if spec == "auto":
        spec = "cuda" if torch.cuda.is_available() else "cpu"
    if spec == "cpu":
        return torch.device("cpu")
    if spec != "cuda" and not (spec.startswith("cuda:") and spec[5:].isdigit()):
        raise DeviceError(f"--device {spec!r}: expected one of {DEVICES}")
    if not torch.cuda.is_available():
        raise _cuda_missing(spec)
    if spec != "cuda" and world_size > 1:
        raise DeviceError(
            f"--device {spec}: under torchrun each process takes cuda:LOCAL_RANK; pass --device cuda "
            "and choose GPUs with CUDA_VISIBLE_DEVICES"
        )
    index = local_rank if spec == "cuda" else int(spec[5:])
    if index >= torch.cuda.device_count():
        raise DeviceError(
            f"--device {spec}: cuda:{index} does not exist; this machine has {torch.cuda.device_count()} GPU(s)"
        )
    return torch.device("cuda", index)


def check_precision(precision: str, device: torch.device) -> None:
    """bf16 is autocast on a CUDA GPU that has bf16; it is refused on the CPU rather than silently slow or ignored."""
    if precision not in PRECISIONS:
        raise DeviceError(f"--precision {precision!r}: expected one of {', '.join(PRECISIONS)}")
    if precision == "bf16" and device.type != "cuda":
        raise DeviceError(
            "--precision bf16: bf16 autocast is for CUDA GPUs and this run is on the CPU; "
            "pass --precision fp32 (the default)"
        )
    if precision == "bf16" and not torch.cuda.is_bf16_supported():
        raise DeviceError(f"--precision bf16: {torch.cuda.get_device_name(device)} has no bf16; pass --precision fp32")


def start(device: str = "auto", precision: str = "fp32") -> Placement:
    """This process's placement; joins the torchrun job (init_process_group) when WORLD_SIZE > 1."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    where = resolve_device(device, local_rank, world_size)
    check_precision(precision, where)
    if world_size > 1:
        if where.type == "cuda":
            torch.cuda.set_device(where)
        backend = "nccl" if where.type == "cuda" else "gloo"
        dist.init_process_group(backend, device_id=where if where.type == "cuda" else None)
    return Placement(where, precision, rank, world_size)


def finish(place: Placement) -> None:
    """Wait for every process to finish training, then leave the job; rank 0 goes on alone (no collective timeout)."""
    if place.distributed and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def broadcast(value, place: Placement):
    """Rank 0's `value` on every rank (any picklable object); the value itself when not distributed."""
    if not place.distributed:
        return value
    box = [value if place.is_main else None]
    dist.broadcast_object_list(box, src=0, device=place.device if place.device.type == "cuda" else None)
    return box[0]


def all_sum(values: np.ndarray, place: Placement) -> np.ndarray:
    """Element-wise sum over all ranks of a small float64 array (epoch statistics)."""
    if not place.distributed:
        return values
    t = torch.as_tensor(values, dtype=torch.float64, device=place.device)
    dist.all_reduce(t)
    return t.cpu().numpy()
