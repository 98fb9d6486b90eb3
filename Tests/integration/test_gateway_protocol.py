"""Gateway lifecycle and error conformance (protocol.md §2, §4–§7)."""

from __future__ import annotations

import time

import msgpack
import pytest

from gateway_client import Clients, GatewayClient, now_ms, typed, uid
from gw_fixtures import clients, mod_server, start  # noqa: F401

NO_ID_FIRST = "sent payload with non-identify opcode without identifying first"


def app():
    return uid("app")


# ---------------------------------------------------------------- HELLO (§4.1)


@pytest.mark.parametrize("encoding", ["json", "msgpack"])
def test_hello_shape(clients, encoding):
    before = now_ms()
    c = clients.connect(encoding)
    h = c.hello
    assert set(h) == {"op", "d", "t", "ts"}, h
    assert h["op"] == 0 and h["t"] is None
    assert h["d"] == {"heartbeat_interval": 45000}
    assert isinstance(h["ts"], int) and not isinstance(h["ts"], bool)
    assert before - 5000 <= h["ts"] <= now_ms() + 5000
    assert isinstance(c.last_raw, bytes if encoding == "msgpack" else str)


# ---------------------------------------------------------------- IDENTIFY / READY (§4.2, §4.5)


@pytest.mark.parametrize("encoding", ["json", "msgpack"])
def test_ready_fields(clients, encoding):
    c = clients.connect(encoding)
    before = now_ms()
    r = c.identify(app(), "client-1")
    assert set(r) == {"op", "d", "t", "ts"}
    assert r["t"] is None
    assert r["d"] == {"client_id": "client-1", "restricted": False}
    assert before - 5000 <= r["ts"] <= now_ms() + 5000


def test_identify_without_t_and_ts_and_with_unknown_fields(clients):
    c = clients.connect()
    c.send({"op": 1, "d": {"client_id": "x", "application_id": app(), "etf": True, "whatever": [1]}})
    r = c.recv_frame()
    assert r["op"] == 2 and r["d"] == {"client_id": "x", "restricted": False}


@pytest.mark.parametrize("frame", [
    {"op": 1},
    {"op": 1, "d": None},
    {"op": 1, "d": [1, 2]},
    {"op": 1, "d": "client"},
    {"op": 1, "d": {"application_id": "a"}},
    {"op": 1, "d": {"client_id": "a"}},
    {"op": 1, "d": {"client_id": 5, "application_id": "a"}},
    {"op": 1, "d": {"client_id": "a", "application_id": None}},
], ids=["no-d", "d-null", "d-list", "d-string", "no-client_id", "no-application_id", "int-client_id",
        "null-application_id"])
def test_identify_payload_has_no_data(clients, frame):
    c = clients.connect()
    c.send(frame)
    d = c.expect_error_close()
    assert d == {"error": "payload has no data", "extra_info": None}


@pytest.mark.parametrize("field,value", [
    ("client_id", ""), ("client_id", "a b"), ("client_id", "a\x01b"), ("client_id", "tab\there"),
    ("application_id", ""), ("application_id", "my app"), ("application_id", "x\ny"),
])
def test_identify_id_validation(clients, field, value):
    c = clients.connect()
    d = {"client_id": "ok-client", "application_id": "ok-app"}
    d[field] = value
    c.send({"op": 1, "d": d})
    c.expect_error_close({"error": f"{field}: must be a non-empty string without spaces",
                        "extra_info": None})


def test_identify_validation_order_no_data_before_field_check(clients):
    c = clients.connect()
    c.send({"op": 1, "d": {"client_id": "", "application_id": 7}})
    assert c.expect_error_close()["error"] == "payload has no data"


def test_already_identified(clients):
    a = app()
    c = clients.identified(a, "c1")
    c.send({"op": 1, "d": {"client_id": "c2", "application_id": a}})
    c.expect_error_close({"error": "already identified", "extra_info": None})


def test_already_identified_same_ids(clients):
    a = app()
    c = clients.identified(a, "c1")
    c.send({"op": 1, "d": {"client_id": "c1", "application_id": a}})
    assert c.expect_error_close()["error"] == "already identified"
    # the connection's own registration is gone with it
    q = clients.identified(a, "q")
    assert q.query_ids({"application": a}) == {"q"}


@pytest.mark.parametrize("extra", [{}, {"reconnect": False}, {"reconnect": "true"}])
def test_duplicate_client_id(clients, extra):
    a = app()
    old = clients.identified(a, "dup")
    new = clients.connect()
    new.send({"op": 1, "d": {"client_id": "dup", "application_id": a, **extra}})
    new.expect_error_close({"error": f"dup: already registered for app {a}", "extra_info": None})
    # existing client unaffected
    old.heartbeat()
    assert old.query_ids({"application": a}) == {"dup"}


def test_same_client_id_in_other_application_is_fine(clients):
    clients.identified(app(), "same")
    r = clients.identified(app(), "same").ready
    assert r["d"]["restricted"] is False


def test_reconnect_takeover(clients):
    a = app()
    sub = clients.identified(uid("watch"), "sub", receive_client_updates=True)
    assert sub.recv_frame()["t"] == "CLIENT_CONNECTED"
    old = clients.identified(a, "dup", metadata=typed(gen=("integer", 1)))
    assert sub.recv_frame()["d"]["payload"] == {"app": a}
    new = clients.connect()
    new.send({"op": 1, "d": {"client_id": "dup", "application_id": a, "reconnect": True,
                             "metadata": typed(gen=("integer", 2))}})
    r = new.recv_frame()
    assert r["op"] == 2 and r["d"] == {"client_id": "dup", "restricted": False}, r
    old.expect_error_close({"error": "replaced by a newer connection", "extra_info": None})
    f1 = sub.recv_frame()
    f2 = sub.recv_frame()
    assert (f1["t"], f1["d"]["payload"]) == ("CLIENT_DISCONNECTED", {"app": a}), f1
    assert (f2["t"], f2["d"]["payload"]) == ("CLIENT_CONNECTED", {"app": a}), f2
    sub.expect_no_frame(0.4)
    # the new registration survives the old socket's close and has only its own metadata
    f = new.query_nodes({"application": a})
    nodes = f["d"]["nodes"]
    assert len(nodes) == 1 and nodes[0]["metadata"]["gen"] == 2
    new.heartbeat()


def test_restricted_reconnect_does_not_take_over(clients):
    a = app()
    old = clients.identified(a, "dup")
    new = clients.connect()
    new.send({"op": 1, "d": {"client_id": "dup", "application_id": a, "reconnect": True, "auth": "nope"}})
    new.expect_error_close({"error": f"dup: already registered for app {a}", "extra_info": None})
    old.heartbeat()
    assert old.query_ids({"application": a}) == {"dup"}


# ---------------------------------------------------------------- ops before / after identify (§6.4)


@pytest.mark.parametrize("frame", [
    {"op": 5, "d": {"client_id": "x"}},
    {"op": 5},
    {"op": 4, "t": "SEND", "d": {"target": {}, "payload": 1}},
    {"op": 0, "d": {}},
    {"op": 2, "d": {}},
    {"op": 99, "d": {}},
    {"op": "1", "d": {"client_id": "a", "application_id": "b"}},
    {"op": 1.0, "d": {"client_id": "a", "application_id": "b"}},
    {"d": {"client_id": "a", "application_id": "b"}},
], ids=["heartbeat", "heartbeat-no-d", "dispatch", "op0", "op2", "op99", "op-string", "op-float", "op-missing"])
def test_non_identify_before_identify(clients, frame):
    c = clients.connect()
    c.send(frame)
    c.expect_error_close({"error": NO_ID_FIRST, "extra_info": None})


@pytest.mark.parametrize("op,name", [
    (0, ":hello"), (2, ":ready"), (3, ":invalid"), (6, ":heartbeat_ack"), (7, ":goodbye"), (8, ":error"),
    (9, "nil"), (-1, "nil"), (1000, "nil"), ("4", "nil"), (4.0, "nil"), (1.5, "nil"), (None, "nil"),
    ("missing", "nil"), (True, "nil"),
])
@pytest.mark.parametrize("encoding", ["json", "msgpack"])
def test_invalid_client_op_after_identify(clients, op, name, encoding):
    c = clients.connect(encoding)
    c.identify(app())
    frame = {"d": {}} if op == "missing" else {"op": op, "d": {}}
    c.send(frame)
    c.expect_error_close({"error": f"invalid client op {name}", "extra_info": None})


@pytest.mark.parametrize("identified", [False, True])
@pytest.mark.parametrize("raw", ["[1, 2]", '"hello"', "42", "null", "true"])
def test_top_level_not_a_map(clients, raw, identified):
    c = clients.connect()
    if identified:
        c.identify(app())
    c.send_raw(raw)
    c.expect_error_close({"error": "decode: payload: unrecoverable", "extra_info": None})


@pytest.mark.parametrize("identified", [False, True])
def test_top_level_not_a_map_msgpack(clients, identified):
    c = clients.connect("msgpack")
    if identified:
        c.identify(app())
    c.send_raw(msgpack.packb([1, 2]))
    c.expect_error_close({"error": "decode: payload: unrecoverable", "extra_info": None})


@pytest.mark.parametrize("identified", [False, True])
@pytest.mark.parametrize("raw", ["{not json", "", "{\"op\": 1,}", "abc"])
def test_undecodable_json(clients, raw, identified):
    c = clients.connect()
    if identified:
        c.identify(app())
    c.send_raw(raw)
    d = c.expect_error_close()
    assert isinstance(d["error"], str) and d["error"].startswith("decode: "), d
    assert d["extra_info"] is None


@pytest.mark.parametrize("raw", [b"\xc1", b"\x82\xa2op", b"\x81\xc4\x02\xff\xfe\x01"],
                         ids=["reserved-byte", "truncated", "bin-key-not-utf8"])
def test_undecodable_msgpack(clients, raw):
    c = clients.connect("msgpack")
    c.send_raw(raw)
    d = c.expect_error_close()
    assert d["error"].startswith("decode: "), d
    assert d["extra_info"] is None


@pytest.mark.parametrize("identified", [False, True])
def test_binary_frame_on_json(clients, identified):
    c = clients.connect("json")
    if identified:
        c.identify(app())
    c.send_raw(b'{"op":5,"d":{}}')
    c.expect_error_close({
        "error": "decode: payload: invalid websocket opcode/encoding combo: {binary, json}", "extra_info": None})


@pytest.mark.parametrize("identified", [False, True])
def test_text_frame_on_msgpack(clients, identified):
    c = clients.connect("msgpack")
    if identified:
        c.identify(app())
    c.send_raw('{"op":5,"d":{}}')
    c.expect_error_close({
        "error": "decode: payload: invalid websocket opcode/encoding combo: {text, msgpack}", "extra_info": None})


# ---------------------------------------------------------------- heartbeats (§5.1, §5.2)


@pytest.mark.parametrize("encoding", ["json", "msgpack"])
@pytest.mark.parametrize("frame", [{"op": 5, "d": {"client_id": "whatever"}}, {"op": 5}, {"op": 5, "d": None}],
                         ids=["d", "no-d", "d-null"])
def test_heartbeat_ack(clients, encoding, frame):
    c = clients.connect(encoding)
    c.identify(app(), "hb-client")
    before = now_ms()
    c.send(frame)
    f = c.recv_frame()
    assert set(f) == {"op", "d", "t", "ts"}
    assert f["op"] == 6 and f["t"] is None and f["d"] == {"client_id": "hb-client"}, f
    assert before - 5000 <= f["ts"] <= now_ms() + 5000


def test_heartbeat_updates_last_heartbeat_time(clients):
    a = app()
    c = clients.identified(a)
    t0 = c.query_nodes({"application": a})["d"]["nodes"][0]["metadata"]["last_heartbeat_time"]
    time.sleep(0.05)
    c.heartbeat()
    t1 = c.query_nodes({"application": a})["d"]["nodes"][0]["metadata"]["last_heartbeat_time"]
    assert isinstance(t0, int) and t1 > t0


def test_heartbeat_before_ready_sequence_singyeong_py_style(clients):
    """singyeong.py sends IDENTIFY and immediately a heartbeat: READY first, then the ACK."""
    c = clients.connect()
    c.send({"op": 1, "d": {"client_id": "fast", "application_id": app()}})
    c.send({"op": 5, "d": {"client_id": "fast"}})
    assert c.recv_frame()["op"] == 2
    assert c.recv_frame()["op"] == 6


def test_heartbeat_took_too_long(start):
    s = start("--heartbeat-interval", "1000", "--metadata-queue-interval", "0")
    with GatewayClient(s.port) as c:
        assert c.hello["d"] == {"heartbeat_interval": 1000}
        c.identify("hb-app")
        # heartbeating in time keeps the connection alive
        for _ in range(3):
            time.sleep(0.6)
            c.heartbeat()
        # Silent from here: the deadline is a timer (issue 10), so op 8 comes
        # by itself 1.5 intervals after the last heartbeat, no frame needed.
        start = time.monotonic()
        c.expect_error_close({"error": "heartbeat took too long", "extra_info": None}, timeout=3)
        assert 1.2 < time.monotonic() - start < 2.2


def test_heartbeat_took_too_long_any_frame(start):
    s = start("--heartbeat-interval", "1000", "--metadata-queue-interval", "0")
    cl = Clients(s.port)
    try:
        watcher = cl.identified("w", "w")
        c = cl.identified("hb-app", "late")
        # Other frames do not count as heartbeats: op 8 at 1.5 intervals.
        for _ in range(3):
            time.sleep(0.4)
            watcher.heartbeat()
            c.update_metadata(typed(x=("integer", 1)))
        assert c.expect_error_close(timeout=3)["error"] == "heartbeat took too long"
        # the client is gone
        watcher.heartbeat()
        assert watcher.query_ids({"application": "hb-app"}) == set()
    finally:
        cl.close_all()


def test_idle_timeout_closes_with_1000(start):
    s = start("--idle-timeout", "1000", "--metadata-queue-interval", "0")
    cl = Clients(s.port)
    try:
        c = cl.identified("idle-app", "idle")
        t0 = time.monotonic()
        c.expect_closed(None, timeout=3.0)  # code: see test_websocket.py (empty close payload)
        assert 0.8 <= time.monotonic() - t0 <= 2.5
    finally:
        cl.close_all()


def test_idle_timeout_reset_by_traffic_and_cleanup(start):
    s = start("--idle-timeout", "1500", "--metadata-queue-interval", "0")
    cl = Clients(s.port)
    try:
        sub = cl.identified("sub-app", "sub", receive_client_updates=True)
        assert sub.recv_frame()["t"] == "CLIENT_CONNECTED"
        c = cl.identified("idle-app", "idle")
        assert sub.recv_frame()["t"] == "CLIENT_CONNECTED"
        sub.ws.ping()
        for _ in range(3):
            time.sleep(0.4)
            sub.heartbeat()
        c.expect_closed(None, timeout=3.0)
        f = sub.recv_until(lambda f: f.get("op") == 4, timeout=2.0)
        assert (f["t"], f["d"]["payload"]) == ("CLIENT_DISCONNECTED", {"app": "idle-app"})
        sub.heartbeat()
        sub.expect_no_frame(0.3)
    finally:
        cl.close_all()


# ---------------------------------------------------------------- cleanup exactly once (§5.5, §8.11)


def _subscriber(clients):
    sub_app = uid("sub")
    sub = clients.identified(sub_app, uid(), receive_client_updates=True)
    sub.app = sub_app
    f = sub.recv_frame()
    assert f["t"] == "CLIENT_CONNECTED"
    return sub


def test_disconnect_event_once_on_client_close(clients):
    sub = _subscriber(clients)
    a = app()
    c = clients.identified(a)
    assert sub.recv_frame()["t"] == "CLIENT_CONNECTED"
    c.close()
    f = sub.recv_frame()
    assert f == {"op": 4, "t": "CLIENT_DISCONNECTED", "ts": f["ts"],
                 "d": {"target": None, "nonce": None, "payload": {"app": a}}}
    sub.expect_no_frame(0.5)


def test_disconnect_event_once_after_error_close(clients):
    sub = _subscriber(clients)
    a = app()
    c = clients.identified(a)
    assert sub.recv_frame()["t"] == "CLIENT_CONNECTED"
    c.send({"op": 0, "d": {}})
    c.expect_error_close()
    f = sub.recv_frame()
    assert (f["t"], f["d"]["payload"]) == ("CLIENT_DISCONNECTED", {"app": a})
    sub.expect_no_frame(0.5)


def test_frames_after_error_are_discarded(clients):
    sub = _subscriber(clients)
    a = app()
    c = clients.identified(a)
    assert sub.recv_frame()["t"] == "CLIENT_CONNECTED"
    c.send({"op": 7, "d": {}})
    c.send({"op": 0, "d": {}})
    c.send({"op": 5})
    c.dispatch("SEND", {"target": {"application": sub.app}, "payload": "late"})
    c.send_raw("garbage")
    d = c.expect_error_close()  # asserts the close comes right after the single op 8
    assert d["error"] == "invalid client op :goodbye"
    f = sub.recv_frame()
    assert f["t"] == "CLIENT_DISCONNECTED"
    sub.expect_no_frame(0.5)


def test_no_events_before_identify_or_for_failed_identify(clients):
    sub = _subscriber(clients)
    c = clients.connect()
    c.close()
    bad = clients.connect()
    bad.send({"op": 1, "d": {"client_id": "", "application_id": "x"}})
    bad.expect_error_close()
    sub.expect_no_frame(0.4)


# ---------------------------------------------------------------- auth (§4.3)


@pytest.fixture(scope="module")
def auth_server():
    from gateway_client import start_server, stop_server
    s = start_server("--auth", "secret", "--auth-failures-per-minute", "0", "--metadata-queue-interval", "0")
    yield s
    stop_server(s)


@pytest.fixture
def aclients(auth_server):
    c = Clients(auth_server.port)
    yield c
    c.close_all()


def test_auth_right_password(aclients):
    r = aclients.identified(app(), auth="secret").ready
    assert r["d"]["restricted"] is False


@pytest.mark.parametrize("auth", ["wrong", "", "secret ", "SECRET", None, 123, ["secret"], {"p": "secret"}, True,
                                  "absent"])
def test_auth_wrong_is_restricted_not_rejected(aclients, auth):
    fields = {} if auth == "absent" else {"auth": auth}
    r = aclients.identified(app(), **fields).ready
    assert r["op"] == 2 and r["d"]["restricted"] is True


@pytest.mark.parametrize("auth,restricted", [("absent", False), (None, False), ("pw", True), ("", True)])
def test_auth_without_server_password(clients, auth, restricted):
    fields = {} if auth == "absent" else {"auth": auth}
    r = clients.identified(app(), **fields).ready
    assert r["d"]["restricted"] is restricted


def test_restricted_may_update_metadata_and_heartbeat(aclients):
    a = app()
    r = aclients.identified(a, "r")
    r.update_metadata(typed(lat=("integer", 5)))
    r.heartbeat()  # no frame was produced for the update
    q = aclients.identified(uid("q"), auth="secret")
    f = q.query_nodes({"application": a, "restricted": True})
    [node] = f["d"]["nodes"]
    assert node["metadata"]["lat"] == 5 and node["metadata"]["restricted"] is True


@pytest.mark.parametrize("t", ["SEND", "BROADCAST", "QUERY_NODES", "CUSTOM_EVENT", "missing"])
def test_restricted_dispatch_refused(aclients, t):
    a = app()
    r = aclients.identified(a, "r")
    frame = {"op": 4, "d": {"target": {"application": a, "restricted": True}, "payload": 1, "application": a}}
    if t != "missing":
        frame["t"] = t
    r.send(frame)
    f = r.recv_frame()
    assert f["op"] == 3 and f["t"] is None
    shown = "" if t == "missing" else t
    assert f["d"] == {"error": f"invalid dispatch type {shown} (are you restricted?)"}
    r.heartbeat()  # still open
    r.expect_no_frame(0.2)  # and nothing was delivered to itself


def test_restricted_not_a_send_target_unless_asked(aclients):
    a = app()
    r = aclients.identified(a, "r")
    n = aclients.identified(uid("n"), auth="secret")
    n.dispatch("SEND", {"target": {"application": a}, "payload": "x", "nonce": "n1"})
    d = n.expect_invalid()
    assert d["error"] == "no_route"
    n.dispatch("SEND", {"target": {"application": a, "restricted": True}, "payload": "x", "nonce": "n2"})
    f = r.recv_frame()
    assert f["t"] == "SEND" and f["d"] == {"target": None, "nonce": "n2", "payload": "x"}
    n.dispatch("BROADCAST", {"target": {"application": a, "restricted": "true"}, "payload": "y"})
    assert r.recv_frame()["d"]["payload"] == "y"


def test_restricted_never_gets_client_updates(aclients):
    r = aclients.identified(app(), "r", receive_client_updates=True)
    r.expect_no_frame(0.3)
    other = aclients.identified(app(), auth="secret")
    other.close()
    r.heartbeat()
    r.expect_no_frame(0.3)


def test_restricted_client_connect_seen_by_subscribers(aclients):
    sub = aclients.identified(app(), "sub", auth="secret", receive_client_updates=True)
    assert sub.recv_frame()["t"] == "CLIENT_CONNECTED"
    a = app()
    r = aclients.identified(a, "r")
    f = sub.recv_frame()
    assert (f["t"], f["d"]["payload"]) == ("CLIENT_CONNECTED", {"app": a})
    r.close()
    f = sub.recv_frame()
    assert (f["t"], f["d"]["payload"]) == ("CLIENT_DISCONNECTED", {"app": a})


def test_restricted_ip_null(aclients):
    a = app()
    aclients.identified(a, "r", ip="10.1.2.3:80", receive_client_updates=True)
    q = aclients.identified(uid("q"), auth="secret")
    [node] = q.query_nodes({"application": a, "restricted": True})["d"]["nodes"]
    assert node["socket_ip"] is None
    assert node["metadata"]["ip"] is None
    assert node["metadata"]["restricted"] is True
    assert node["metadata"]["receive_client_updates"] is False


def test_unrestricted_ip_and_identify_ip(aclients):
    a = app()
    aclients.identified(a, "plain", auth="secret")
    aclients.identified(a, "given", auth="secret", ip="10.0.0.5:8080", namespace="prod")
    q = aclients.identified(uid("q"), auth="secret")
    nodes = {n["client_id"]: n for n in q.query_nodes({"application": a})["d"]["nodes"]}
    assert nodes["plain"]["socket_ip"] == "127.0.0.1" and nodes["plain"]["metadata"]["ip"] == "127.0.0.1"
    assert nodes["given"]["socket_ip"] == "10.0.0.5:8080"
    assert nodes["given"]["metadata"]["ip"] == "10.0.0.5:8080"
    assert nodes["given"]["metadata"]["namespace"] == "prod"
    assert nodes["plain"]["metadata"]["namespace"] is None


def test_auth_failure_limit(start):
    s = start("--auth", "secret", "--auth-failures-per-minute", "3", "--metadata-queue-interval", "0")
    cl = Clients(s.port)
    try:
        for i in range(3):
            assert cl.identified("lim", f"w{i}", auth="wrong").ready["d"]["restricted"] is True
        c = cl.connect()
        c.send({"op": 1, "d": {"client_id": "w3", "application_id": "lim", "auth": "wrong"}})
        d = c.expect_error_close()
        assert "too many failed authentication attempts" in d["error"].lower(), d
        c = cl.connect()
        c.send({"op": 1, "d": {"client_id": "w4", "application_id": "lim", "auth": "secret"}})
        d = c.expect_error_close()
        assert "too many failed authentication attempts" in d["error"].lower(), d
        assert cl.identified("lim", "noauth").ready["d"]["restricted"] is True
        assert cl.identified("lim", "nullauth", auth=None).ready["d"]["restricted"] is True
    finally:
        cl.close_all()
