"""Helpers shared by the pretrain and SFT preparation: tokenizer lookup, validation split, progress."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

from nano.data.records import DataError


def load_tokenizer(tokenizer):
    """Accept a nano.tokenizer.Tokenizer or the path of a vocabulary JSON file."""
    if isinstance(tokenizer, (str, os.PathLike)):
        from nano.tokenizer import Tokenizer

        return Tokenizer.from_file(str(tokenizer))
    return tokenizer


def input_paths(paths: list[Path], tokenizer) -> list[Path]:
    """Every file a preparation run reads (its output must not replace any of them)."""
    extra = [Path(tokenizer)] if isinstance(tokenizer, (str, os.PathLike)) else []
    return [*paths, *extra]


def special_id(tokenizer, name: str) -> int:
    token_id = tokenizer.token_to_id(name)
    if token_id is None:
        raise DataError(f"the vocabulary has no special token {name}")
    return int(token_id)


def validation_lines(n_lines: int, val_fraction: float, seed: int) -> np.ndarray:
    """Boolean mask over line indices: True = validation. Exact count, seeded, disjoint by construction.

    At least one validation record when the fraction is positive and there are two or more lines.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    n_val = round(val_fraction * n_lines)
    if val_fraction > 0 and n_lines >= 2:
        n_val = min(max(n_val, 1), n_lines - 1)
    is_val = np.zeros(n_lines, dtype=bool)
    is_val[np.random.default_rng(seed).choice(n_lines, size=n_val, replace=False)] = True
    return is_val


def progress_bar(total_bytes: int, desc: str, enabled: bool | None):
    from tqdm import tqdm

    if enabled is None:
        enabled = sys.stderr.isatty()
    return tqdm(total=total_bytes, desc=desc, unit="B", unit_scale=True, disable=not enabled, leave=False)


def total_size(paths: list[Path]) -> int:
    return sum(p.stat().st_size for p in paths)
