"""The prepared-dataset format, one owner for both sides: the writer (``nano.data.writer``) and the
reader (``nano.data.loader``) take its name, version, splits and dtypes from here (docs/data.md).

Layout: meta.json, tokenizer.json, <split>.tokens (raw little-endian ids) and, for SFT, <split>.mask
(uint8, 1 = trained target token).
"""

from __future__ import annotations

import json
from pathlib import Path

FORMAT = "nano-tokens"
VERSION = 1
SPLITS = ("train", "val")
DTYPES = ("uint16", "uint32")
KINDS = ("pretrain", "sft")
DATASET_FILES = frozenset(
    {"meta.json", "tokenizer.json", *(f"{s}.{ext}" for s in SPLITS for ext in ("tokens", "mask"))}
)


def token_dtype(vocab_size: int) -> str:
    """The narrowest dtype of :data:`DTYPES` that holds every id of a vocabulary of ``vocab_size``."""
    return "uint16" if vocab_size <= 1 << 16 else "uint32"


def read_meta(data_dir: str | Path) -> dict:
    """Read and check a prepared dataset's meta.json."""
    path = Path(data_dir) / "meta.json"
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: not a prepared dataset (meta.json missing)") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: invalid JSON ({e})") from None
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path}: format is {meta.get('format')!r}, expected {FORMAT!r}")
    if meta.get("version") != VERSION:
        raise ValueError(f"{path}: unsupported version {meta.get('version')!r} (this reader knows {VERSION})")
    if meta.get("dtype") not in DTYPES:
        raise ValueError(f"{path}: unsupported dtype {meta.get('dtype')!r}")
    if meta.get("kind") not in KINDS:
        raise ValueError(f"{path}: unknown kind {meta.get('kind')!r}")
    return meta
