"""Hostile gateway clients (issue 10): one client must never freeze, crash or
bloat the node for everyone else. Each test runs the real binary and checks
a bound the node enforces; every one of them fails without its fix (noted
per test).

Timing bounds here are generous ceilings that the quadratic or unbounded
behaviour misses by an order of magnitude (seconds to minutes), not speed
measurements; BENCHMARKS.md has the measured pauses."""

from __future__ import annotations

import json
import socket
import threading
import time

import msgpack
import pytest

from gateway_client import GatewayClient, typed, uid
from sy_helpers import RawConn, expect_close, open_ws, rss_kib, ws_frame, Closed, OP_CLOSE, OP_TEXT

from test_rest_query import post




class Prober:
    """A second, well-behaved client that heartbeats in a loop and records the
    longest round trip: the pause every other client saw."""

    def __init__(self, port: int):
        self.client = GatewayClient(port)
        self.client.identify(uid("probe"))
        self.worst = 0.0
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            start = time.monotonic()
            try:
                self.client.send({"op": 5, "d": {}})
                self.client.recv_until(lambda f: f.get("op") == 6, timeout=60)
            except Exception as e:  # noqa: BLE001 - recorded and asserted by the test
                self.errors.append(repr(e))
                return
            self.worst = max(self.worst, time.monotonic() - start)
            time.sleep(0.02)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=70)
        self.client.close()


def many_keys_metadata(n: int) -> dict:
    return {f"k{i}": {"type": "integer", "value": i} for i in range(n)}


# ---------------------------------------------------------------- 1. linear work per input

def test_identify_with_100k_keys_does_not_stall_the_loop(spawn):
    """100,000 distinct metadata keys in one IDENTIFY (about 3 MiB): built
    with a hash index, so the node answers in well under a second and the
    other client never waits long. Without the index (linear search per
    member) this took minutes in a debug build."""
    s = spawn("--identify-max-size", str(16 << 20), "--metadata-max-keys", "1000000",
              "--metadata-max-size", str(64 << 20), "--metadata-queue-interval", "0")
    with Prober(s.port) as probe:
        c = GatewayClient(s.port)
        app = uid("wide")
        frame = {"op": 1, "d": {"client_id": "w", "application_id": app, "metadata": many_keys_metadata(100_000)}}
        start = time.monotonic()
        c.send(frame)
        ready = c.recv_frame(timeout=60)
        took = time.monotonic() - start
        assert ready["op"] == 2, ready
        ids = GatewayClient(s.port)
        ids.identify(uid("asker"))
        found = ids.query_nodes({"application": app, "ops": [{"path": "/k99999", "op": "$eq", "to": {"value": 99999}}]})
        assert [n["client_id"] for n in found["d"]["nodes"]] == ["w"]
        time.sleep(0.2)
    assert not probe.errors, probe.errors
    assert took < 10, f"IDENTIFY with 100k keys took {took:.1f}s"
    assert probe.worst < 10, f"another client waited {probe.worst:.1f}s"


def test_update_with_20k_keys_is_refused_by_the_budget_at_once(spawn):
    """Default budget (1024 keys): a 20,000-key UPDATE_METADATA (120,000
    values, under MAX_FRAME_VALUES) is refused from the tape before anything
    is converted, with a clear op 3."""
    s = spawn()
    with Prober(s.port) as probe:
        c = GatewayClient(s.port)
        c.identify(uid("wide"))
        c.dispatch("UPDATE_METADATA", many_keys_metadata(20_000))
        d = c.expect_invalid(timeout=30)
        assert d == {"error": "invalid metadata", "extra_info": "too many metadata keys: 20000 (at most 1024 per client)"}
        c.heartbeat()
    assert not probe.errors and probe.worst < 5


@pytest.mark.parametrize("encoding", ["json", "msgpack"])
def test_values_outside_the_payload_are_bounded(spawn, encoding):
    """MAX_FRAME_VALUES: a frame whose values outside a SEND/BROADCAST payload
    number more than the limit is refused after that many (op 8, closed, a
    log line), whether they are metadata far over the key budget or an
    unknown field; the same values as a SEND payload are one value and are
    delivered. Without the limit the 16 MiB forms of these frames cost
    every other client a pause of ~300 ms and the node ~200 MiB."""
    # A small metadata budget, so that the limit is not raised to cover it.
    s = spawn("--max-frame-values", "50000", "--metadata-max-size", "65536")
    app = uid("bound")
    receiver = GatewayClient(s.port, encoding=encoding)
    receiver.identify(app, client_id="r")
    big = {f"k{i}": i for i in range(60_000)}  # 120,001 values
    limit_error = {"error": "decode: more than 50000 values outside the payload (MAX_FRAME_VALUES)", "extra_info": None}
    with Prober(s.port) as probe:
        c = GatewayClient(s.port, encoding=encoding)
        c.identify(uid("sender"))
        c.dispatch("SEND", {"target": {"application": app, "ops": []}, "nonce": 1, "payload": big})
        got = receiver.recv_until(lambda f: f.get("t") == "SEND", timeout=30)
        assert got["d"]["payload"] == big and got["d"]["nonce"] == 1

        c.dispatch("SEND", {"target": {"application": app, "ops": []}, "payload": 1, "junk": big})
        assert c.expect_error_close(timeout=30) == limit_error

        c = GatewayClient(s.port, encoding=encoding)
        c.identify(uid("wide"))
        c.dispatch("UPDATE_METADATA", many_keys_metadata(20_000))
        assert c.expect_error_close(timeout=30) == limit_error
        receiver.heartbeat()
    assert not probe.errors and probe.worst < 5, (probe.worst, probe.errors)
    assert "frame over MAX_FRAME_VALUES" in s.stderr()


def test_rest_query_body_with_60k_keys_is_linear(spawn):
    """A 60,000-member REST query body (under the 1 MiB body limit) took 46 s
    of loop time in a release build before objects had a hash index."""
    s = spawn("--max-body-size", str(4 << 20))
    app = uid("rest")
    body = {"application": app, "ops": []}
    body.update({f"x{i}": i for i in range(60_000)})
    with Prober(s.port) as probe:
        start = time.monotonic()
        r = post(s.port, json.dumps(body))
        took = time.monotonic() - start
    assert r.status == 200, r.raw_head
    assert r.json() == []
    assert took < 10 and probe.worst < 10 and not probe.errors, (took, probe.worst, probe.errors)


def test_largest_frame_of_small_keys_keeps_others_served(spawn):
    """A SEND whose payload is a 16 MiB object of small keys (the largest
    frame MAX_FRAME_SIZE allows): decoded in linear time, answered with
    no_route, and a heartbeating client is still served throughout."""
    s = spawn()
    payload = {f"{i:x}": 1 for i in range(1_300_000)}
    frame = json.dumps({"op": 4, "t": "SEND", "d": {"target": {"application": "nobody", "ops": []}, "payload": payload}})
    assert len(frame) < 16 << 20
    with Prober(s.port) as probe:
        c = GatewayClient(s.port)
        c.identify(uid("big"))
        c.send_raw(frame)
        d = c.expect_invalid(timeout=60)
        assert d["error"] == "no_route"
    assert not probe.errors, probe.errors
    assert probe.worst < 10, f"another client waited {probe.worst:.1f}s"


# ---------------------------------------------------------------- 2. per-client budgets

def test_identify_metadata_over_the_key_budget_is_fatal(spawn):
    s = spawn("--metadata-max-keys", "10")
    c = GatewayClient(s.port)
    c.send({"op": 1, "d": {"client_id": "c", "application_id": uid("a"), "metadata": many_keys_metadata(11)}})
    d = c.expect_error_close()
    assert d == {"error": "initial metadata: invalid",
                      "extra_info": {"metadata": "too many metadata keys: 11 (at most 10 per client)"}}
    assert "metadata over budget" in s.stderr()


def test_one_value_over_its_budget(spawn):
    """A string (or list, or map) larger than METADATA_MAX_VALUE_SIZE: op 3
    naming the key, nothing applied."""
    s = spawn("--metadata-max-value-size", "100000", "--metadata-queue-interval", "0")
    c = GatewayClient(s.port)
    app = uid("v")
    c.identify(app, metadata=typed(small=("string", "ok")))
    c.dispatch("UPDATE_METADATA", typed(big=("string", "x" * 100_000), other=("integer", 1)))
    d = c.expect_invalid()
    assert d["error"] == "invalid metadata"
    assert d["extra_info"].startswith("big: value too large: 100051 bytes stored (at most 100000)"), d
    c.dispatch("UPDATE_METADATA", typed(lst=("list", list(range(5000)))))  # 24 + 3 + 24 + 5000*24 bytes
    d = c.expect_invalid()
    assert d["extra_info"].startswith("lst: value too large"), d
    nodes = c.query_nodes({"application": app, "ops": []})["d"]["nodes"]
    assert set(nodes[0]["metadata"]) >= {"small"} and "other" not in nodes[0]["metadata"], "partially applied"


def test_restricted_client_cannot_hold_a_huge_msgpack_list(spawn):
    """The observed attack: a restricted client (wrong password) with a
    MessagePack list of millions of integers. Before IDENTIFY the frame is
    over IDENTIFY_MAX_SIZE (1009); after it, UPDATE_METADATA is refused by
    MAX_FRAME_VALUES once 131,072 values are decoded (before, by the value
    budget after decoding all of them). Either way the node's memory stays
    flat."""
    s = spawn(env={"AUTH": "secret"})
    before = rss_kib(s.pid)
    huge = list(range(100, 128)) * 200_000  # 5.6 M positive fixints: 5.6 MB of msgpack
    conn, _, _ = open_ws(s.port, path="/gateway/websocket?encoding=msgpack")
    body = msgpack.packb({"op": 1, "d": {"client_id": "r", "application_id": "a", "auth": "wrong",
                                        "metadata": {"l": {"type": "list", "value": huge}}}})
    try:
        conn.send(ws_frame(2, body))
    except (BrokenPipeError, ConnectionResetError):
        pass
    expect_close(conn, 1009, timeout=10)
    c = GatewayClient(s.port, encoding="msgpack")
    assert c.identify(uid("r"), auth="wrong")["d"]["restricted"] is True
    c.send({"op": 4, "t": "UPDATE_METADATA", "d": {"l": {"type": "list", "value": huge}}})
    d = c.expect_error_close(timeout=20)
    assert d["error"] == "decode: more than 131072 values outside the payload (MAX_FRAME_VALUES)", d
    after = rss_kib(s.pid)
    assert after - before < 64 * 1024, f"RSS grew {after - before} KiB"
    GatewayClient(s.port, encoding="msgpack").identify(uid("after"), auth="secret")


def test_total_metadata_budget_across_updates(spawn):
    """Each update is within the per-value budget, the sum is not: the update
    that would cross METADATA_MAX_SIZE is refused whole, earlier ones stay,
    and pending (not yet applied) updates count (a long flush interval)."""
    s = spawn("--metadata-max-size", "200000", "--metadata-max-value-size", "100000",
              "--metadata-queue-interval", "60000")
    c = GatewayClient(s.port)
    c.identify(uid("t"))
    for i in range(3):
        c.dispatch("UPDATE_METADATA", typed(**{f"s{i}": ("string", "y" * 60_000)}))
    c.dispatch("UPDATE_METADATA", typed(s3=("string", "y" * 60_000), tiny=("integer", 1)))
    d = c.expect_invalid()
    assert d["extra_info"].startswith("metadata too large: "), d
    assert "(at most 200000 per client)" in d["extra_info"]
    # Overwriting a key replaces its cost instead of adding to it.
    c.dispatch("UPDATE_METADATA", typed(s0=("string", "z" * 60_000)))
    c.expect_no_frame(0.3)


def test_pending_updates_are_bounded(spawn):
    """A client that sends updates faster than the flush applies them holds
    one projected copy, not a list of every update: 400 updates of 50 KB new
    keys each would be 20 MB; past the 1 MiB default the rest are refused."""
    s = spawn("--metadata-queue-interval", "60000")
    before = rss_kib(s.pid)
    c = GatewayClient(s.port)
    c.identify(uid("p"))
    refused = 0
    for i in range(400):
        c.dispatch("UPDATE_METADATA", typed(**{f"k{i}": ("string", "w" * 50_000)}))
    for f in c.drain(within=1.0):
        if f.get("op") == 3 and f["d"]["extra_info"].startswith("metadata too large"):
            refused += 1
    assert refused >= 370, refused
    assert rss_kib(s.pid) - before < 16 * 1024


@pytest.mark.parametrize("field,value,text", [
    ("application_id", "a" * 256, "application_id: longer than 255 bytes"),
    ("client_id", "c" * 256, "client_id: longer than 255 bytes"),
    ("namespace", "n" * 256, "namespace: longer than 255 bytes"),
    ("ip", "1" * 1025, "ip: longer than 1024 bytes"),
    ("tags", [f"t{i}" for i in range(65)], "tags: more than 64 tags"),
    ("tags", ["t" * 256], "tags: a tag is longer than 255 bytes"),
])
def test_identity_fields_have_bounds(spawn, field, value, text):
    s = spawn()
    c = GatewayClient(s.port)
    d = {"client_id": "c", "application_id": "a"}
    d[field] = value
    c.send({"op": 1, "d": d})
    assert c.expect_error_close()["error"] == text


def test_long_ids_within_bounds_are_accepted(spawn):
    s = spawn()
    c = GatewayClient(s.port)
    r = c.identify("a" * 255, client_id="c" * 255, namespace="n" * 255, tags=["t" * 255] * 64)
    assert r["op"] == 2


def test_eight_mib_application_id_cannot_flood_subscribers(spawn):
    """The observed attack: 8 MiB application ids in CLIENT_CONNECTED made
    every subscriber a slow consumer. Refused before IDENTIFY is read."""
    s = spawn()
    sub = GatewayClient(s.port)
    sub.identify(uid("sub"), receive_client_updates=True)
    for _ in range(4):
        conn, _, _ = open_ws(s.port)
        body = json.dumps({"op": 1, "d": {"client_id": "c", "application_id": "x" * (8 << 20)}}).encode()
        try:
            conn.send(ws_frame(1, body))
        except (BrokenPipeError, ConnectionResetError):
            pass
        expect_close(conn, 1009, timeout=10)
    sub.send({"op": 5, "d": {}})
    sub.recv_until(lambda f: f.get("op") == 6)
    assert "slow consumer" not in s.stderr()


# ---------------------------------------------------------------- 3. deadlines

def test_no_identify_within_the_deadline(spawn):
    s = spawn("--identify-timeout", "800")
    c = GatewayClient(s.port)
    start = time.monotonic()
    assert c.expect_error_close(timeout=5)["error"] == "identify took too long"
    assert 0.7 < time.monotonic() - start < 3
    assert "did not identify in time" in s.stderr()


def trickle_until_closed(conn: RawConn, data: bytes, interval: float, limit: float) -> float | None:
    """Sends `data` one byte every `interval` s, reading whatever the server
    sends; returns the seconds until the server closed the TCP connection,
    or None if it was still open after `limit` s."""
    start = time.monotonic()
    conn.sock.setblocking(False)
    i = 0
    while time.monotonic() - start < limit:
        if i < len(data):
            try:
                conn.sock.send(data[i:i + 1])
            except (BrokenPipeError, ConnectionResetError):
                return time.monotonic() - start
            except BlockingIOError:
                pass
            i += 1
        deadline = time.monotonic() + interval
        while time.monotonic() < deadline:
            try:
                if conn.sock.recv(65536) == b"":
                    return time.monotonic() - start
            except BlockingIOError:
                time.sleep(0.01)
            except ConnectionResetError:
                return time.monotonic() - start
    return None


def test_trickled_partial_frame_before_identify_is_cut_off(spawn):
    """One byte every 100 ms of a never-finished frame, no IDENTIFY: before,
    every byte re-armed the idle deadline and the connection lived forever
    (with the default IDLE_TIMEOUT, IDENTIFY_TIMEOUT is the shorter)."""
    s = spawn("--identify-timeout", "1000")
    conn, _, _ = open_ws(s.port)
    closed = trickle_until_closed(conn, ws_frame(1, b"x" * 5000), 0.1, 6)
    assert closed is not None and closed < 3, closed


def test_pings_before_identify_do_not_extend_the_deadline(spawn):
    """Whole ping frames before IDENTIFY do not re-arm anything either."""
    s = spawn("--identify-timeout", "1000")
    conn, _, _ = open_ws(s.port)
    start = time.monotonic()
    while time.monotonic() - start < 6:
        try:
            conn.send(ws_frame(9, b"p"))
        except (BrokenPipeError, ConnectionResetError):
            break
        if conn.wait_closed(0.1):
            break
    assert time.monotonic() - start < 3


def test_trickled_partial_frame_after_identify_hits_the_idle_deadline(spawn):
    """Identified, heartbeat deadline far away: whole frames, not bytes, keep
    the connection alive (protocol.md §5.3)."""
    s = spawn("--idle-timeout", "1000")
    conn, _, _ = open_ws(s.port)
    conn.send(ws_frame(1, json.dumps({"op": 1, "d": {"client_id": "t", "application_id": "t"}}).encode()))
    assert json.loads(conn.read_frame().payload)["op"] == 2
    closed = trickle_until_closed(conn, ws_frame(1, b"y" * 5000), 0.1, 6)
    assert closed is not None and closed < 3, closed


def test_message_size_before_identify(spawn):
    s = spawn("--identify-max-size", "4096")
    conn, _, _ = open_ws(s.port)
    conn.send(ws_frame(1, b"{" + b" " * 5000 + b"}"))
    expect_close(conn, 1009)
    # After IDENTIFY the full MAX_FRAME_SIZE applies.
    c = GatewayClient(s.port)
    c.identify(uid("big"))
    c.dispatch("SEND", {"target": {"application": "nobody", "ops": []}, "payload": "p" * 100_000})
    assert c.expect_invalid()["error"] == "no_route"


def test_heartbeat_deadline_is_a_timer(spawn):
    """A client that only sends WebSocket pings (which keep the idle timer
    happy) is dropped 1.5 heartbeat intervals after its last HEARTBEAT."""
    s = spawn("--heartbeat-interval", "1000", "--idle-timeout", "60000")
    conn, _, _ = open_ws(s.port)
    conn.send(ws_frame(1, json.dumps({"op": 1, "d": {"client_id": "p", "application_id": "p"}}).encode()))
    assert json.loads(conn.read_frame().payload)["op"] == 2
    start = time.monotonic()
    got = None
    while time.monotonic() - start < 5:
        conn.send(ws_frame(9, b"hi"))
        try:
            f = conn.read_frame(0.2)
        except TimeoutError:
            continue
        except Closed:
            break
        if f.opcode == OP_TEXT:
            got = json.loads(f.payload)
            break
    elapsed = time.monotonic() - start
    assert got is not None and got["op"] == 8 and got["d"]["error"] == "heartbeat took too long", got
    assert 1.3 < elapsed < 2.5, elapsed


def test_heartbeats_keep_a_client_alive_past_the_deadline(spawn):
    s = spawn("--heartbeat-interval", "1000")
    c = GatewayClient(s.port)
    c.identify(uid("hb"))
    for _ in range(6):
        time.sleep(0.5)
        c.heartbeat()


# ---------------------------------------------------------------- 4. slow consumers in real memory

def test_ping_flood_never_read_is_cut_off_by_held_memory(spawn):
    """Empty pings, never reading the 2-byte pongs: each queued pong holds
    ~64 bytes of allocation, so counting payload bytes alone let the client
    hold ~30x MAX_PENDING_BYTES. Now it is cut off near the bound."""
    s = spawn("--max-pending-bytes", str(1 << 20), "--max-frame-size", "1000")
    base = rss_kib(s.pid)
    conn, _, _ = open_ws(s.port, rcvbuf=4096)
    ping = ws_frame(9, b"", mask_key=b"\x01\x02\x03\x04")
    burst = ping * 10_000
    peak = base
    conn.sock.settimeout(0.5)
    deadline = time.monotonic() + 30
    try:
        while time.monotonic() < deadline and "slow consumer" not in s.stderr():
            try:
                conn.sock.sendall(burst)
            except socket.timeout:
                pass
            peak = max(peak, rss_kib(s.pid))
    except (BrokenPipeError, ConnectionResetError):
        pass
    finally:
        conn.close()
    time.sleep(0.2)
    assert "slow consumer" in s.stderr(), "the ping flooder was never cut off"
    assert peak - base < 8 * 1024, f"node held {peak - base} KiB for a 1 MiB bound"
    assert_alive_and_serving(s)


def assert_alive_and_serving(s):
    assert s.alive(), s.stderr()
    c = GatewayClient(s.port)
    c.identify(uid("after"))
    c.heartbeat()
    c.close()


# ---------------------------------------------------------------- 6. the authentication limiter

def test_requests_without_credentials_are_not_strikes(spawn):
    """20 REST calls (and /metrics) with no Authorization header used to lock
    the right password out for a minute."""
    s = spawn("--auth-failures-per-minute", "3", env={"AUTH": "pw"})
    for _ in range(20):
        assert post(s.port, "{}", headers={"Content-Type": "application/json"}).status == 401
    r = post(s.port, json.dumps({"application": "x", "ops": []}),
             headers={"Content-Type": "application/json", "Authorization": "pw"})
    assert r.status == 200, r.raw_head
    c = GatewayClient(s.port)
    assert c.identify(uid("a"), auth="pw")["d"]["restricted"] is False


def test_wrong_credentials_are_still_limited(spawn):
    s = spawn("--auth-failures-per-minute", "3", env={"AUTH": "pw"})
    for _ in range(3):
        assert post(s.port, "{}", headers={"Content-Type": "application/json", "Authorization": "nope"}).status == 401
    r = post(s.port, json.dumps({"application": "x", "ops": []}),
             headers={"Content-Type": "application/json", "Authorization": "pw"})
    assert r.status == 401
    c = GatewayClient(s.port)
    c.send({"op": 1, "d": {"client_id": "c", "application_id": "a", "auth": "pw"}})
    assert c.expect_error_close()["error"] == "too many failed authentication attempts; try again later"
    assert "too many failed authentication attempts" in s.stderr()
