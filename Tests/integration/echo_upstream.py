"""A real HTTP/1.1 upstream for the proxy tests: echoes what it received.

Paths:
  anything        200 JSON {"method", "path", "headers": [[name, value]...], "body", "body_len", "body_sha256"}
  /slow?ms=N      the same after N ms
  /redirect       302 to /final (which echoes)
  /redirect-to?url=U  302 to U
  /cookies        two Set-Cookie lines, a Connection header and no Content-Type
  /big?n=N        N bytes of "x" (application/octet-stream); with &first=K&pause_ms=M
                  the first K bytes, a pause of M ms, then the rest
  /status/N       status N with a JSON body
  /reset          closes the connection without answering
It counts accepted TCP connections (`connections`) to show keep-alive reuse.
"""

from __future__ import annotations

import hashlib
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # quiet
        pass

    def _body(self) -> bytes:
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def _send(self, status: int, body: bytes, headers: list[tuple[str, str]]):
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _handle(self):
        body = self._body()
        self.server.requests.append((self.command, self.path))
        url = urlsplit(self.path)
        params = parse_qs(url.query)
        if url.path == "/reset":
            self.close_connection = True
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            self.connection.close()
            return
        if url.path == "/slow":
            time.sleep(int(params.get("ms", ["1000"])[0]) / 1000)
        if url.path == "/redirect":
            self._send(302, b"", [("Location", "/final")])
            return
        if url.path == "/redirect-to":
            self._send(302, b"", [("Location", params["url"][0])])
            return
        if url.path == "/cookies":
            self._send(200, b"cookies", [("Set-Cookie", "a=1"), ("Set-Cookie", "b=2"), ("Connection", "keep-alive"),
                                         ("X-Upstream", "yes")])
            return
        if url.path == "/big":
            n = int(params.get("n", ["0"])[0])
            if "pause_ms" in params:
                first = int(params.get("first", ["0"])[0])
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(n))
                self.end_headers()
                self.wfile.write(b"x" * first)
                self.wfile.flush()
                time.sleep(int(params["pause_ms"][0]) / 1000)
                self.wfile.write(b"x" * (n - first))
                return
            self._send(200, b"x" * n, [("Content-Type", "application/octet-stream")])
            return
        status = 200
        if url.path.startswith("/status/"):
            status = int(url.path.rsplit("/", 1)[1])
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            text = None
        echo = {
            "method": self.command, "path": self.path, "headers": [[k, v] for k, v in self.headers.items()],
            "body": text, "body_len": len(body), "body_sha256": hashlib.sha256(body).hexdigest(),
        }
        self._send(status, json.dumps(echo).encode(), [("Content-Type", "application/json")])

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _handle


class EchoUpstream(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, host: str = "127.0.0.1"):
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        super().__init__((host, 0), _Handler)
        self.connections = 0
        self.requests: list[tuple[str, str]] = []
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()

    def get_request(self):
        conn = super().get_request()
        self.connections += 1
        return conn

    @property
    def port(self) -> int:
        return self.server_address[1]

    @property
    def address(self) -> str:
        host = self.server_address[0]
        return f"[{host}]:{self.port}" if ":" in host else f"{host}:{self.port}"

    def stop(self):
        self.shutdown()
        self.server_close()
