"""Report plumbing shared by the commands: atomic JSON files and the progress bar."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable
from pathlib import Path

from nano._outputs import check_replaceable_file, clean_stale_temps, temp_name

__all__ = ["check_report_path", "write_json", "progress"]


def _is_report(path: Path) -> bool:
    """A JSON object with the ``settings`` every nano.eval report carries."""
    try:
        with open(path, "rb") as f:
            if f.read(1) != b"{":  # not JSON: decided without reading a model file's gigabytes
                return False
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and isinstance(data.get("settings"), dict)


def check_report_path(path: str | os.PathLike, inputs: Iterable = ()) -> Path:
    """Refuse (before any work) a report path that is a directory, an input of the run, or a file that is
    not an earlier nano.eval report (see nano._outputs); clear temporaries a killed run left there."""
    path = Path(path)
    check_replaceable_file(path, _is_report, inputs, what="nano.eval report")
    if path.parent.is_dir():
        clean_stale_temps(path.parent, path.name)
    return path


def _finite(value):
    """JSON has no NaN or infinity: such floats are written as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def write_json(path: str | os.PathLike, report: dict) -> Path:
    """Write ``report`` to ``path`` through a temporary file in the same folder and a rename, so the file
    is either the old one or the complete new one, never half written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(_finite(report), ensure_ascii=False, indent=2, allow_nan=False) + "\n"
    tmp = path.with_name(temp_name(path.name))
    try:
        with open(tmp, "x", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def progress(total: int, desc: str, enabled: bool = True, unit: str = "tok"):
    """A tqdm bar on stderr (a no-op object when disabled)."""
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit, unit_scale=True, disable=not enabled, dynamic_ncols=True)
