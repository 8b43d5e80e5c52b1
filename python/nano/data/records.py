"""Reading input records (lines) in large chunks, with file/line/byte positions for error messages.

Bad records are skipped and counted by default; with ``strict`` the first one raises ``DataError``.
"""

from __future__ import annotations

import os
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

CHUNK_BYTES = 8 << 20
MAX_REPORTED = 10  # bad records echoed to stderr; the rest are only counted


class DataError(ValueError):
    """A bad input record (with file and line) or an unusable corpus."""


@dataclass
class Batch:
    """Consecutive lines of one file; ``texts[i]`` is None where line i was skipped (bad UTF-8)."""

    path: str
    first_line: int  # 1-based line number of texts[0]
    first_offset: int  # byte offset of texts[0]
    data: bytes  # the whole lines, as read
    texts: list[str | None]
    bad: dict = field(default_factory=dict)  # line index -> (byte in line, reason) of undecodable lines
    _starts: list[int] | None = field(default=None, repr=False)  # byte offset of each line, built once

    def where(self, i: int) -> tuple[str, int, int]:
        """(file, line, byte offset) of line i, for messages.

        The line offsets are found once per batch, on the first call: skipping any number of lines costs one
        pass over the batch, not one per skipped line.
        """
        if self._starts is None:
            self._starts = line_starts(self.data)
        return self.path, self.first_line + i, self.first_offset + self._starts[i]

    def skip_bad(self, i: int, problems: Problems) -> None:
        """Report undecodable line i (texts[i] is None), in line order with the other problems."""
        path, line, offset = self.where(i)
        at, reason = self.bad[i]
        problems.skip(path, line, offset + at, "invalid UTF-8", reason)


def line_starts(data: bytes) -> list[int]:
    """Byte offset of every line's first byte in ``data`` (one vectorised scan)."""
    import numpy as np  # here, not at import: ``python -m nano.data shuffle`` does not need NumPy

    ends = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == ord("\n"))
    return [0, *(ends + 1).tolist()]


@dataclass
class Problems:
    """Skipped records, by reason; fatal when strict."""

    strict: bool = False
    counts: Counter = field(default_factory=Counter)
    reported: int = 0

    def skip(self, path: str, line: int, offset: int, reason: str, detail: str = "") -> None:
        message = f"{path}:{line} (byte {offset}): {reason}{': ' + detail if detail else ''}"
        if self.strict:
            raise DataError(message)
        self.counts[reason] += 1
        if self.reported < MAX_REPORTED:
            self.reported += 1
            print(f"skipped {message}", file=sys.stderr)

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def check_inputs(inputs) -> list[Path]:
    """Normalise the input list and fail early on missing files."""
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    paths = [Path(p) for p in inputs]
    if not paths:
        raise DataError("no input files given")
    for p in paths:
        if not p.is_file():
            raise FileNotFoundError(f"{p}: input file not found")
    return paths


def count_lines(paths: list[Path]) -> int:
    """Number of lines over all files (a last line without newline counts); fast byte scan."""
    total = 0
    for p in paths:
        last = b"\n"
        with open(p, "rb") as f:
            while chunk := f.read(CHUNK_BYTES):
                total += chunk.count(b"\n")
                last = chunk[-1:]
        total += last != b"\n"
    return total


def iter_batches(paths: list[Path], on_bytes=None) -> Iterator[tuple[int, Batch]]:
    """Yield (index of the batch's first line over all files, batch), one batch per chunk of whole lines.

    Undecodable lines stay in the batch as None (see ``Batch.skip_bad``) so line indices stay aligned
    with ``count_lines``.
    """
    index = 0
    for p in paths:
        line_no, offset, carry = 1, 0, b""
        with open(p, "rb") as f:
            while True:
                chunk = f.read(CHUNK_BYTES)
                data = carry + chunk
                if chunk:
                    cut = data.rfind(b"\n") + 1
                    if cut == 0:  # no newline yet: a line longer than the chunk
                        carry = data
                        continue
                    data, carry = data[:cut], data[cut:]
                if data:
                    batch = _decode(str(p), line_no, offset, data)
                    yield index, batch
                    index += len(batch.texts)
                    line_no += len(batch.texts)
                    offset += len(data)
                    if on_bytes is not None:
                        on_bytes(len(data))
                if not chunk:
                    break


def _decode(path: str, line_no: int, offset: int, data: bytes) -> Batch:
    try:
        texts: list[str | None] = data.decode("utf-8").split("\n")
        if data.endswith(b"\n"):
            texts.pop()
        return Batch(path, line_no, offset, data, _strip_cr(data, texts))
    except UnicodeDecodeError:
        pass
    raw = data.split(b"\n")
    if data.endswith(b"\n"):
        raw.pop()
    texts = []
    bad = {}
    for line in raw:
        try:
            texts.append(line.decode("utf-8"))
        except UnicodeDecodeError as e:
            bad[len(texts)] = (e.start, str(e.reason))
            texts.append(None)
    return Batch(path, line_no, offset, data, _strip_cr(data, texts), bad)


def _strip_cr(data: bytes, texts: list[str | None]) -> list[str | None]:
    if data.find(b"\r") >= 0:
        return [t.removesuffix("\r") if t is not None else None for t in texts]
    return texts
