"""The page server against hostile clients: idle connections, malformed requests, DNS rebinding."""

from __future__ import annotations

import socket
import threading
import time

import pytest
from nano.web import server as web_server


@pytest.fixture
def serve(tmp_path):
    (tmp_path / "index.html").write_bytes(b"<!doctype html><title>t</title>")
    servers = []

    def start(host="127.0.0.1", idle_timeout=web_server.IDLE_TIMEOUT_S):
        server = web_server.make_server(host, 0, web_dir=tmp_path, quiet=True, idle_timeout=idle_timeout)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server.server_address[1]

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def raw(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return data


def status_and_headers(response: bytes) -> tuple[int, dict[str, str]]:
    head = response.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    headers = {}
    for line in head[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(head[0].split()[1]), headers


@pytest.mark.parametrize("request_bytes, code", [
    (b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\n\r\n", 414),  # request line too long
    (b"GET / HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nX: " + b"b" * 70_000 + b"\r\n\r\n", 431),  # header too long
    (b"BREW / HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n", 501),  # unknown method
    (b"GET / HTTP/2.0\r\nHost: 127.0.0.1:%d\r\n\r\n", 505),  # unsupported version
    (b"GET / FTP/1.1\r\n\r\n", 400),  # not HTTP at all
])
def test_error_pages_carry_the_security_headers(serve, request_bytes, code):
    port = serve()
    req = request_bytes % port if b"%d" in request_bytes else request_bytes
    status, headers = status_and_headers(raw(port, req))
    assert status == code
    for name, value in web_server.SECURITY_HEADERS.items():
        assert headers.get(name.lower()) == value, (code, name)


@pytest.mark.parametrize("host, ok", [
    ("127.0.0.1:{port}", True), ("localhost:{port}", True), ("LOCALHOST:{port}", True), ("[::1]:{port}", True),
    ("evil.example:{port}", False), ("127.0.0.1", False), ("localhost:1", False), ("", False),
    ("127.0.0.1:{port}.evil.example", False),
])
def test_only_the_loopback_names_are_accepted_as_host(serve, host, ok):
    port = serve()
    header = f"Host: {host.format(port=port)}\r\n".encode() if host else b""
    status, headers = status_and_headers(raw(port, b"GET / HTTP/1.1\r\n" + header + b"Connection: close\r\n\r\n"))
    assert status == (200 if ok else 421)
    assert headers["content-security-policy"] == web_server.SECURITY_HEADERS["Content-Security-Policy"]


def test_a_server_bound_beyond_loopback_does_not_check_host():
    assert web_server.allowed_hosts("0.0.0.0", 8000) is None
    assert web_server.allowed_hosts("192.168.1.5", 8000) is None
    assert "localhost:8000" in web_server.allowed_hosts("127.0.0.1", 8000)
    assert "localhost" in web_server.allowed_hosts("localhost", 80)


def test_idle_connections_are_dropped_and_their_threads_end(serve):
    """Many clients that connect and say nothing do not hold a thread each for ever."""
    port = serve(idle_timeout=0.5)
    before = threading.active_count()
    socks = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(60)]
    try:
        # each idle socket is closed by the server (without the timeout, recv would wait for ever)
        for s in socks:
            s.settimeout(60)
            assert s.recv(1) == b""
        deadline = time.monotonic() + 30
        while threading.active_count() > before and time.monotonic() < deadline:
            time.sleep(0.01)
        assert threading.active_count() <= before
    finally:
        for s in socks:
            s.close()


def test_the_default_idle_timeout_is_set():
    assert 0 < web_server.IDLE_TIMEOUT_S <= 120
    assert web_server.PageHandler.timeout == web_server.IDLE_TIMEOUT_S
