"""Training checkpoints: atomic writes, `last` / `best` / keep-last-K policies, and checked reading.

A checkpoint is a torch .pt dict (docs/training.md, "Checkpoints"): "format": "nano-checkpoint", "version": 1,
"model", "model_config", "train_config", "step", "tokenizer_json", "tokenizer_hash", plus the optimizer,
scaler, loader positions and RNG states needed to resume exactly.
"""

from __future__ import annotations

import os
import random
import re
import shutil
from pathlib import Path

import numpy as np
import torch

from nano.lora import atomic_torch_save

FORMAT = "nano-checkpoint"
VERSION = 1
_NUMBERED = re.compile(r"^ckpt_(\d+)\.pt$")


def rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def load_checkpoint(path: str | Path, map_location="cpu") -> dict:
    """Read and check a checkpoint file; a clear error if it is not one."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint not found")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as e:  # a truncated or foreign file
        raise ValueError(f"{path}: not a readable checkpoint ({e})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        got = ckpt.get("format") if isinstance(ckpt, dict) else type(ckpt).__name__
        raise ValueError(f"{path}: not a Nano checkpoint (format {got!r}, expected {FORMAT!r})")
    if ckpt.get("version") != VERSION:
        raise ValueError(f"{path}: unsupported checkpoint version {ckpt.get('version')!r}")
    for key in ("model", "model_config", "step"):
        if key not in ckpt:
            raise ValueError(f"{path}: checkpoint lacks {key!r}")
    return ckpt


class CheckpointWriter:
    """Writes `ckpt_<step>.pt` (keeping the newest keep_last), `last.pt` and `best.pt` in out_dir."""

    def __init__(self, out_dir: str | Path, keep_last: int = 2):
        self.out_dir = Path(out_dir)
        self.keep_last = max(0, int(keep_last))

    def save_last(self, payload: dict, step: int) -> Path:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        last = self.out_dir / "last.pt"
        if self.keep_last == 0:
            return atomic_torch_save(payload, last)
        numbered = atomic_torch_save(payload, self.out_dir / f"ckpt_{step:07d}.pt")
        _link_or_copy(numbered, last)
        self._prune()
        return last

    def save_best(self, payload: dict) -> Path:
        return atomic_torch_save(payload, self.out_dir / "best.pt")

    def _prune(self) -> None:
        numbered = sorted(p for p in self.out_dir.iterdir() if _NUMBERED.match(p.name))
        for old in numbered[: -self.keep_last]:
            old.unlink(missing_ok=True)


def _link_or_copy(src: Path, dst: Path) -> None:
    """Point dst at src's content atomically: a hard link when the filesystem allows, else a copy."""
    tmp = dst.with_name(f".{dst.name}.link.tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(src, tmp)
    except OSError:
        shutil.copyfile(src, tmp)
    os.replace(tmp, dst)
