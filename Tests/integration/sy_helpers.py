"""Shared helpers for the Singyeong integration tests: raw sockets speaking
HTTP/1.1 and RFC 6455 frames byte by byte, so tests can send exactly the
(malformed) bytes they mean and inspect exactly what comes back."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import socket
import ssl
import struct
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

HOST = "127.0.0.1"
WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


def free_port(host: str = HOST) -> int:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind((host, 0))
    port = s.getsockname()[1]
    s.close()
    return port


def can_connect(port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=timeout):
            return True
    except OSError:
        return False


def accept_key(key: str) -> str:
    return base64.b64encode(hashlib.sha1(key.encode() + WS_GUID).digest()).decode()


# --------------------------------------------------------------------------
# Raw connection with a read buffer
# --------------------------------------------------------------------------


@dataclass
class Response:
    version: str
    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes
    raw_head: bytes

    def header(self, name: str) -> str | None:
        name = name.lower()
        for k, v in self.headers:
            if k.lower() == name:
                return v
        return None

    def header_all(self, name: str) -> list[str]:
        name = name.lower()
        return [v for k, v in self.headers if k.lower() == name]

    def json(self):
        return json.loads(self.body.decode("utf-8"))


@dataclass
class Frame:
    fin: bool
    rsv: int
    opcode: int
    masked: bool
    payload: bytes
    header: bytes = field(repr=False, default=b"")

    @property
    def close_code(self) -> int | None:
        if self.opcode != OP_CLOSE or len(self.payload) < 2:
            return None
        return struct.unpack("!H", self.payload[:2])[0]


class Closed(Exception):
    """The peer closed the TCP connection (EOF or reset)."""


class RawConn:
    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.buf = b""

    @classmethod
    def open(cls, port: int, timeout: float = 5.0, tls: ssl.SSLContext | None = None,
             server_hostname: str | None = None, rcvbuf: int | None = None, host: str = HOST) -> "RawConn":
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.settimeout(timeout)
        sock.connect((host, port))
        if tls is not None:
            sock = tls.wrap_socket(sock, server_hostname=server_hostname or HOST)
        return cls(sock)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def send(self, data: bytes):
        self.sock.sendall(data)

    def discard_pending(self):
        """Reads and drops whatever the server has sent so far, without
        blocking (frame boundaries are lost: only for connections whose
        input is never parsed again)."""
        self.sock.setblocking(False)
        try:
            while self.sock.recv(1 << 16):
                pass
        except (BlockingIOError, InterruptedError):
            pass
        finally:
            self.sock.setblocking(True)

    def _fill(self, deadline: float):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("timed out waiting for data from the server")
        self.sock.settimeout(remaining)
        try:
            chunk = self.sock.recv(65536)
        except socket.timeout as e:
            raise TimeoutError("timed out waiting for data from the server") from e
        except OSError as e:  # reset, broken pipe, TLS alert/EOF
            raise Closed(str(e)) from e
        if not chunk:
            raise Closed("EOF")
        self.buf += chunk

    def recv_exact(self, n: int, timeout: float = 5.0) -> bytes:
        deadline = time.monotonic() + timeout
        while len(self.buf) < n:
            self._fill(deadline)
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def recv_until(self, marker: bytes, timeout: float = 5.0) -> bytes:
        deadline = time.monotonic() + timeout
        while marker not in self.buf:
            self._fill(deadline)
        i = self.buf.index(marker) + len(marker)
        out, self.buf = self.buf[:i], self.buf[i:]
        return out

    def recv_to_eof(self, timeout: float = 5.0) -> tuple[bytes, bool]:
        """Everything until EOF; returns (data, closed_within_timeout)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self._fill(deadline)
            except Closed:
                out, self.buf = self.buf, b""
                return out, True
            except TimeoutError:
                out, self.buf = self.buf, b""
                return out, False

    def wait_closed(self, timeout: float = 2.0) -> bool:
        """True when the server closes the TCP connection within `timeout`
        (any bytes that arrive meanwhile are discarded)."""
        _, closed = self.recv_to_eof(timeout)
        return closed

    def read_response(self, timeout: float = 5.0, head_request: bool = False) -> Response:
        deadline = time.monotonic() + timeout
        raw_head = self.recv_until(b"\r\n\r\n", timeout)
        lines = raw_head[:-4].decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        assert len(parts) >= 2 and parts[0].startswith("HTTP/"), f"bad status line {lines[0]!r}"
        version, status = parts[0], int(parts[1])
        reason = parts[2] if len(parts) > 2 else ""
        headers = []
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers.append((k.strip(), v.strip()))
        resp = Response(version, status, reason, headers, b"", raw_head)
        if head_request or status == 101 or 100 <= status < 200 or status in (204, 304):
            return resp
        cl = resp.header("content-length")
        te = resp.header("transfer-encoding")
        if cl is not None:
            resp.body = self.recv_exact(int(cl), max(0.01, deadline - time.monotonic()))
        elif te and "chunked" in te.lower():
            body = b""
            while True:
                size_line = self.recv_until(b"\r\n", max(0.01, deadline - time.monotonic()))
                size = int(size_line.split(b";")[0].strip(), 16)
                if size == 0:
                    self.recv_until(b"\r\n", max(0.01, deadline - time.monotonic()))
                    break
                body += self.recv_exact(size + 2, max(0.01, deadline - time.monotonic()))[:-2]
            resp.body = body
        else:
            body, _ = self.recv_to_eof(max(0.01, deadline - time.monotonic()))
            resp.body = body
        return resp

    def read_frame(self, timeout: float = 5.0) -> Frame:
        deadline = time.monotonic() + timeout
        t = lambda: max(0.01, deadline - time.monotonic())  # noqa: E731
        h = self.recv_exact(2, t())
        b0, b1 = h[0], h[1]
        n = b1 & 0x7F
        header = h
        if n == 126:
            ext = self.recv_exact(2, t())
            header += ext
            n = struct.unpack("!H", ext)[0]
        elif n == 127:
            ext = self.recv_exact(8, t())
            header += ext
            n = struct.unpack("!Q", ext)[0]
        masked = bool(b1 & 0x80)
        key = b""
        if masked:
            key = self.recv_exact(4, t())
            header += key
        payload = self.recv_exact(n, t()) if n else b""
        if masked:
            payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
        return Frame(bool(b0 & 0x80), (b0 >> 4) & 0x7, b0 & 0x0F, masked, payload, header)


# --------------------------------------------------------------------------
# WebSocket bytes
# --------------------------------------------------------------------------


def ws_frame(opcode: int, payload: bytes = b"", fin: bool = True, rsv: int = 0, mask: bool = True,
             length: int | None = None, mask_key: bytes | None = None) -> bytes:
    """One frame; `length` overrides the advertised payload length (the
    payload given is still appended, so header-only frames pass b"")."""
    b0 = (0x80 if fin else 0) | ((rsv & 7) << 4) | (opcode & 0x0F)
    n = len(payload) if length is None else length
    mbit = 0x80 if mask else 0
    if n < 126:
        hdr = bytes([b0, mbit | n])
    elif n < 65536:
        hdr = bytes([b0, mbit | 126]) + struct.pack("!H", n)
    else:
        hdr = bytes([b0, mbit | 127]) + struct.pack("!Q", n)
    if mask:
        key = mask_key or os.urandom(4)
        hdr += key
        payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return hdr + payload


def close_payload(code: int, reason: bytes = b"") -> bytes:
    return struct.pack("!H", code) + reason


def upgrade_request(path: str = "/gateway/websocket", key: str | None = "dGhlIHNhbXBsZSBub25jZQ==",
                    method: str = "GET", version: str | None = "13", upgrade: bool = True,
                    extra: list[tuple[str, str]] | None = None, host: str = "127.0.0.1") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}"]
    if upgrade:
        lines += ["Upgrade: websocket", "Connection: Upgrade"]
    if key is not None:
        lines.append(f"Sec-WebSocket-Key: {key}")
    if version is not None:
        lines.append(f"Sec-WebSocket-Version: {version}")
    for k, v in extra or []:
        lines.append(f"{k}: {v}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def new_key() -> str:
    return base64.b64encode(os.urandom(16)).decode()


def open_ws(port: int, path: str = "/gateway/websocket", tls: ssl.SSLContext | None = None,
            rcvbuf: int | None = None, host: str = HOST) -> tuple[RawConn, Response, Frame]:
    """Raw WebSocket: handshake, check 101, read the HELLO frame."""
    conn = RawConn.open(port, tls=tls, rcvbuf=rcvbuf, host=host)
    key = new_key()
    conn.send(upgrade_request(path, key=key))
    resp = conn.read_response()
    assert resp.status == 101, f"expected 101, got {resp.status} {resp.raw_head!r}"
    assert resp.header("sec-websocket-accept") == accept_key(key)
    hello = conn.read_frame()
    assert hello.opcode in (OP_TEXT, OP_BINARY), hello
    return conn, resp, hello


def expect_close(conn: RawConn, code: int | None, timeout: float = 3.0, allow_pongs: bool = False) -> Frame:
    """The next frame must be a close frame with `code` (None = any), and the
    server must then close the TCP connection."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            f = conn.read_frame(max(0.01, deadline - time.monotonic()))
        except Closed:
            raise AssertionError(f"server closed TCP without sending a close frame (expected code {code})")
        except TimeoutError:
            raise AssertionError(f"no close frame within {timeout}s (expected code {code})")
        if allow_pongs and f.opcode == OP_PONG:
            continue
        break
    assert f.opcode == OP_CLOSE, f"expected a close frame (code {code}), got {f}"
    assert not f.masked, "server frames must not be masked"
    if code is not None:
        assert f.close_code == code, f"expected close code {code}, got {f.close_code} (payload {f.payload!r})"
    assert conn.wait_closed(2.0), "server did not close the TCP connection after its close frame"
    return f


def http_get(port: int, path: str, extra: str = "", tls: ssl.SSLContext | None = None,
             method: str = "GET") -> Response:
    with RawConn.open(port, tls=tls) as c:
        c.send(f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra}Connection: close\r\n\r\n".encode())
        return c.read_response(head_request=(method == "HEAD"))


def assert_still_serving(port: int, tls: ssl.SSLContext | None = None):
    r = http_get(port, "/api/version", tls=tls)
    assert r.status == 200, f"server stopped serving /api/version: {r.status}"
    assert r.json()["api"] == "v1"


# --------------------------------------------------------------------------
# TLS material
# --------------------------------------------------------------------------


def make_cert(directory: Path, cn: str = "localhost", cert_name: str = "cert.pem",
              key_name: str = "key.pem") -> tuple[Path, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / cert_name, directory / key_name
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
         "-days", "1", "-subj", f"/CN={cn}", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True, capture_output=True, timeout=60,
    )
    return cert, key


def cert_der(path: Path) -> bytes:
    return ssl.PEM_cert_to_DER_cert(path.read_text())


def client_context(cafile: Path | None = None, minimum=None, maximum=None) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if cafile is None:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    else:
        ctx.load_verify_locations(cafile=str(cafile))
    if minimum is not None:
        ctx.minimum_version = minimum
    if maximum is not None:
        ctx.maximum_version = maximum
    return ctx


def rss_kib(pid: int) -> int:
    """Resident memory of a process, KiB (from /proc)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def wait_for(predicate, timeout: float = 3.0) -> bool:
    """Polls `predicate` every 50 ms until it holds or `timeout` passes."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()
