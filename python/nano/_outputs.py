"""Where Nano writes: what it may replace, how its temporary files are named, and cleaning up after a kill.

* An output is replaced only when Nano wrote it and it holds nothing else, and never when it holds an input
  of the same run (:func:`check_replaceable_dir`, :func:`check_replaceable_file`).
* Temporary names carry the writer's process id: ``.NAME.tmp-PID-RANDOM`` (and the Rust writers'
  ``.NAME.tmpPID``, ``.NAME.tmp-PID-N-NANOS``, ``.nano-shuffle-PID-N-NANOS``).
* :func:`clean_stale_temps` removes the ones a killed run left: only when their process is gone from this
  machine *and* nothing in them changed for :data:`STALE_AFTER_S` seconds. A live writer on this machine
  is never touched (its pid is alive), nor one on another machine sharing the directory (it keeps writing,
  so its files stay fresh). A pid reused by an unrelated process only delays the clean-up.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import sys
import time
from collections.abc import Iterable
from pathlib import Path

STALE_AFTER_S = 600.0

_SHUFFLE_WORK = re.compile(r"^\.nano-shuffle-(\d+)-\d+-[0-9a-f]+$")


def temp_name(name: str) -> str:
    """``.NAME.tmp-PID-RANDOM``: hidden, beside the target, and traceable to its writer."""
    return f".{name}.tmp-{os.getpid()}-{secrets.token_hex(4)}"


def _owner_pid(entry: str, name: str) -> int | None:
    """The writer's pid when ``entry`` is a temporary name for target ``name`` or a shuffle work directory."""
    m = _SHUFFLE_WORK.match(entry)
    if m:
        return int(m.group(1))
    prefix = f".{name}.tmp"
    if not entry.startswith(prefix):
        return None
    rest = entry[len(prefix):]
    m = re.fullmatch(r"-?(\d+)(?:-[0-9A-Za-z_-]+)?(?:\.old)?", rest)
    return int(m.group(1)) if m else None


def pid_alive(pid: int) -> bool:
    if pid <= 0:
        return True  # not a real owner: treat as alive, i.e. never delete on that basis
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True  # exists (another user's), or not a pid we can reason about
    return True


def _newest_mtime(path: Path) -> float:
    """Latest modification time of path and, for a directory, everything in it."""
    newest = path.lstat().st_mtime
    if path.is_dir() and not path.is_symlink():
        for root, dirs, files in os.walk(path):
            for n in dirs + files:
                try:
                    newest = max(newest, os.lstat(os.path.join(root, n)).st_mtime)
                except OSError:
                    pass
    return newest


def clean_stale_temps(directory: str | os.PathLike, name: str, *, now: float | None = None) -> list[Path]:
    """Remove temporaries for target ``name`` (and shuffle work directories) that killed Nano runs left in
    ``directory``; returns what was removed.

    A leftover ``.NAME.tmp-PID-X.old`` is a prepared dataset moved aside just before a kill: when NAME is
    missing it is put back, not deleted.
    """
    directory = Path(directory)
    now = time.time() if now is None else now
    removed = []
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return removed
    for entry in entries:
        pid = _owner_pid(entry.name, name)
        if pid is None or pid == os.getpid() or pid_alive(pid):
            continue
        path = Path(entry.path)
        try:
            if now - _newest_mtime(path) < STALE_AFTER_S:
                continue
            if entry.name.endswith(".old") and entry.is_dir(follow_symlinks=False):
                target = directory / name
                if not target.exists():
                    os.rename(path, target)
                    print(f"restored {target} (moved aside by a run that was killed)", file=sys.stderr)
                    continue
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(path)
            else:
                path.unlink()
            removed.append(path)
        except OSError:
            continue  # gone meanwhile, or not ours to remove: leave it
    return removed


def _inside(path: Path, directory: Path) -> bool:
    try:
        path.resolve().relative_to(directory.resolve())
    except ValueError:
        return False
    return True


def check_not_input(out: Path, inputs: Iterable[str | os.PathLike]) -> None:
    """Refuse an output that is, or (for a directory) contains, an input of the same run."""
    for p in inputs:
        p = Path(p)
        if p.exists() and out.exists() and (os.path.samefile(p, out) or out.is_dir() and _inside(p, out)):
            raise FileExistsError(f"{out}: refusing to replace it: it holds {p}, an input of this run")


def check_replaceable_dir(out: Path, allowed: set[str], is_ours, inputs: Iterable = (), what: str = "output") -> None:
    """``out`` may be replaced wholesale: it is missing, empty, or Nano's own (``is_ours(out)``) holding only
    the ``allowed`` regular files, and none of ``inputs``. Otherwise FileExistsError naming the reason."""
    if not out.exists() and not out.is_symlink():
        return
    if not out.is_dir():
        raise FileExistsError(f"{out}: exists and is not a directory")
    check_not_input(out, inputs)
    entries = list(out.iterdir())
    if not entries:
        return
    foreign = sorted(p.name for p in entries if p.name not in allowed or p.is_symlink() or not p.is_file())
    if foreign:
        shown = ", ".join(foreign[:5]) + (", ..." if len(foreign) > 5 else "")
        raise FileExistsError(f"{out}: refusing to replace it: it holds files Nano did not write ({shown}); "
                              f"choose another {what} directory or remove them")
    if not is_ours(out):
        raise FileExistsError(f"{out}: refusing to replace it: it is not a {what} Nano wrote")


def check_replaceable_file(out: Path, is_ours, inputs: Iterable = (), what: str = "output") -> None:
    """``out`` may be overwritten: missing, or a regular file Nano wrote (``is_ours(out)``) that is no input."""
    if not out.exists() and not out.is_symlink():
        return
    if out.is_dir():
        raise FileExistsError(f"{out}: is a directory")
    check_not_input(out, inputs)
    if not is_ours(out):
        raise FileExistsError(f"{out}: refusing to overwrite it: it is not a {what} Nano wrote; "
                              "choose another name or remove it")
