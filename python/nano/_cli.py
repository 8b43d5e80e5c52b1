"""Shared command-line plumbing: bounded argument types, and the one place where an error becomes a message.

Every ``python -m nano.*`` entry point wraps its body in :func:`main_errors`: an expected error (bad input,
a missing or unreadable file, a value out of range) is printed as one line ``PROG: error: ...`` with a
non-zero exit status, never as a traceback. Anything else is a bug in Nano and keeps its traceback.
"""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Callable

#: Errors that mean "the input or the environment is wrong", not "Nano is wrong". UnicodeError and the
#: JSON and data errors are ValueErrors.
EXPECTED_ERRORS = (ValueError, OSError, OverflowError)

#: More worker threads than this is a typo (10**12) or a denial of service on a shared machine, not a plan.
MAX_THREADS = 1024
#: Seeds are unsigned 64-bit integers everywhere (NumPy's generators and the Rust code take u64).
MAX_SEED = 2**64 - 1
#: Training seeds: NumPy's legacy seeding takes 32 bits and each rank adds its rank, so keep room for that.
MAX_TRAIN_SEED = 2**31 - 1


def bounded_int(lo: int | None = None, hi: int | None = None) -> Callable[[str], int]:
    """An argparse ``type`` for an integer in [lo, hi] (either bound may be None); argparse reports misses."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if lo is not None and value < lo or hi is not None and value > hi:
            raise argparse.ArgumentTypeError(f"must be {range_text(lo, hi)}, got {value}")
        return value

    parse.__name__ = "int"  # argparse names the type in its messages
    return parse


def range_text(lo: int | None, hi: int | None) -> str:
    if lo is not None and hi is not None:
        return f"between {lo} and {hi}"
    return f">= {lo}" if lo is not None else f"<= {hi}"


threads_arg = bounded_int(1, MAX_THREADS)
seed_arg = bounded_int(0, MAX_SEED)
positive_int = bounded_int(1)
port_arg = bounded_int(0, 65535)


def main_errors(prog: str, code: int = 2):
    """Decorate ``main(argv) -> int``: expected errors print ``PROG: error: MESSAGE`` and return ``code``."""

    def wrap(main: Callable) -> Callable:
        @functools.wraps(main)
        def run(argv=None) -> int:
            try:
                return main(argv)
            except KeyboardInterrupt:
                print(f"{prog}: interrupted", file=sys.stderr)
                return 130
            except EXPECTED_ERRORS as e:
                print(f"{prog}: error: {message(e)}", file=sys.stderr)
                return code

        return run

    return wrap


def message(e: BaseException) -> str:
    """One line for an exception: its text, or its type when it has none."""
    text = " ".join(str(e).split()) if str(e) else type(e).__name__
    return text
