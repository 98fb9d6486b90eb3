"""A small 신경 gateway test client on top of `websockets.sync.client`.

Speaks json (text frames) and msgpack (binary frames). Every received
frame is decoded into a dict; `last_raw` keeps the raw frame data so tests
can check byte-level details."""

from __future__ import annotations

import json
import time
import uuid

import msgpack
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect as ws_connect

HOST = "127.0.0.1"
NO_FRAME = object()


def now_ms() -> int:
    return int(time.time() * 1000)


def uid(prefix: str = "c") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


class GatewayClient:
    def __init__(self, port: int, encoding: str = "json", path: str = "/gateway/websocket",
                 read_hello: bool = True, open_timeout: float = 5.0):
        self.encoding = encoding
        self.url = f"ws://{HOST}:{port}{path}?encoding={encoding}"
        self.ws = ws_connect(self.url, open_timeout=open_timeout, max_size=None, compression=None,
                             close_timeout=2)
        self.last_raw: bytes | str | None = None
        self.hello = self.recv_frame() if read_hello else None
        self.client_id: str | None = None

    # ------------------------------------------------------------ encoding
    def encode(self, obj) -> bytes | str:
        if self.encoding == "msgpack":
            return msgpack.packb(obj, use_bin_type=True)
        return json.dumps(obj)

    def decode(self, raw):
        if isinstance(raw, (bytes, bytearray)):
            if self.encoding != "msgpack":
                raise AssertionError(f"binary frame on a {self.encoding} connection: {raw!r}")
            return msgpack.unpackb(raw, raw=False, strict_map_key=False)
        if self.encoding == "msgpack":
            raise AssertionError(f"text frame on a msgpack connection: {raw!r}")
        return json.loads(raw)

    # ------------------------------------------------------------ sending
    def send(self, obj):
        self.ws.send(self.encode(obj))

    def send_raw(self, data: bytes | str):
        """A text frame for str, a binary frame for bytes."""
        self.ws.send(data)

    def dispatch(self, t, d, **extra):
        frame = {"op": 4, "t": t, "d": d}
        frame.update(extra)
        self.send(frame)

    # ------------------------------------------------------------ receiving
    def recv_raw(self, timeout: float = 3.0):
        raw = self.ws.recv(timeout=timeout)
        self.last_raw = raw
        return raw

    def recv_frame(self, timeout: float = 3.0) -> dict:
        try:
            raw = self.recv_raw(timeout)
        except TimeoutError:
            raise AssertionError(f"no frame within {timeout}s")
        except ConnectionClosed as e:
            raise AssertionError(f"connection closed while waiting for a frame: {e!r}")
        frame = self.decode(raw)
        assert isinstance(frame, dict), f"server frame is not a map: {frame!r}"
        return frame

    def recv_until(self, pred, timeout: float = 3.0) -> dict:
        """The first frame satisfying pred; other frames are dropped."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError("no matching frame in time")
            f = self.recv_frame(remaining)
            if pred(f):
                return f

    def expect_no_frame(self, within: float = 0.3):
        try:
            raw = self.ws.recv(timeout=within)
        except TimeoutError:
            return
        except ConnectionClosed as e:
            raise AssertionError(f"connection closed unexpectedly: {e!r}")
        raise AssertionError(f"unexpected frame: {self.decode(raw)!r}")

    def drain(self, within: float = 0.2) -> list[dict]:
        out = []
        while True:
            try:
                raw = self.ws.recv(timeout=within)
            except (TimeoutError, ConnectionClosed):
                return out
            out.append(self.decode(raw))

    def expect_invalid(self, timeout: float = 3.0) -> dict:
        """Next frame must be op 3; the connection must stay open. Returns d."""
        f = self.recv_frame(timeout)
        assert f.get("op") == 3, f"expected op 3, got {f!r}"
        assert f.get("t") is None, f
        assert isinstance(f.get("ts"), int), f
        return f["d"]

    def expect_error_close(self, expect: dict | None = None, timeout: float = 3.0) -> dict:
        """Next frame must be op 8 (with d == expect when given); then a close
        frame with code 1000 about 100 ms later, and nothing else in
        between. Returns d."""
        f = self.recv_frame(timeout)
        assert f.get("op") == 8, f"expected op 8, got {f!r}"
        t0 = time.monotonic()
        assert set(f) == {"op", "d", "t", "ts"}, f
        assert f["t"] is None, f
        d = f["d"]
        assert isinstance(d, dict) and "error" in d and "extra_info" in d, f
        if expect is not None:
            assert d == expect, f"op 8 d = {d!r}, expected {expect!r}"
        try:
            self.expect_closed(1000, timeout=2.0)
        except AssertionError as e:
            raise AssertionError(f"op 8 {d!r} not followed by a proper close: {e}") from None
        elapsed = time.monotonic() - t0
        assert elapsed < 1.5, f"close came {elapsed:.3f}s after op 8"
        return d

    def expect_closed(self, code: int | None = 1000, timeout: float = 2.0):
        """No further data frame; the server closes with `code`."""
        try:
            raw = self.ws.recv(timeout=timeout)
        except TimeoutError:
            raise AssertionError(f"connection not closed within {timeout}s")
        except ConnectionClosed as e:
            rcvd = e.rcvd
            assert rcvd is not None, f"no close frame received ({e!r})"
            if code is not None:
                assert rcvd.code == code, f"close code {rcvd.code}, expected {code}"
            return rcvd
        raise AssertionError(f"expected close, got frame {self.decode(raw)!r}")

    # ------------------------------------------------------------ protocol
    def identify(self, app: str, client_id: str | None = None, **fields) -> dict:
        """Sends IDENTIFY and returns the READY frame (asserting op 2)."""
        client_id = client_id or uid()
        d = {"client_id": client_id, "application_id": app}
        d.update(fields)
        self.send({"op": 1, "d": d})
        f = self.recv_frame()
        assert f.get("op") == 2, f"expected READY, got {f!r}"
        self.client_id = client_id
        return f

    def heartbeat(self) -> dict:
        self.send({"op": 5, "d": {"client_id": self.client_id}})
        f = self.recv_frame()
        assert f.get("op") == 6, f
        return f

    def update_metadata(self, md: dict):
        self.dispatch("UPDATE_METADATA", md)

    def query_nodes(self, query, timeout: float = 3.0) -> dict:
        """Sends QUERY_NODES and returns the whole reply frame."""
        self.dispatch("QUERY_NODES", query)
        return self.recv_frame(timeout)

    def query_ids(self, query) -> set:
        f = self.query_nodes(query)
        assert f.get("op") == 4 and f.get("t") == "QUERY_NODES", f"expected QUERY_NODES reply, got {f!r}"
        return {n["client_id"] for n in f["d"]["nodes"]}

    def sync(self):
        """Round trip through the server (a heartbeat): every earlier frame of
        this connection has been handled when it returns."""
        return self.heartbeat()

    def close(self):
        try:
            self.ws.close()
        except Exception:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def connect(port: int, encoding: str = "json", **kw) -> GatewayClient:
    return GatewayClient(port, encoding, **kw)


class Clients:
    """Collects clients so a test or fixture can close them all."""

    def __init__(self, port: int):
        self.port = port
        self.all: list[GatewayClient] = []

    def connect(self, encoding: str = "json", **kw) -> GatewayClient:
        c = GatewayClient(self.port, encoding, **kw)
        self.all.append(c)
        return c

    def identified(self, app: str, client_id: str | None = None, encoding: str = "json", **fields):
        c = self.connect(encoding)
        c.ready = c.identify(app, client_id, **fields)
        return c

    def close_all(self):
        for c in self.all:
            c.close()
        self.all.clear()


def typed(**kw) -> dict:
    """typed(latency=("integer", 5)) -> {"latency": {"type": "integer", "value": 5}}"""
    return {k: {"type": t, "value": v} for k, (t, v) in kw.items()}


def fnv1a64(s: str) -> int:
    h = 0xcbf29ce484222325
    for b in s.encode("utf-8"):
        h ^= b
        h = (h * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return h


# --------------------------------------------------------------------------
# Server processes for module-scoped fixtures
# --------------------------------------------------------------------------


def start_server(*flags: str, wait_binary: float = 120.0):
    """Starts the binary on a free port (waits for it to exist if it is
    being rebuilt) and waits until it listens. Caller must .kill() it."""
    import conftest  # the suite's conftest: ServerProcess, clean_env, SINGYEONG_BIN
    from sy_helpers import free_port

    deadline = time.monotonic() + wait_binary
    while not conftest.SINGYEONG_BIN.exists() and time.monotonic() < deadline:
        time.sleep(1.0)
    port = free_port()
    server = conftest.ServerProcess(["--port", str(port), "--bind", HOST, *flags], conftest.clean_env(), port)
    server.wait_ready()
    return server


def stop_server(server):
    server.kill()
    print(f"--- singyeong {' '.join(server.args[1:])} (exit {server.proc.returncode}) stderr:")
    print(server.stderr()[-4000:])
