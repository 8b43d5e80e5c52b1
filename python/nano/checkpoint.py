"""Training checkpoints: atomic writes, `last` / `best` / keep-last-K policies, and checked reading.

A checkpoint is a torch .pt dict (docs/training.md, "Checkpoints"): "format": "nano-checkpoint", "version": 1,
"model", "model_config", "train_config", "step", "tokenizer_json", "tokenizer_hash", plus the optimizer,
scaler, loader positions and RNG states needed to resume exactly.
"""

from __future__ import annotations

import os
import pickle
import random
import re
import shutil
import zipfile
from pathlib import Path

import numpy as np
import torch

from nano.lora import atomic_torch_save

FORMAT = "nano-checkpoint"
VERSION = 1
_NUMBERED = re.compile(r"^ckpt_(\d+)\.pt$")


def rng_state() -> dict:
    # NumPy's legacy state holds an ndarray; it is stored as plain ints so the file loads with weights_only.
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    numpy_state = (kind, [int(k) for k in keys], int(pos), int(has_gauss), float(cached))
    state = {"python": random.getstate(), "numpy": numpy_state, "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    kind, keys, *rest = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), *rest))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def load_checkpoint(path: str | Path, map_location="cpu") -> dict:
    """Read and check a checkpoint file; a clear error if it is not one.

    The file is unpickled with ``weights_only=True``: only tensors and plain containers and numbers are
    built, so a file crafted to run code (a pickle calling ``os.system``) is refused, never executed.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint not found")
    ckpt = safe_torch_load(path, map_location, what="checkpoint")
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        got = ckpt.get("format") if isinstance(ckpt, dict) else type(ckpt).__name__
        raise ValueError(f"{path}: not a Nano checkpoint (format {got!r}, expected {FORMAT!r})")
    if ckpt.get("version") != VERSION:
        raise ValueError(f"{path}: unsupported checkpoint version {ckpt.get('version')!r}")
    for key in ("model", "model_config", "step"):
        if key not in ckpt:
            raise ValueError(f"{path}: checkpoint lacks {key!r}")
    model = ckpt["model"]
    if not isinstance(model, dict) or not all(isinstance(k, str) and torch.is_tensor(v) for k, v in model.items()):
        raise ValueError(f"{path}: the checkpoint's 'model' is not a mapping of names to tensors")
    if not isinstance(ckpt["model_config"], dict):
        raise ValueError(f"{path}: the checkpoint's 'model_config' is not a mapping")
    if not isinstance(ckpt["step"], int) or ckpt["step"] < 0:
        raise ValueError(f"{path}: the checkpoint's 'step' is not a non-negative integer")
    return ckpt


_UNSAFE_GLOBAL = re.compile(r"(?:Unsupported global|unsupported GLOBAL|global):? ?(?:GLOBAL )?([\w.]+)")


def safe_torch_load(path: Path, map_location="cpu", what: str = "file"):
    """``torch.load(weights_only=True)`` with one clear ValueError for a foreign, damaged or unsafe file.

    Checkpoints written before the NumPy RNG state was stored as plain ints hold one uint32 ndarray; that
    array type (numeric dtypes only, no objects) is allowed too, so those files still open.
    """
    _verify_archive(path, what)
    try:
        with torch.serialization.safe_globals(_numpy_array_globals()):
            return torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: {what} not found") from None
    except pickle.UnpicklingError as e:
        text = str(e)
        if "Weights only load failed" in text or "weights_only" in text:
            found = _UNSAFE_GLOBAL.search(text)
            name = f" ({found.group(1)})" if found else ""
            raise ValueError(
                f"{path}: refused: the {what} holds something other than tensors and plain values{name}; "
                "Nano loads only tensors and plain data and never runs code from a file"
            ) from None
        raise ValueError(f"{path}: not a readable {what} ({' '.join(text.split())[:200]})") from None
    except Exception as e:  # a truncated or foreign file: torch raises RuntimeError, EOFError, zip errors...
        raise ValueError(f"{path}: not a readable {what} ({' '.join(str(e).split())[:200]})") from None


def _verify_archive(path: Path, what: str) -> None:
    """Check every member's CRC-32: torch.load does not, so a flipped bit in a tensor would load silently.

    torch.save writes a zip archive with a CRC-32 per record; reading the file once more to verify them
    costs far less than training on, or exporting, silently damaged weights.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: {what} not found") from None
    except Exception as e:  # not a zip, damaged directory or headers: zipfile raises several types
        raise ValueError(f"{path}: not a readable {what} ({' '.join(str(e).split())[:200] or type(e).__name__})"
                         ) from None
    if bad is not None:
        raise ValueError(f"{path}: the {what} is damaged: the checksum of its record {bad!r} does not match")


def _numpy_array_globals() -> list:
    try:
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # NumPy 1.x
        from numpy.core.multiarray import _reconstruct
    return [_reconstruct, np.ndarray, np.dtype, type(np.dtype(np.uint32))]


class CheckpointWriter:
    """Writes `ckpt_<step>.pt` (keeping the newest keep_last), `last.pt` and `best.pt` in out_dir."""

    def __init__(self, out_dir: str | Path, keep_last: int = 2):
        self.out_dir = Path(out_dir)
        self.keep_last = max(0, int(keep_last))

    @staticmethod
    def writes(name: str) -> bool:
        """Whether a file of this name in out_dir may be overwritten or pruned by a writer."""
        return name in ("last.pt", "best.pt", "lora.pt") or bool(_NUMBERED.match(name))

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
