"""`python -m nano.web`'s server: only the page's own files, loopback by default, COOP/COEP headers."""

from __future__ import annotations

import http.client
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from nano.web import server as web_server

PAGE = {
    "index.html": b"<!doctype html><title>t</title>",
    "app.js": b"// app",
    "worker.js": b"// worker",
    "style.css": b"body{}",
    "favicon.svg": b'<svg xmlns="http://www.w3.org/2000/svg"/>',
}


@pytest.fixture(scope="module")
def web_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fake page directory with files that must never be served around the real ones."""
    tmp_path = tmp_path_factory.mktemp("site")
    root = tmp_path / "web"
    (root / "pkg").mkdir(parents=True)
    for name, body in PAGE.items():
        (root / name).write_bytes(body)
    (root / "pkg" / "nano_wasm.js").write_bytes(b"// glue")
    (root / "pkg" / "nano_wasm_bg.wasm").write_bytes(b"\0asm\1\0\0\0")
    (root / "pkg" / "package.json").write_bytes(b"{}")  # not needed by the page: not served
    (root / "server.py").write_bytes(b"SECRET = 1")  # a module beside the page: not served
    (root / "__main__.py").write_bytes(b"SECRET = 2")
    (tmp_path / "secret.txt").write_bytes(b"SECRET outside the page directory")
    return root


@pytest.fixture(scope="module")
def served(web_dir: Path):
    server = web_server.make_server("127.0.0.1", 0, web_dir=web_dir, quiet=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def fetch(port: int, path: str, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    """Sends the path exactly as given (no client-side normalisation)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.putrequest(method, path, skip_accept_encoding=True)
    conn.endheaders()
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    return resp.status, {k.lower(): v for k, v in resp.getheaders()}, body


def test_serves_the_page_files_with_isolation_headers(served, web_dir):
    for name, body in PAGE.items():
        status, headers, got = fetch(served, f"/{name}")
        assert status == 200 and got == body, name
        assert headers["cross-origin-opener-policy"] == "same-origin"
        assert headers["cross-origin-embedder-policy"] == "require-corp"
        assert headers["x-content-type-options"] == "nosniff"
    status, headers, body = fetch(served, "/")
    assert status == 200 and body == PAGE["index.html"]
    assert headers["content-type"].startswith("text/html")
    status, headers, body = fetch(served, "/pkg/nano_wasm_bg.wasm")
    assert status == 200 and headers["content-type"] == "application/wasm" and body.startswith(b"\0asm")
    status, headers, _ = fetch(served, "/app.js?v=1")
    assert status == 200 and headers["content-type"].startswith("text/javascript")
    status, headers, body = fetch(served, "/index.html", method="HEAD")
    assert status == 200 and body == b"" and int(headers["content-length"]) == len(PAGE["index.html"])


def test_the_icon_is_served_as_svg_under_both_names(served):
    for path in ("/favicon.svg", "/favicon.ico"):
        status, headers, body = fetch(served, path)
        assert status == 200 and body == PAGE["favicon.svg"], path
        assert headers["content-type"] == "image/svg+xml", path


@pytest.mark.parametrize(
    "path",
    [
        "/pkg/",
        "/pkg",
        "/pkg/package.json",
        "/server.py",
        "/__main__.py",
        "/../secret.txt",
        "/pkg/../../secret.txt",
        "/%2e%2e/secret.txt",
        "/%2E%2E%2Fsecret.txt",
        "/..%2fsecret.txt",
        "/pkg/..%2f..%2fsecret.txt",
        "//etc/passwd",
        "/%2Fetc%2Fpasswd",
        "/index.html%00.js",
        "/nope.html",
        "/" + str(Path(__file__).resolve()).lstrip("/"),
    ],
)
def test_nothing_else_is_served(served, path):
    status, _, body = fetch(served, path)
    assert status == 404, path
    assert b"SECRET" not in body and b"passwd" not in body and b"<" not in body


def test_raw_traversal_on_the_socket_is_refused(served):
    # Some clients normalise "..": talk HTTP by hand so the server sees the raw target.
    with socket.create_connection(("127.0.0.1", served), timeout=10) as sock:
        sock.sendall(b"GET /../../secret.txt HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nConnection: close\r\n\r\n" % served)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    assert data.startswith(b"HTTP/1.0 404") or data.startswith(b"HTTP/1.1 404")
    assert b"SECRET" not in data


def test_other_methods_are_refused(served):
    status, headers, _ = fetch(served, "/index.html", method="POST")
    assert status == 405 and "GET" in headers["allow"]
    status, _, _ = fetch(served, "/index.html", method="PUT")
    assert status == 405


def test_the_real_page_is_allow_listed():
    files = web_server.servable_files()
    for name in PAGE:
        assert f"/{name}" in files
    assert "/server.py" not in files and "/__init__.py" not in files


def test_the_real_page_names_its_icon_and_the_icon_is_svg():
    import xml.etree.ElementTree as ET

    html = (web_server.WEB_DIR / "index.html").read_text(encoding="utf-8")
    assert '<link rel="icon" href="favicon.svg" type="image/svg+xml">' in html
    root = ET.fromstring((web_server.WEB_DIR / "favicon.svg").read_bytes())
    assert root.tag == "{http://www.w3.org/2000/svg}svg" and root.get("viewBox")


def test_the_installed_package_carries_the_built_wasm_engine():
    """`pip install .` must give a working page without a wasm toolchain: the built package is committed
    and packaged (what the page loads: the JS glue and both builds of the engine)."""
    pkg = web_server.WEB_DIR / web_server.PKG_DIR
    for name in ("nano_wasm.js", "nano_wasm_bg.wasm", "nano_wasm_relaxed_bg.wasm"):
        assert (pkg / name).is_file(), f"{pkg / name} is missing from the installed package"
    for name in ("nano_wasm_bg.wasm", "nano_wasm_relaxed_bg.wasm"):
        assert (pkg / name).read_bytes()[:8] == b"\0asm\1\0\0\0", name  # wasm magic, version 1
    assert web_server.has_wasm()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_module_entry_point_refuses_to_start_without_the_engine(monkeypatch, capsys):
    from nano.web import __main__ as web_main

    monkeypatch.setattr(web_main, "has_wasm", lambda: False)
    assert web_main.main(["--port", "0"]) == 2
    assert "the WASM engine is not built" in capsys.readouterr().err


def test_module_entry_point_binds_loopback_by_default():
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "nano.web", "--port", str(port), "--quiet"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline()
        assert f"http://127.0.0.1:{port}/" in line
        deadline = time.monotonic() + 20
        while True:
            try:
                status, headers, body = fetch(port, "/")
                break
            except ConnectionRefusedError:
                assert time.monotonic() < deadline
                time.sleep(0.1)
        assert status == 200 and b"app.js" in body
        assert headers["cross-origin-embedder-policy"] == "require-corp"
        status, _, _ = fetch(port, "/pkg/nano_wasm_bg.wasm", method="HEAD")
        assert status == 200
        # Bound to loopback only: not reachable on another local address of this machine.
        if shutil.which("ss"):
            listeners = subprocess.run(["ss", "-ltnH"], capture_output=True, text=True).stdout
            ours = [line for line in listeners.splitlines() if f":{port} " in line]
            assert ours and all("127.0.0.1:" in line for line in ours), ours
    finally:
        proc.terminate()
        proc.wait(timeout=10)
