"""A tiny static server for the browser page: only the page's own files, loopback by default.

The set of servable files is fixed up front (the page files plus the built WASM package), so there is no
directory listing and no path can reach outside them, whatever the URL says.
"""

from __future__ import annotations

import http.server
import ipaddress
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


# An idle or slow client is dropped after this long, so open connections cannot pin threads forever.
IDLE_TIMEOUT_S = 30.0
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")


def allowed_hosts(host: str, port: int) -> frozenset[str] | None:
    """The Host header values a server bound to (host, port) answers; None = any (not bound to loopback).

    On loopback only the machine's own names are accepted: a page on another site that rebinds its DNS name
    to 127.0.0.1 sends its own name as Host and is refused (DNS rebinding).
    """
    try:
        loopback = ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if not loopback:
        return None
    names = {*LOOPBACK_NAMES, f"[{host.strip('[]')}]" if ":" in host else host}
    hosts = {f"{n}:{port}" for n in names}
    if port == 80:
        hosts |= names
    return frozenset(h.lower() for h in hosts)


class PageHandler(http.server.BaseHTTPRequestHandler):
    """GET/HEAD of an allow-listed file; everything else is 404 (or 405 for other methods).

    Every response, errors raised inside http.server included (400, 414, 431, 501, 505...), carries the
    security headers; a request whose Host is not one of ``hosts`` gets 421.
    """

    files: dict[str, Path] = {}
    hosts: frozenset[str] | None = None
    quiet = False
    server_version = "nano-web"
    sys_version = ""
    timeout = IDLE_TIMEOUT_S  # applied to each connection's socket by StreamRequestHandler
    # Until a request line is parsed http.server assumes HTTP/0.9, whose responses have no status line and
    # no headers: errors about unparsable requests (400, 414, 505...) would go out without the headers.
    default_request_version = "HTTP/1.0"

    def parse_request(self) -> bool:
        if not super().parse_request():
            return False
        if self.hosts is not None and (self.headers.get("Host") or "").strip().lower() not in self.hosts:
            self.send_error(421, "Misdirected Request")
            return False
        return True

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """http.server's own error responses, with the same headers as every other response."""
        self.close_connection = True
        self._send_error(code, message or self.responses.get(code, ("Error",))[0])

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
        if self.close_connection:
            self.send_header("Connection", "close")
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
    host: str = "127.0.0.1", port: int = 8000, web_dir: Path = WEB_DIR, quiet: bool = False,
    idle_timeout: float = IDLE_TIMEOUT_S,
) -> http.server.ThreadingHTTPServer:
    """A ready-to-serve server (port 0 picks a free port: read it from ``server.server_address``)."""
    if not 0 <= port <= 65535:
        raise ValueError(f"port must be between 0 and 65535, got {port}")
    attrs = {"files": servable_files(web_dir), "quiet": quiet, "timeout": idle_timeout}
    handler = type("BoundPageHandler", (PageHandler,), attrs)
    server = http.server.ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    handler.hosts = allowed_hosts(host, server.server_address[1])
    return server
