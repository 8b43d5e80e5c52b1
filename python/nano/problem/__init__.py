"""Toy problems beyond language: ``python -m nano.problem TASK [options]`` (see docs/problems.md)."""

from nano.problem.encoding import ProblemLoader, Vocab, predict
from nano.problem.runner import PRESETS, solve
from nano.problem.tasks import TASKS, draw, is_heldout, make_task

__all__ = ["PRESETS", "TASKS", "ProblemLoader", "Vocab", "draw", "is_heldout", "make_task", "predict", "solve"]
