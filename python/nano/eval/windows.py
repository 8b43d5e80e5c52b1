"""Sliding windows over a token sequence for scoring every token once.

A sequence ``seq`` of length L (the document's tokens after one start token) has targets ``seq[1:]``.
Window ``w`` feeds ``seq[w.start:w.end]`` to the model; its rows predict ``seq[w.start + 1:w.end + 1]``, and
the targets it scores are ``seq[w.first:w.end + 1]`` (the rows from ``w.first - w.start - 1`` on).
The first window scores as many targets as fit in ``context`` tokens; every later one scores the next
``stride`` targets, seeing the ``context - stride`` tokens before them as well (stride = context gives
disjoint windows where the first target of each has one token of context). Every target is scored exactly
once and always sees at least one token before it.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Window", "sliding_windows"]


@dataclass(frozen=True)
class Window:
    start: int  # first input position
    end: int  # one past the last input position (the last target is seq[end])
    first: int  # first scored target position (start < first <= end)

    @property
    def skip(self) -> int:
        """Rows of this window's output before the first scored one."""
        return self.first - self.start - 1

    @property
    def scored(self) -> int:
        return self.end + 1 - self.first


def sliding_windows(length: int, context: int, stride: int | None = None) -> list[Window]:
    """The windows scoring targets 1..length-1 of a sequence of ``length`` tokens (see the module doc).

    ``context``: tokens fed per window (at most the model's block size); ``stride``: targets scored per
    window after the first (default: half the context, at least 1).
    """
    if context < 1:
        raise ValueError(f"context must be at least 1 token, got {context}")
    if stride is None:
        stride = max(1, context // 2)
    if not 1 <= stride <= context:
        raise ValueError(f"stride must be between 1 and the context ({context}), got {stride}")
    if length < 2:
        return []
    windows = []
    first = 1
    last = min(context, length - 1)  # last target scored by the first window
    while True:
        start = max(0, last - context)
        windows.append(Window(start=start, end=last, first=first))
        if last == length - 1:
            return windows
        first, last = last + 1, min(last + stride, length - 1)
