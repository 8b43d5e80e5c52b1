"""BlockLoader: serves training blocks from a prepared token directory (see docs/data.md).

The token and mask files are memory-mapped; a batch gathers only the rows it needs with one fancy-index
read, so memory does not grow with the corpus and nothing is decoded per sample in Python.

Two modes:
* ``shuffle="random"`` — block starts drawn with a seeded numpy Generator (per rank), any offset for
  pretraining data, sample starts for SFT data. The Generator state is part of ``state_dict()``.
* ``shuffle="epoch"`` — a seeded permutation of non-overlapping blocks per epoch; rank r of world w takes
  every w-th block of it, so ranks never overlap. ``(epoch, position)`` is part of ``state_dict()``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nano.data.format import read_meta

MODES = ("random", "epoch")


def _memmap(path: Path, dtype: str, expected: int) -> np.ndarray:
    if not path.exists():
        raise FileNotFoundError(f"{path}: missing split file")
    itemsize = np.dtype(dtype).itemsize
    size = path.stat().st_size
    if size != expected * itemsize:
        raise ValueError(f"{path}: {size} bytes, meta.json promises {expected} x {itemsize} bytes")
    if expected == 0:
        return np.zeros(0, dtype=dtype)
    return np.memmap(path, dtype=np.dtype(dtype).newbyteorder("<"), mode="r")


class BlockLoader:
    """Batches ``(x, y, mask)`` of shape [batch_size, block_size] from one split of a prepared dataset."""

    def __init__(
        self,
        data_dir: str | Path,
        split: str,
        block_size: int,
        batch_size: int,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        shuffle: str = "random",
    ):
        if shuffle not in MODES:
            raise ValueError(f"shuffle must be one of {MODES}, got {shuffle!r}")
        if block_size < 1 or batch_size < 1:
            raise ValueError(f"block_size and batch_size must be >= 1 (got {block_size}, {batch_size})")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"need 0 <= rank < world_size (got rank={rank}, world_size={world_size})")
        self.data_dir = Path(data_dir)
        self.meta = read_meta(self.data_dir)
        splits = self.meta.get("splits", {})
        if split not in splits:
            raise ValueError(f"{self.data_dir}: no split {split!r} (have {sorted(splits)})")
        self.split, self.block_size, self.batch_size = split, block_size, batch_size
        self.seed, self.rank, self.world_size, self.mode = seed, rank, world_size, shuffle

        n_tokens = int(splits[split]["tokens"])
        self._tokens = _memmap(self.data_dir / f"{split}.tokens", self.meta["dtype"], n_tokens)
        self._mask = None
        if self.meta["kind"] == "sft":
            self._mask = _memmap(self.data_dir / f"{split}.mask", "uint8", n_tokens)
            sample_len = int(self.meta["block_size"]) + 1
            if block_size + 1 > sample_len:
                raise ValueError(
                    f"block_size {block_size} exceeds the SFT samples' block_size {sample_len - 1}; "
                    "prepare the data again with a larger block size"
                )
            # SFT blocks start at sample boundaries only: a sample is one training sequence.
            self._stride, self._n_starts = sample_len, n_tokens // sample_len
        else:
            self._stride, self._n_starts = 1, max(0, n_tokens - block_size)
        if self._n_starts < 1:
            raise ValueError(
                f"{self.data_dir}/{split}: {n_tokens} tokens are too few for one block of {block_size}"
            )
        self._offsets = np.arange(block_size + 1, dtype=np.int64)
        self._rng = np.random.default_rng([seed, rank])
        self._epoch, self._position = 0, 0
        self._order: np.ndarray | None = None
        if shuffle == "epoch":
            # Non-overlapping blocks: pretraining blocks advance by block_size, SFT blocks are samples.
            self._n_blocks = self._n_starts if self._stride > 1 else (n_tokens - 1) // block_size
            self._per_rank = self._n_blocks // world_size
            if self._per_rank < 1:
                raise ValueError(
                    f"{self.data_dir}/{split}: {self._n_blocks} blocks cannot be shared by {world_size} ranks"
                )

    @property
    def tokenizer_hash(self) -> str:
        return self.meta["tokenizer_hash"]

    def __len__(self) -> int:
        """Blocks per epoch for this rank (epoch mode) or distinct start positions (random mode)."""
        return self._per_rank if self.mode == "epoch" else self._n_starts

    def _epoch_order(self) -> np.ndarray:
        if self._order is None:
            perm = np.random.default_rng([self.seed, self._epoch]).permutation(self._n_blocks)
            # Every rank gets the same count (DDP steps stay in lockstep); the tail is dropped.
            self._order = perm[self.rank : self._per_rank * self.world_size : self.world_size]
        return self._order

    def _next_starts(self) -> np.ndarray:
        if self.mode == "random":
            return self._rng.integers(0, self._n_starts, size=self.batch_size) * self._stride
        blocks = np.empty(self.batch_size, dtype=np.int64)
        filled = 0
        while filled < self.batch_size:
            order = self._epoch_order()
            take = min(self.batch_size - filled, len(order) - self._position)
            blocks[filled : filled + take] = order[self._position : self._position + take]
            filled += take
            self._position += take
            if self._position == len(order):
                self._epoch, self._position, self._order = self._epoch + 1, 0, None
        unit = self._stride if self._stride > 1 else self.block_size
        return blocks * unit

    def next_batch_numpy(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Like next_batch, as numpy arrays (int64, int64, float32)."""
        index = self._next_starts()[:, None] + self._offsets
        rows = self._tokens[index].astype(np.int64)
        if self._mask is None:
            mask = np.ones((self.batch_size, self.block_size), dtype=np.float32)
        else:
            mask = self._mask[index[:, 1:]].astype(np.float32)
        return rows[:, :-1], rows[:, 1:], mask

    def next_batch(self):
        """x, y: int64 [B, T]; mask: float32 [B, T], the loss weight of predicting each y."""
        import torch

        x, y, mask = self.next_batch_numpy()
        return (
            torch.from_numpy(np.ascontiguousarray(x)),
            torch.from_numpy(np.ascontiguousarray(y)),
            (torch.from_numpy(mask)),
        )

    def state_dict(self) -> dict:
        state = {
            "mode": self.mode,
            "split": self.split,
            "seed": self.seed,
            "rank": self.rank,
            "world_size": self.world_size,
            "block_size": self.block_size,
            "tokenizer_hash": self.tokenizer_hash,
        }
        if self.mode == "random":
            state["rng"] = self._rng.bit_generator.state
        else:
            state["epoch"], state["position"] = self._epoch, self._position
        return state

    def load_state_dict(self, state: dict) -> None:
        for key in ("mode", "seed", "rank", "world_size", "block_size", "tokenizer_hash"):
            if key in state and state[key] != getattr(self, key):
                raise ValueError(
                    f"loader state was saved with {key}={state[key]!r}, this loader has {getattr(self, key)!r}"
                )
        if self.mode == "random":
            self._rng.bit_generator.state = state["rng"]
        else:
            epoch, position = int(state["epoch"]), int(state["position"])
            if not 0 <= position < self._per_rank:
                raise ValueError(
                    f"loader state position {position} is outside this epoch (0..{self._per_rank})"
                )
            self._epoch, self._position, self._order = epoch, position, None

    def __repr__(self) -> str:
        return (
            f"BlockLoader({str(self.data_dir)!r}, split={self.split!r}, kind={self.meta['kind']!r}, "
            f"block_size={self.block_size}, batch_size={self.batch_size}, mode={self.mode!r}, "
            f"rank={self.rank}/{self.world_size})"
        )
