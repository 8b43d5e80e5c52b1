"""A tiny static server for the browser page: only the page's own files, loopback by default.

The set of page files is fixed up front (the page files plus the built WASM package), so there is no
directory listing and no path can reach outside them, whatever the URL says. With a model folder
(``--models DIR``) it also serves the model files directly inside that folder (``/models/NAME``, only
``.bin`` / ``.gguf`` regular files, symlinks only to such a file in the same folder) and their list
(``/models.json``, an empty list without a folder).
"""

from __future__ import annotations

import http.server
import ipaddress
import json
import os
import posixpath
import shutil
import urllib.parse
from pathlib import Path

WEB_DIR = Path(__file__).resolve().parent
PAGE_FILES = (
    "index.html", "app.js", "chat.js", "speech.js", "storage.js", "worker.js", "team_worker.js", "style.css",
    "favicon.svg",
)
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


MODEL_SUFFIXES = (".bin", ".gguf")
MODELS_INDEX = "/models.json"
MODELS_PREFIX = "/models/"
# Model files are streamed in pieces of this size rather than read whole (they can be gigabytes).
STREAM_CHUNK = 1 << 20


def model_files(models_dir: Path | None) -> dict[str, Path]:
    """Name -> file of the model files directly inside ``models_dir`` (read at each request, so files
    added or removed while serving are seen). A symlink counts only when it points at a model file in
    the same folder; subfolders, other files, dot files and names that are not UTF-8 are left out."""
    if models_dir is None:
        return {}
    root = models_dir.resolve()
    found = {}
    try:
        entries = sorted(root.iterdir())
    except OSError:
        return {}
    for path in entries:
        name = path.name
        if name.startswith(".") or path.suffix.lower() not in MODEL_SUFFIXES:
            continue
        try:
            name.encode("utf-8")
            target = path.resolve(strict=True)
        except (OSError, RuntimeError, UnicodeEncodeError):  # dangling or looping link, undecodable name
            continue
        if target.parent == root and target.suffix.lower() in MODEL_SUFFIXES and target.is_file():
            found[name] = target
    return found


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
    models_dir: Path | None = None
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

    def _url_path(self) -> str:
        path = urllib.parse.urlsplit(self.path).path
        # Exact match against the allow-list only; normalising first just lets "/./app.js" work.
        # Anything that normalises outside the root ("/../x") cannot match a key.
        return posixpath.normpath(urllib.parse.unquote(path)) if path not in ("", "/") else "/"

    def _send(self, head_only: bool) -> None:
        path = self._url_path()
        if path == MODELS_INDEX:
            self._send_models_index(head_only)
        elif path.startswith(MODELS_PREFIX):
            self._send_model(path.removeprefix(MODELS_PREFIX), head_only)
        else:
            self._send_page_file(self.files.get(path), head_only)

    def _send_page_file(self, target: Path | None, head_only: bool) -> None:
        try:
            body = target.read_bytes() if target is not None else None
        except OSError:
            body = None
        if body is None:
            self._send_error(404, "Not Found")
            return
        self._send_body(200, CONTENT_TYPES.get(target.suffix, "application/octet-stream"), body, head_only)

    def _send_body(self, code: int, content_type: str, body: bytes, head_only: bool) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in SECURITY_HEADERS.items():
            self.send_header(name, value)
        self.end_headers()
        if not head_only:
            self.wfile.write(body)

    def _send_models_index(self, head_only: bool) -> None:
        listing = []
        for name, path in model_files(self.models_dir).items():
            try:
                st = path.stat()
            except OSError:
                continue
            listing.append({"name": name, "size": st.st_size, "modified": int(st.st_mtime)})
        body = json.dumps(listing, ensure_ascii=False).encode("utf-8")
        self._send_body(200, "application/json; charset=utf-8", body, head_only)

    def _send_model(self, name: str, head_only: bool) -> None:
        """One model file of the folder, streamed. The name must be exactly one listed file (no "/",
        no "..": those never are); Range is not supported, so a Range request gets the whole file."""
        target = model_files(self.models_dir).get(name) if "/" not in name and "\\" not in name else None
        try:
            f = open(target, "rb") if target is not None else None  # noqa: SIM115 (closed below)
        except OSError:
            f = None
        if f is None:
            self._send_error(404, "Not Found")
            return
        with f:
            size = os.fstat(f.fileno()).st_size
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(size))
            self.send_header("Accept-Ranges", "none")
            for header, value in SECURITY_HEADERS.items():
                self.send_header(header, value)
            self.end_headers()
            if head_only:
                return
            try:
                shutil.copyfileobj(f, self.wfile, STREAM_CHUNK)
            except (BrokenPipeError, ConnectionResetError):  # the client went away mid-file
                self.close_connection = True

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
    idle_timeout: float = IDLE_TIMEOUT_S, models_dir: Path | None = None,
) -> http.server.ThreadingHTTPServer:
    """A ready-to-serve server (port 0 picks a free port: read it from ``server.server_address``);
    ``models_dir``: a folder whose model files the page may load (see the module's description)."""
    if not 0 <= port <= 65535:
        raise ValueError(f"port must be between 0 and 65535, got {port}")
    if models_dir is not None:
        models_dir = Path(models_dir).resolve()
        if not models_dir.is_dir():
            raise NotADirectoryError(f"the model folder {models_dir} is not a directory")
    attrs = {"files": servable_files(web_dir), "quiet": quiet, "timeout": idle_timeout, "models_dir": models_dir}
    handler = type("BoundPageHandler", (PageHandler,), attrs)
    server = http.server.ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    handler.hosts = allowed_hosts(host, server.server_address[1])
    return server
