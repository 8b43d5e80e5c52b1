"""Atomic file writes: the content goes to a temporary file beside the target, is flushed to disk, and is
renamed over the target. A reader sees the old file or the new one, never half of one; a failure or an
interrupt removes the temporary and leaves the target as it was.

Temporary names and the clean-up of ones a killed run left are :mod:`nano._outputs`'s
(``.NAME.tmp-PID-RANDOM``). What a target may replace is checked by the caller, before writing.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from nano._outputs import clean_stale_temps, temp_name

__all__ = ["atomic_write", "atomic_write_text", "atomic_torch_save", "atomic_link_or_copy"]


def _fsync_dir(directory: Path) -> None:
    """Make a rename in ``directory`` durable; a no-op where directories cannot be opened (Windows)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems refuse fsync on a directory; the rename itself is still atomic
    finally:
        os.close(fd)


def _commit(tmp: Path, path: Path) -> None:
    os.replace(tmp, path)
    _fsync_dir(path.parent)


@contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb", encoding: str | None = None) -> Iterator[IO[Any]]:
    """``with atomic_write(p) as f: f.write(...)``: ``p`` is replaced only when the block completes.

    ``mode`` is ``"wb"`` or ``"w"`` (text, ``encoding`` defaults to UTF-8). The temporary is created
    exclusively (``x``), so two writers never share one.
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_write: mode must be 'wb' or 'w', got {mode!r}")
    path = Path(path)
    clean_stale_temps(path.parent, path.name)
    tmp = path.parent / temp_name(path.name)
    if mode == "w" and encoding is None:
        encoding = "utf-8"
    try:
        with open(tmp, mode.replace("w", "x"), encoding=encoding) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        _commit(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Replace ``path`` with ``text`` (UTF-8) atomically."""
    with atomic_write(path, "w") as f:
        f.write(text)
    return Path(path)


def atomic_torch_save(obj, path: str | os.PathLike) -> Path:
    """``torch.save(obj)`` to ``path`` atomically, creating its directory."""
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as f:
        torch.save(obj, f)
    return path


def atomic_link_or_copy(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """Point ``dst`` at ``src``'s content atomically: a hard link where the filesystem allows, else a copy."""
    src, dst = Path(src), Path(dst)
    clean_stale_temps(dst.parent, dst.name)
    tmp = dst.parent / temp_name(dst.name)
    try:
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copyfile(src, tmp)
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        _commit(tmp, dst)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return dst
