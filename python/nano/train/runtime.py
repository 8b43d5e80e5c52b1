"""Where and how training runs: device, precision, process group, optimizer and learning-rate schedule."""

from __future__ import annotations

import contextlib
import math
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class Dist:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    owns_group: bool = False  # we initialised the process group, so we tear it down
    launched: bool = False  # started by torchrun (or a launcher like it): a process group, even of one

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        """Distributed code paths (process group, DDP/FSDP wrapping, collectives) are in use."""
        return self.launched or self.world_size > 1


def pick_device(name: str) -> torch.device:
    if name != "auto":
        device = torch.device(name)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device {name!r} requested but CUDA is not available (use device=auto or cpu)")
        if device.type == "mps" and not torch.backends.mps.is_available():
            raise ValueError(f"device {name!r} requested but MPS is not available (use device=auto or cpu)")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


# what torchrun sets for every worker, and all that init_process_group's env:// rendezvous needs
LAUNCHER_ENV = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


def launched_by_torchrun() -> bool:
    """True under torchrun, also with --nproc_per_node 1 (WORLD_SIZE=1)."""
    return all(k in os.environ for k in LAUNCHER_ENV)


def setup_distributed(device_name: str) -> tuple[Dist, torch.device]:
    """Join the torchrun process group when torchrun started this process: NCCL on GPUs, gloo on CPU.

    A torchrun of one process joins a group of one too, so that DDP/FSDP and the collectives run exactly as
    they would on several devices (the way to try a multi-GPU config on one GPU).
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    device = pick_device(device_name)
    if world <= 1 and not launched_by_torchrun():
        return Dist(), device
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    owns = not dist.is_initialized()
    if owns:
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return Dist(rank, local_rank, world, owns, launched=True), device


def amp_dtype(name: str, device: torch.device) -> torch.dtype:
    if name == "auto":
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]


def autocast_context(device: torch.device, dtype: torch.dtype, enabled: bool):
    if not enabled or dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def sdp_context(kernel: str, device: torch.device):
    """Restrict SDPA to one backend ("flash", "efficient", "math", "cudnn") on CUDA; "auto" lets torch choose.

    The fused backends exist on CUDA only, so elsewhere the setting is ignored (old configs say "flash").
    """
    if kernel in (None, "auto") or device.type != "cuda":
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    backends = {"flash": SDPBackend.FLASH_ATTENTION, "efficient": SDPBackend.EFFICIENT_ATTENTION,
                "math": SDPBackend.MATH, "cudnn": SDPBackend.CUDNN_ATTENTION}
    if kernel not in backends:
        raise ValueError(f"sdp_kernel must be auto or one of {sorted(backends)}, got {kernel!r}")
    return sdpa_kernel(backends[kernel])


def lr_at(it: int, cfg: dict) -> float:
    """Linear warmup, then cosine decay to min_lr at lr_decay_iters (nanoGPT's schedule); it counts from 0."""
    lr, min_lr = float(cfg["learning_rate"]), float(cfg["min_lr"])
    if not cfg["decay_lr"]:
        return lr
    warmup, decay = int(cfg["warmup_iters"]), int(cfg["lr_decay_iters"])
    if it < warmup:
        return lr * (it + 1) / (warmup + 1)
    if it >= decay:
        return min_lr
    ratio = (it - warmup) / max(1, decay - warmup)
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (lr - min_lr)


def make_optimizer(model: torch.nn.Module, cfg: dict, device: torch.device) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices only (not norms/biases)."""
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": float(cfg["weight_decay"])},
              {"params": no_decay, "weight_decay": 0.0}]
    # fused kernel on CUDA; elsewhere the multi-tensor (foreach) path, far fewer small ops than the default
    extra = {"fused": True} if device.type == "cuda" else {"foreach": True}
    return torch.optim.AdamW(groups, lr=float(cfg["learning_rate"]),
                             betas=(float(cfg["beta1"]), float(cfg["beta2"])), **extra)
