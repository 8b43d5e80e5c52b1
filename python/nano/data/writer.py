"""Writes a prepared dataset directory atomically (built under a temporary name, renamed at the end).

The layout and its constants belong to :mod:`nano.data.format`, which the reader uses too.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np

from nano._outputs import check_replaceable_dir, clean_stale_temps, temp_name
from nano.data.format import DATASET_FILES, FORMAT, SPLITS, VERSION, token_dtype

__all__ = ["DatasetWriter", "check_output_dir", "token_dtype"]


def _is_prepared_dataset(path: Path) -> bool:
    try:
        meta = json.loads((path / "meta.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(meta, dict) and meta.get("format") == FORMAT


def check_output_dir(out_dir: Path, inputs=()) -> None:
    """Refuse to replace anything but an empty directory or a dataset Nano prepared that holds only its own
    files and none of this run's inputs (FileExistsError naming the reason; nothing is touched)."""
    check_replaceable_dir(Path(out_dir), DATASET_FILES, _is_prepared_dataset, inputs, what="prepared dataset")


class DatasetWriter:
    """Appends token (and mask) arrays per split; ``commit`` writes meta.json and renames into place."""

    def __init__(self, out_dir, tokenizer, kind: str, with_mask: bool, inputs=()):
        self.out_dir = Path(out_dir)
        self.inputs = list(inputs)
        check_output_dir(self.out_dir, self.inputs)
        self.out_dir.parent.mkdir(parents=True, exist_ok=True)
        clean_stale_temps(self.out_dir.parent, self.out_dir.name)
        self.tmp = self.out_dir.parent / temp_name(self.out_dir.name)
        self.tmp.mkdir(mode=0o700)
        self.kind, self.tokenizer = kind, tokenizer
        self.dtype = np.dtype(token_dtype(tokenizer.vocab_size)).newbyteorder("<")
        self.counts = {s: 0 for s in SPLITS}
        self._files = {s: open(self.tmp / f"{s}.tokens", "wb") for s in SPLITS}
        self._masks = {s: open(self.tmp / f"{s}.mask", "wb") for s in SPLITS} if with_mask else None

    def append(self, split: str, tokens: np.ndarray, mask: np.ndarray | None = None) -> None:
        if len(tokens) == 0:
            return
        self._files[split].write(memoryview(np.ascontiguousarray(tokens, dtype=self.dtype)).cast("B"))
        if self._masks is not None:
            assert mask is not None and len(mask) == len(tokens)
            self._masks[split].write(memoryview(np.ascontiguousarray(mask, dtype=np.uint8)).cast("B"))
        self.counts[split] += len(tokens)

    def _close(self) -> None:
        for f in [*self._files.values(), *(self._masks or {}).values()]:
            f.close()

    def commit(self, split_items: dict, block_size: int | None, extra: dict) -> dict:
        """Finish the files, write meta.json and tokenizer.json, then move the directory into place."""
        self._close()
        meta = {
            "format": FORMAT,
            "version": VERSION,
            "kind": self.kind,
            "dtype": self.dtype.name,
            "vocab_size": self.tokenizer.vocab_size,
            "tokenizer_hash": self.tokenizer.hash,
            "block_size": block_size,
            "splits": {s: {"tokens": self.counts[s], **split_items[s]} for s in SPLITS},
            **extra,
        }
        (self.tmp / "tokenizer.json").write_text(self.tokenizer.to_json(), encoding="utf-8")
        (self.tmp / "meta.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        for s in SPLITS:
            for ext in ("tokens", "mask"):
                path = self.tmp / f"{s}.{ext}"
                if path.exists():
                    with open(path, "rb") as f:
                        os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(self.tmp, 0o777 & ~umask)  # private while written; the dataset is an ordinary directory
        check_output_dir(self.out_dir, self.inputs)  # again: the directory may have changed meanwhile
        old = None
        if self.out_dir.exists():
            old = self.out_dir.parent / f"{self.tmp.name}.old"  # restored by clean_stale_temps after a kill
            os.rename(self.out_dir, old)
        os.rename(self.tmp, self.out_dir)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        return meta

    def abort(self) -> None:
        self._close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None:
            self.abort()
        return False
