"""A tiny static server for the browser page: only the page's own files, loopback by default.

The set of servable files is fixed up front (the page files plus the built WASM package), so there is no
directory listing and no path can reach outside them, whatever the URL says.
"""

from __future__ import annotations

import http.server
import posixpath
import urllib.parse
from pathlib import Path

WEB_DIR = Path(__file__).resolve().parent
PAGE_FILES = ("index.html", "app.js", "worker.js", "style.css", "favicon.svg")
# Browsers ask for /favicon.ico unless the page names its icon (index.html does): answer with the same icon.
ALIASES = {"/favicon.ico": "/favicon.svg"}
PKG_DIR = "pkg"
# wasm-pack / wasm-bindgen output we serve; package.json, .d.ts and .gitignore are not needed by the page.
PKG_SUFFIXES = (".js", ".wasm")

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".wasm": "application/wasm",
    ".svg": "image/svg+xml",
}

# Cross-origin isolation (COOP + COEP) makes SharedArrayBuffer available: the page uses it for the stop
# flag, and a threaded WASM build would need it. CSP keeps every request on this origin.
SECURITY_HEADERS = {
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Embedder-Policy": "require-corp",
    "Cross-Origin-Resource-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; worker-src 'self'; "
        "connect-src 'self'; img-src 'self' data:; style-src 'self'; object-src 'none'; base-uri 'none'"
    ),
    "Cache-Control": "no-cache",
}


def servable_files(web_dir: Path = WEB_DIR) -> dict[str, Path]:
    """URL path -> file, for exactly the files the page needs (read once at start-up)."""
    files = {f"/{name}": web_dir / name for name in PAGE_FILES if (web_dir / name).is_file()}
    pkg = web_dir / PKG_DIR
    if pkg.is_dir():
        for path in sorted(pkg.iterdir()):
            if path.is_file() and path.suffix in PKG_SUFFIXES:
                files[f"/{PKG_DIR}/{path.name}"] = path
    if "/index.html" in files:
        files["/"] = files["/index.html"]
    for alias, name in ALIASES.items():
        if name in files:
            files[alias] = files[name]
    return files


def has_wasm(web_dir: Path = WEB_DIR) -> bool:
    return any(p.endswith(".wasm") for p in servable_files(web_dir))


class PageHandler(http.server.BaseHTTPRequestHandler):
    """GET/HEAD of an allow-listed file; everything else is 404 (or 405 for other methods)."""

    files: dict[str, Path] = {}
    quiet = False
    server_version = "nano-web"
    sys_version = ""

    def _lookup(self) -> Path | None:
        path = urllib.parse.urlsplit(self.path).path
        # Exact match against the allow-list only; normalising first just lets "/./app.js" work.
        # Anything that normalises outside the root ("/../x") cannot match a key.
        path = posixpath.normpath(urllib.parse.unquote(path)) if path not in ("", "/") else "/"
        return self.files.get(path)

    def _send(self, head_only: bool) -> None:
        target = self._lookup()
        if target is None:
            self._send_error(404, "Not Found")
            return
        try:
            body = target.read_bytes()
        except OSError:
            self._send_error(404, "Not Found")
            return
        self.send_response(200)
        self.send_header("Content-Type", CONTENT_TYPES.get(target.suffix, "application/octet-stream"))
        self.send_header("Content-Length", str(len(body)))
        for name, value in SECURITY_HEADERS.items():
            self.send_header(name, value)
        self.end_headers()
        if not head_only:
            self.wfile.write(body)

    def _send_error(self, code: int, reason: str) -> None:
        body = f"{code} {reason}\n".encode()
        self.send_response(code)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        for name, value in SECURITY_HEADERS.items():
            self.send_header(name, value)
        if code == 405:
            self.send_header("Allow", "GET, HEAD")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self._send(head_only=False)

    def do_HEAD(self) -> None:  # noqa: N802
        self._send(head_only=True)

    def _not_allowed(self) -> None:
        self._send_error(405, "Method Not Allowed")

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _not_allowed  # noqa: N815

    def log_message(self, format: str, *args) -> None:  # noqa: A002
        if not self.quiet:
            super().log_message(format, *args)


def make_server(
    host: str = "127.0.0.1", port: int = 8000, web_dir: Path = WEB_DIR, quiet: bool = False
) -> http.server.ThreadingHTTPServer:
    """A ready-to-serve server (port 0 picks a free port: read it from ``server.server_address``)."""
    handler = type("BoundPageHandler", (PageHandler,), {"files": servable_files(web_dir), "quiet": quiet})
    server = http.server.ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    return server
