"""``python -m nano.web [--host H] [--port P]``: serve the browser page from the installed package."""

from __future__ import annotations

import argparse
import sys

from nano._cli import port_arg
from nano.web.server import WEB_DIR, has_wasm, make_server


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nano.web", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback only)")
    parser.add_argument("--port", type=port_arg, default=8000, help="port (0 = any free port; default 8000)")
    parser.add_argument("--quiet", action="store_true", help="do not log requests")
    args = parser.parse_args(argv)

    if not has_wasm():
        print(
            f"error: the WASM engine is not built (no {WEB_DIR / 'pkg'}/*.wasm); "
            "run scripts/build_wasm.sh in a source checkout, then reinstall",
            file=sys.stderr,
        )
        return 2
    try:
        server = make_server(args.host, args.port, quiet=args.quiet)
    except OSError as err:
        print(f"error: cannot listen on {args.host}:{args.port}: {err.strerror or err}", file=sys.stderr)
        return 2
    host, port = server.server_address[:2]
    print(f"Nano web page: http://{host}:{port}/  (Ctrl-C to stop)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
