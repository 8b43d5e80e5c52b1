"""``python -m nano.serve MODEL [options]``: the OpenAI-compatible server of ``nano-infer serve`` (the same
Rust server, run inside this process; docs/serve.md). Options are those of ``nano-infer serve --help``;
it runs until interrupted (Ctrl-C or SIGTERM)."""

from __future__ import annotations

import sys

from nano._cli import main_errors

__all__ = ["main"]

PROG = "python -m nano.serve"


@main_errors(PROG, code=1)
def main(argv: list[str] | None = None) -> int:
    from nano import _native

    args = sys.argv[1:] if argv is None else list(argv)
    return _native.serve_main([PROG, *args])


if __name__ == "__main__":
    sys.exit(main())
