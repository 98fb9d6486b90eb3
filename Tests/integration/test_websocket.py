"""The WebSocket gateway at /gateway/websocket: upgrade rules, HELLO in
JSON and msgpack, ping/pong, the close handshake, RFC 6455 violations,
message size limits and the idle timeout."""

from __future__ import annotations

import json
import time

import msgpack
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from sy_helpers import (OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_PONG, OP_TEXT, Closed, RawConn, accept_key,
                        assert_still_serving, close_payload, expect_close, new_key, open_ws, upgrade_request,
                        ws_frame)


def ws_connect(port: int, query: str = "", path: str = "/gateway/websocket", **kw):
    kw.setdefault("open_timeout", 5)
    kw.setdefault("close_timeout", 3)
    kw.setdefault("ping_interval", None)
    return connect(f"ws://127.0.0.1:{port}{path}{query}", **kw)


def check_hello(hello: dict, interval: int = 45000):
    assert set(hello) == {"op", "d", "t", "ts"}, hello
    assert hello["op"] == 0
    assert hello["d"] == {"heartbeat_interval": interval}
    assert hello["t"] is None
    assert isinstance(hello["ts"], int) and not isinstance(hello["ts"], bool)
    assert abs(hello["ts"] - time.time() * 1000) < 5000, f"ts {hello['ts']} is not close to now"


# ---------------------------------------------------------------- upgrade

@pytest.mark.parametrize("path", ["/gateway/websocket", "/gateway/websocket/"])
def test_hello_json_is_first_frame(port, path):
    with ws_connect(port, path=path) as ws:
        msg = ws.recv(timeout=3)
        assert isinstance(msg, str), "JSON HELLO must be a text frame"
        check_hello(json.loads(msg))


@pytest.mark.parametrize("query", ["", "?encoding=json", "?encoding=msgpack&encoding=json"])
def test_json_encoding_variants(port, query):
    with ws_connect(port, query) as ws:
        msg = ws.recv(timeout=3)
        assert isinstance(msg, str), f"{query!r}: expected a text (JSON) HELLO, got {type(msg)}"
        check_hello(json.loads(msg))


def test_heartbeat_interval_setting(spawn):
    s = spawn("--heartbeat-interval", "30000")
    with ws_connect(s.port) as ws:
        check_hello(json.loads(ws.recv(timeout=3)), 30000)


@pytest.mark.parametrize("query", ["?encoding=msgpack", "?encoding=json&encoding=msgpack"])
def test_hello_msgpack(port, query):
    with ws_connect(port, query) as ws:
        msg = ws.recv(timeout=3)
        assert isinstance(msg, bytes), "msgpack HELLO must be a binary frame"
        check_hello(msgpack.unpackb(msg, raw=False))


def test_hello_msgpack_raw_frame(port):
    conn, _, hello = open_ws(port, "/gateway/websocket?encoding=msgpack")
    with conn:
        assert hello.opcode == OP_BINARY and hello.fin and hello.rsv == 0 and not hello.masked
        check_hello(msgpack.unpackb(hello.payload, raw=False))


def test_hello_json_raw_frame(port):
    conn, _, hello = open_ws(port)
    with conn:
        assert hello.opcode == OP_TEXT and hello.fin and hello.rsv == 0 and not hello.masked
        check_hello(json.loads(hello.payload.decode("utf-8")))


@pytest.mark.parametrize("query", ["?encoding=etf", "?encoding=", "?encoding=JSON", "?encoding=xml"])
def test_bad_encoding_403(port, query):
    with RawConn.open(port) as c:
        c.send(upgrade_request("/gateway/websocket" + query, key=new_key()))
        r = c.read_response()
    assert r.status == 403, f"{query!r}: expected 403, got {r.status}"
    assert r.body == b""
    assert r.header("upgrade") is None and r.header("sec-websocket-accept") is None


def test_accept_key_rfc6455_example(port):
    with RawConn.open(port) as c:
        c.send(upgrade_request(key="dGhlIHNhbXBsZSBub25jZQ=="))
        r = c.read_response()
        assert r.status == 101
        # RFC 6455 section 1.3: SHA-1 = b3 7a 4f 2c c0 62 4f 16 90 f6 46 06 cf 38 59 45 b2 be c4 ea.
        assert r.header("sec-websocket-accept") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        assert r.header("upgrade").lower() == "websocket"
        assert "upgrade" in r.header("connection").lower()
        assert accept_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_permessage_deflate_not_negotiated(port):
    with RawConn.open(port) as c:
        c.send(upgrade_request(key=new_key(), extra=[
            ("Sec-WebSocket-Extensions", "permessage-deflate; client_max_window_bits")]))
        r = c.read_response()
        assert r.status == 101
        assert r.header_all("sec-websocket-extensions") == []
        hello = c.read_frame()
        assert hello.rsv == 0, "HELLO compressed although no extension was negotiated"
        check_hello(json.loads(hello.payload))


def test_non_get_upgrade_400(port):
    with RawConn.open(port) as c:
        c.send(upgrade_request(method="POST", key=new_key(), extra=[("Content-Length", "0")]))
        assert c.read_response().status == 400


def test_get_without_upgrade_headers_400(port):
    with RawConn.open(port) as c:
        c.send(upgrade_request(upgrade=False, key=None, version=None))
        assert c.read_response().status == 400


def test_wrong_websocket_version_426(port):
    with RawConn.open(port) as c:
        c.send(upgrade_request(key=new_key(), version="8"))
        r = c.read_response()
    assert r.status == 426
    assert r.header("sec-websocket-version") == "13"


@pytest.mark.parametrize("key", [None, "", "abc", "dGhlIHNhbXBsZSBub25jZQ", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"],
                         ids=["missing", "empty", "short", "unpadded", "decodes-to-27-bytes"])
def test_bad_websocket_key_400(port, key):
    with RawConn.open(port) as c:
        c.send(upgrade_request(key=key))
        r = c.read_response()
    assert r.status == 400, f"key {key!r}: expected 400, got {r.status}"


# ---------------------------------------------------------------- open connection

def test_connection_stays_open_and_answers_pings(port):
    with ws_connect(port) as ws:
        ws.recv(timeout=3)
        with pytest.raises(TimeoutError):
            ws.recv(timeout=1.0)
        pong = ws.ping(b"are you there")
        assert pong.wait(3), "no pong for a websockets ping()"
        ws.send("text under the limit")
        ws.send(b"\x00binary under the limit")
        assert ws.ping(b"again").wait(3)


def test_raw_ping_pong_same_payload(port):
    conn, _, _ = open_ws(port)
    with conn:
        for payload in (b"", b"x", bytes(range(125))):
            conn.send(ws_frame(OP_PING, payload))
            f = conn.read_frame(3)
            assert f.opcode == OP_PONG and f.payload == payload and f.fin and not f.masked


def test_close_handshake_1000(port):
    conn, _, _ = open_ws(port)
    with conn:
        conn.send(ws_frame(OP_CLOSE, close_payload(1000, b"bye")))
        expect_close(conn, 1000)


def test_close_handshake_websockets_client(port):
    ws = ws_connect(port)
    ws.recv(timeout=3)
    ws.close(1000)
    assert ws.protocol.close_rcvd is not None, "server did not answer the close frame"
    assert ws.protocol.close_rcvd.code == 1000


# ---------------------------------------------------------------- protocol violations

@pytest.mark.parametrize("frame,code", [
    (ws_frame(OP_TEXT, b"hi", mask=False), 1002),
    (ws_frame(OP_TEXT, b"hi", rsv=4), 1002),
    (ws_frame(OP_BINARY, b"hi", rsv=2), 1002),
    (ws_frame(3, b"hi"), 1002),
    (ws_frame(0xB, b"hi"), 1002),
    (ws_frame(OP_PING, b"p" * 126), 1002),
    (ws_frame(OP_PING, b"p", fin=False), 1002),
    (ws_frame(OP_CONT, b"orphan continuation"), 1002),
    (ws_frame(OP_TEXT, b"\xc0\x80"), 1007),
    (ws_frame(OP_TEXT, b"ok \xed\xa0\x80"), 1007),
    (ws_frame(OP_CLOSE, b"\x03"), 1002),
], ids=["unmasked", "rsv1", "rsv2", "opcode3", "opcode11", "ping-126", "fragmented-ping", "orphan-cont",
        "utf8-c080", "utf8-surrogate", "close-1-byte"])
def test_protocol_violation_closes(port, frame, code):
    conn, _, _ = open_ws(port)
    with conn:
        conn.send(frame)
        expect_close(conn, code)
    assert_still_serving(port)


def test_invalid_utf8_split_across_fragments_1007(port):
    conn, _, _ = open_ws(port)
    with conn:
        conn.send(ws_frame(OP_TEXT, b"euro: \xe2\x82", fin=False))
        conn.send(ws_frame(OP_CONT, b"A rest", fin=True))
        expect_close(conn, 1007)


def test_valid_utf8_split_across_fragments_accepted(port):
    """A text message whose multi-byte character is split between fragments
    reaches the gateway intact: the IDENTIFY inside it is answered with READY
    carrying the same id."""
    conn, _, _ = open_ws(port)
    with conn:
        message = json.dumps({"op": 1, "d": {"client_id": "euro-\u20ac", "application_id": "app"}},
                             ensure_ascii=False).encode()
        cut = message.index("\u20ac".encode()) + 2  # inside the 3-byte euro sign
        conn.send(ws_frame(OP_TEXT, message[:cut], fin=False))
        conn.send(ws_frame(OP_CONT, message[cut:], fin=True))
        ready = json.loads(conn.read_frame(3).payload)
        assert ready["op"] == 2 and ready["d"]["client_id"] == "euro-\u20ac"
        conn.send(ws_frame(OP_PING, b"after"))
        f = conn.read_frame(3)
        assert f.opcode == OP_PONG and f.payload == b"after"



def test_new_data_frame_inside_fragmented_message_1002(port):
    conn, _, _ = open_ws(port)
    with conn:
        conn.send(ws_frame(OP_TEXT, b"first", fin=False))
        conn.send(ws_frame(OP_TEXT, b"second", fin=True))
        expect_close(conn, 1002)


def test_frame_over_max_size_1009_from_header_alone(spawn):
    s = spawn("--max-frame-size", "1000")
    conn, _, _ = open_ws(s.port)
    with conn:
        conn.send(ws_frame(OP_BINARY, b"", length=2000))  # header only, no payload
        expect_close(conn, 1009)
    assert_still_serving(s.port)


def test_frame_over_max_size_1009_with_payload(spawn):
    s = spawn("--max-frame-size", "1000")
    conn, _, _ = open_ws(s.port)
    with conn:
        try:
            conn.send(ws_frame(OP_BINARY, b"z" * 2000))
        except (BrokenPipeError, ConnectionResetError):
            pass
        expect_close(conn, 1009)


def test_fragments_summing_over_max_size_1009(spawn):
    s = spawn("--max-frame-size", "1000")
    conn, _, _ = open_ws(s.port)
    with conn:
        conn.send(ws_frame(OP_BINARY, b"a" * 600, fin=False))
        conn.send(ws_frame(OP_CONT, b"b" * 600, fin=True))
        expect_close(conn, 1009)


def padded(frame: dict, size: int) -> bytes:
    """`frame` as JSON, padded through an extra "pad" member to exactly `size` bytes."""
    frame = dict(frame, pad="")
    base = len(json.dumps(frame, separators=(",", ":")).encode())
    frame["pad"] = "p" * (size - base)
    data = json.dumps(frame, separators=(",", ":")).encode()
    assert len(data) == size
    return data


def test_messages_under_limit_fragmented_with_interleaved_ping(spawn):
    s = spawn("--max-frame-size", "1000")
    conn, _, _ = open_ws(s.port)
    with conn:
        # Exactly at the limit: 1000 bytes in three fragments, a ping in between.
        identify = padded({"op": 1, "d": {"client_id": "c", "application_id": "a"}}, 1000)
        conn.send(ws_frame(OP_TEXT, identify[:400], fin=False))
        conn.send(ws_frame(OP_PING, b"mid-text"))
        conn.send(ws_frame(OP_CONT, identify[400:800], fin=False))
        conn.send(ws_frame(OP_CONT, identify[800:], fin=True))
        f = conn.read_frame(3)
        assert f.opcode == OP_PONG and f.payload == b"mid-text"
        f = conn.read_frame(3)
        assert json.loads(f.payload)["op"] == 2, f.payload  # READY: the message arrived whole
        # Korean text split inside a character, with a ping between the halves.
        update = json.dumps({"op": 4, "t": "UPDATE_METADATA",
                             "d": {"name": {"type": "string", "value": "\ud55c\uae00 " * 10}}},
                            ensure_ascii=False).encode()
        cut = update.index("\ud55c".encode()) + 1
        conn.send(ws_frame(OP_TEXT, update[:cut], fin=False))
        conn.send(ws_frame(OP_PING, b"mid-korean"))
        conn.send(ws_frame(OP_CONT, update[cut:], fin=True))
        f = conn.read_frame(3)
        assert f.opcode == OP_PONG and f.payload == b"mid-korean"
        # A single frame exactly at the limit (a valid update: no reply).
        conn.send(ws_frame(OP_TEXT, padded({"op": 4, "t": "UPDATE_METADATA", "d": {}}, 1000)))
        with pytest.raises(TimeoutError):
            conn.read_frame(0.7)  # nothing more: still open, no close
        conn.send(ws_frame(OP_PING, b"still"))
        f = conn.read_frame(3)
        assert f.opcode == OP_PONG and f.payload == b"still"



def test_byte_by_byte_frames(port):
    conn, _, _ = open_ws(port)
    with conn:
        identify = json.dumps({"op": 1, "d": {"client_id": "slow", "application_id": "app"}}).encode()
        data = ws_frame(OP_TEXT, identify) + ws_frame(OP_PING, b"dribble")
        for i in range(len(data)):
            conn.send(data[i:i + 1])
            time.sleep(0.002)
        ready = json.loads(conn.read_frame(3).payload)
        assert ready["op"] == 2 and ready["d"]["client_id"] == "slow"
        f = conn.read_frame(3)
        assert f.opcode == OP_PONG and f.payload == b"dribble"



def test_other_connections_unaffected_by_violations(port):
    with ws_connect(port) as good:
        good.recv(timeout=3)
        # A stalled half frame on one connection...
        stalled, _, _ = open_ws(port)
        stalled.send(ws_frame(OP_BINARY, b"", length=5000)[:3])
        assert good.ping(b"1").wait(3)
        # ...and violations on others.
        for bad_frame, code in [(ws_frame(OP_TEXT, b"x", mask=False), 1002), (ws_frame(OP_TEXT, b"\xff"), 1007)]:
            bad, _, _ = open_ws(port)
            with bad:
                bad.send(bad_frame)
                expect_close(bad, code)
            assert good.ping(b"2").wait(3), "good connection stopped answering after another's violation"
        stalled.close()
        assert good.ping(b"3").wait(3)


# ---------------------------------------------------------------- idle timeout

def test_idle_timeout_closes_with_1000_and_no_reason(spawn):
    """protocol.md §5.3/§5.4: idle → close code 1000, empty reason."""
    s = spawn("--idle-timeout", "1000")
    conn, _, _ = open_ws(s.port)
    with conn:
        start = time.monotonic()
        f = conn.read_frame(2.5)
        elapsed = time.monotonic() - start
        assert f.opcode == OP_CLOSE, f
        assert f.header + f.payload == b"\x88\x02\x03\xe8", f"idle close frame must be 88 02 03 e8, got {f.header + f.payload!r}"
        assert 0.8 <= elapsed <= 2.5, f"idle close after {elapsed:.2f}s with IDLE_TIMEOUT=1000"
        assert conn.wait_closed(2.0), "TCP not closed after the idle close frame"


def test_idle_timeout_websockets_client(spawn):
    s = spawn("--idle-timeout", "1000")
    with ws_connect(s.port) as ws:
        ws.recv(timeout=3)
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=2.5)
        assert ws.protocol.close_rcvd is not None and ws.protocol.close_rcvd.code == 1000


def test_pinging_client_not_idle(spawn):
    s = spawn("--idle-timeout", "1000")
    with ws_connect(s.port) as ws:
        ws.recv(timeout=3)
        # Before IDENTIFY the deadline counts from HELLO and nothing extends it
        # (issue 10); after it, pings count as traffic (protocol.md §1.2).
        ws.send('{"op":1,"d":{"client_id":"pinger","application_id":"pinger"}}')
        ws.recv(timeout=3)
        end = time.monotonic() + 2.0
        while time.monotonic() < end:
            assert ws.ping().wait(1), "no pong while pinging every 300 ms"
            time.sleep(0.3)
        assert ws.ping(b"final").wait(1)
        assert ws.protocol.close_rcvd is None


def test_close_frame_reply_after_server_close_is_harmless(spawn):
    # Server-initiated idle close followed by the client's echo: no crash.
    s = spawn("--idle-timeout", "1000")
    conn, _, _ = open_ws(s.port)
    with conn:
        f = conn.read_frame(2.5)
        assert f.opcode == OP_CLOSE
        try:
            conn.send(ws_frame(OP_CLOSE, b""))
        except (BrokenPipeError, ConnectionResetError):
            pass
        try:
            conn.wait_closed(2.0)
        except Closed:
            pass
    assert_still_serving(s.port)
