"""Python face of the Rust out-of-core shuffler (crate nano-shuffle, bound in nano._native)."""

from __future__ import annotations

import os
import re
from pathlib import Path

from nano._outputs import clean_stale_temps

_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def parse_size(size) -> int:
    """'256M' / '1.5G' / '4096' / 4096 → bytes (binary units; a trailing 'B' or 'iB' is allowed)."""
    if isinstance(size, int):
        value = size
    else:
        m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?\s*", str(size), flags=re.IGNORECASE)
        if not m:
            raise ValueError(f"cannot read a memory size from {size!r} (examples: 256M, 1G, 65536)")
        value = int(float(m.group(1)) * _UNITS[m.group(2).upper()])
    if value <= 0:
        raise ValueError(f"memory size must be positive, got {size!r}")
    return value


def shuffle(
    inputs,
    output,
    memory="256M",
    seed: int = 0,
    tmp_dir=None,
    threads: int | None = None,
    *,
    record_size: int | None = None,
    progress: bool | None = None,
    _pile_bytes: int | None = None,
) -> dict:
    """Write a uniformly random permutation of the input records to ``output``.

    Records are lines (text, JSONL) or, with ``record_size``, fixed-size binary records. Peak memory stays
    near ``memory``; temporary piles go to ``tmp_dir`` (default: the output's directory) and are removed
    on success and on error; the output appears only when complete. Returns a summary dict.
    """
    from nano import _native

    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    out = Path(output)
    # what a killed shuffle left here: its output temp beside OUT, its pile directory in tmp_dir
    clean_stale_temps(out.parent, out.name)
    if tmp_dir is not None:
        clean_stale_temps(tmp_dir, out.name)
    if progress is None:
        import sys

        progress = sys.stderr.isatty()
    return _native.shuffle_files(
        [os.fspath(p) for p in inputs],
        os.fspath(output),
        parse_size(memory),
        int(seed),
        None if tmp_dir is None else os.fspath(tmp_dir),
        threads,
        record_size,
        bool(progress),
        _pile_bytes,
    )
