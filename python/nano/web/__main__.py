"""``python -m nano.web [--host H] [--port P] [--models DIR]``: serve the browser page from the installed
package (and, with ``--models``, the ``.bin`` / ``.gguf`` model files directly inside DIR)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from nano._cli import port_arg
from nano.web.server import WEB_DIR, has_wasm, make_server, model_files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nano.web", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback only)")
    parser.add_argument("--port", type=port_arg, default=8000, help="port (0 = any free port; default 8000)")
    parser.add_argument("--quiet", action="store_true", help="do not log requests")
    parser.add_argument("--models", type=Path, metavar="DIR",
                        help="also offer the .bin/.gguf model files directly inside DIR (page: ?model=NAME)")
    args = parser.parse_args(argv)

    if not has_wasm():
        print(
            f"error: the WASM engine is not built (no {WEB_DIR / 'pkg'}/*.wasm); "
            "run scripts/build_wasm.sh in a source checkout, then reinstall",
            file=sys.stderr,
        )
        return 2
    if args.models is not None and not args.models.is_dir():
        print(f"error: --models {args.models} is not a directory", file=sys.stderr)
        return 2
    try:
        server = make_server(args.host, args.port, quiet=args.quiet, models_dir=args.models)
    except OSError as err:
        print(f"error: cannot listen on {args.host}:{args.port}: {err.strerror or err}", file=sys.stderr)
        return 2
    host, port = server.server_address[:2]
    print(f"Nano web page: http://{host}:{port}/  (Ctrl-C to stop)", flush=True)
    if args.models is not None:
        names = sorted(model_files(args.models.resolve()))
        print(f"serving {len(names)} model file(s) from {args.models.resolve()}: {', '.join(names) or 'none yet'}",
              flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
