"""`python -m nano.web --models DIR`: the model files directly inside DIR (.bin / .gguf only) and their
list, and nothing else of DIR or beyond it."""

from __future__ import annotations

import http.client
import json
import os
import socket
import threading
from pathlib import Path

import pytest
from nano.web import server as web_server

MODEL = b"NANO" + bytes(range(256)) * 16


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("models")
    outside = base / "outside"
    outside.mkdir()
    (outside / "secret.bin").write_bytes(b"SECRET model outside the folder")
    (outside / "secret.txt").write_bytes(b"SECRET text")
    root = base / "models"
    (root / "sub").mkdir(parents=True)
    (root / "tiny.bin").write_bytes(MODEL)
    (root / "other model.gguf").write_bytes(b"GGUF" + b"\0" * 60)
    (root / "notes.txt").write_bytes(b"SECRET notes")  # not a model file
    (root / "tiny.bin.part").write_bytes(b"SECRET partial")
    (root / ".hidden.bin").write_bytes(b"SECRET hidden")
    (root / "sub" / "nested.bin").write_bytes(b"SECRET nested")
    (root / "folder.bin").mkdir()  # a directory with a model's name
    (root / "escape.bin").symlink_to(outside / "secret.bin")  # a link out of the folder
    (root / "text-as.bin").symlink_to(root / "notes.txt")  # a link to a non-model file inside it
    (root / "alias.bin").symlink_to(root / "tiny.bin")  # a link to a model in the folder: allowed
    (root / "dangling.bin").symlink_to(root / "gone.bin")
    # Larger than one streamed chunk, sparse so it costs no disk.
    with open(root / "large.bin", "wb") as f:
        f.truncate(3 * web_server.STREAM_CHUNK + 5)
        f.seek(3 * web_server.STREAM_CHUNK)
        f.write(b"tail!")
    return root


def start(**kwargs) -> tuple[int, object]:
    server = web_server.make_server("127.0.0.1", 0, quiet=True, **kwargs)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server.server_address[1], server


@pytest.fixture(scope="module")
def served(folder):
    port, server = start(models_dir=folder)
    yield port
    server.shutdown()
    server.server_close()


def fetch(port: int, path: str, method: str = "GET", headers: dict | None = None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.putrequest(method, path, skip_accept_encoding=True)
    for name, value in (headers or {}).items():
        conn.putheader(name, value)
    conn.endheaders()
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    return resp.status, {k.lower(): v for k, v in resp.getheaders()}, body


def test_the_list_names_exactly_the_model_files(served, folder):
    status, headers, body = fetch(served, "/models.json")
    assert status == 200 and headers["content-type"].startswith("application/json")
    assert headers["cross-origin-embedder-policy"] == "require-corp"
    listing = json.loads(body)
    assert [f["name"] for f in listing] == ["alias.bin", "large.bin", "other model.gguf", "tiny.bin"]
    tiny = next(f for f in listing if f["name"] == "tiny.bin")
    assert tiny["size"] == len(MODEL) and tiny["modified"] == int((folder / "tiny.bin").stat().st_mtime)


def test_a_model_file_is_served_whole(served):
    status, headers, body = fetch(served, "/models/tiny.bin")
    assert status == 200 and body == MODEL
    assert headers["content-type"] == "application/octet-stream"
    assert headers["content-length"] == str(len(MODEL))
    assert headers["x-content-type-options"] == "nosniff"
    status, _, body = fetch(served, "/models/other%20model.gguf")
    assert status == 200 and body.startswith(b"GGUF")
    status, headers, body = fetch(served, "/models/tiny.bin", method="HEAD")
    assert status == 200 and body == b"" and headers["content-length"] == str(len(MODEL))
    assert fetch(served, "/models/alias.bin")[2] == MODEL


def test_a_large_file_is_streamed_and_range_is_not_supported(served):
    size = 3 * web_server.STREAM_CHUNK + 5
    status, headers, body = fetch(served, "/models/large.bin")
    assert status == 200 and len(body) == size == int(headers["content-length"])
    assert body.endswith(b"tail!") and body[:16] == bytes(16)
    # Range is not implemented: the server says so and answers with the whole file (allowed by RFC 9110).
    status, headers, body = fetch(served, "/models/large.bin", headers={"Range": "bytes=0-9"})
    assert status == 200 and headers["accept-ranges"] == "none" and len(body) == size


@pytest.mark.parametrize("path", [
    "/models/notes.txt",
    "/models/tiny.bin.part",
    "/models/.hidden.bin",
    "/models/sub/nested.bin",
    "/models/sub%2fnested.bin",
    "/models/folder.bin",
    "/models/escape.bin",
    "/models/text-as.bin",
    "/models/dangling.bin",
    "/models/missing.bin",
    "/models/",
    "/models",
    "/models/../outside/secret.bin",
    "/models/..%2foutside%2fsecret.bin",
    "/models/%2e%2e/outside/secret.txt",
    "/models/..%5coutside%5csecret.bin",
    "/models/tiny.bin%00",
    "/models//etc/passwd",
    "/models/%2Fetc%2Fpasswd",
])
def test_nothing_else_of_the_folder_or_beyond_is_served(served, path):
    status, _, body = fetch(served, path)
    assert status == 404, path
    assert b"SECRET" not in body and b"NANO" not in body


def test_raw_traversal_into_the_parent_is_refused(served):
    with socket.create_connection(("127.0.0.1", served), timeout=10) as sock:
        sock.sendall(b"GET /models/../outside/secret.bin HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
                     b"Connection: close\r\n\r\n" % served)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    assert data.split(b"\r\n", 1)[0].endswith(b"404 Not Found") and b"SECRET" not in data


def test_files_added_later_are_seen_and_removed_ones_are_gone(served, folder):
    (folder / "late.bin").write_bytes(b"late")
    try:
        assert "late.bin" in [f["name"] for f in json.loads(fetch(served, "/models.json")[2])]
        assert fetch(served, "/models/late.bin")[2] == b"late"
    finally:
        os.remove(folder / "late.bin")
    assert fetch(served, "/models/late.bin")[0] == 404


def test_without_a_folder_the_list_is_empty_and_no_model_is_served(tmp_path):
    port, server = start()
    try:
        assert fetch(port, "/models.json")[:3:2] == (200, b"[]")
        assert fetch(port, "/models/tiny.bin")[0] == 404
    finally:
        server.shutdown()
        server.server_close()


def test_a_folder_that_is_not_a_directory_is_refused(tmp_path, capsys):
    from nano.web import __main__ as web_main

    with pytest.raises(NotADirectoryError):
        web_server.make_server("127.0.0.1", 0, quiet=True, models_dir=tmp_path / "nope")
    assert web_main.main(["--port", "0", "--models", str(tmp_path / "nope")]) == 2
    assert "is not a directory" in capsys.readouterr().err
