"""Dispatch conformance: SEND, BROADCAST, QUERY_NODES, UPDATE_METADATA,
CLIENT_CONNECTED/DISCONNECTED, key hashing, selectors (protocol.md §7–§8,
query.md §7–§9)."""

from __future__ import annotations

import json
import time

import msgpack
import pytest

from gateway_client import Clients, fnv1a64, now_ms, typed, uid
from gw_fixtures import clients, mod_server, start  # noqa: F401


def app():
    return uid("app")


def send(src, target, payload, t="SEND", **d_extra):
    d = {"target": target, "payload": payload}
    d.update(d_extra)
    src.dispatch(t, d)


def assert_delivery(f, t, nonce, payload):
    assert set(f) == {"op", "t", "d", "ts"}, f
    assert f["op"] == 4 and f["t"] == t, f
    assert set(f["d"]) == {"target", "nonce", "payload"}, f
    assert f["d"]["target"] is None and f["d"]["nonce"] == nonce, f
    assert f["d"]["payload"] == payload and type(f["d"]["payload"]) is type(payload), f
    assert isinstance(f["ts"], int) and abs(f["ts"] - now_ms()) < 5000


# ---------------------------------------------------------------- SEND


def test_send_to_self_exact_shape(clients):
    a = app()
    c = clients.identified(a, "client-1")
    send(c, {"application": a, "optional": True, "ops": []}, {}, nonce="1")
    f = c.recv_frame()
    assert_delivery(f, "SEND", "1", {})
    assert json.loads(c.last_raw) == {"op": 4, "t": "SEND", "ts": f["ts"],
                                      "d": {"payload": {}, "nonce": "1", "target": None}}
    c.expect_no_frame(0.2)


def test_send_ops_null_and_nonce_absent(clients):
    a = app()
    c = clients.identified(a)
    send(c, {"application": a, "ops": None}, "hi")
    assert_delivery(c.recv_frame(), "SEND", None, "hi")


def test_send_sender_field_ignored(clients):
    a = app()
    c = clients.identified(a, "client-1")
    send(c, {"application": a}, {}, nonce="1", sender="client-1")
    assert_delivery(c.recv_frame(), "SEND", "1", {})


def test_send_one_of_many_and_random_share(clients):
    a = app()
    r1 = clients.identified(a, "r1")
    r2 = clients.identified(a, "r2")
    s = clients.identified(uid("sender"))
    n = 200
    for i in range(n):
        send(s, {"application": a}, i)
    s.sync()
    got1 = [f["d"]["payload"] for f in r1.drain(0.5)]
    got2 = [f["d"]["payload"] for f in r2.drain(0.3)]
    assert len(got1) + len(got2) == n, (len(got1), len(got2))
    assert sorted(got1 + got2) == list(range(n))
    assert got1 == sorted(got1) and got2 == sorted(got2), "per-pair order not kept"
    assert len(got1) >= 40 and len(got2) >= 40, f"unbalanced random choice: {len(got1)} / {len(got2)}"


@pytest.mark.parametrize("payload", [
    None, True, False, 0, -1, 18446744073709551615, -9223372036854775808, 9223372036854775807, 1.0, -0.5, 1e300,
    "", "ünïcødé ✓ 신경", [], [1, "2", [3.5, None]], {"a": {"b": {"c": [True, {"d": None}]}}}, {},
], ids=lambda p: repr(p)[:30])
def test_send_payload_types_json(clients, payload):
    a = app()
    c = clients.identified(a)
    send(c, {"application": a}, payload, nonce={"n": [1]})
    f = c.recv_frame()
    assert_delivery(f, "SEND", {"n": [1]}, payload)


def test_send_payload_raw_bytes_preserved(clients):
    a = app()
    c = clients.identified(a)
    r = clients.identified(a + "-r")
    raw_payload = '{"a" :  [1,2 ,3], "big": 123456789012345678901234567890, "f": 1.50, "e": 1E3}'
    c.send_raw('{"op":4,"t":"SEND","d":{"target":{"application":"%s"},"payload":%s}}' % (a + "-r", raw_payload))
    f = r.recv_frame()
    assert raw_payload in r.last_raw, r.last_raw
    assert f["d"]["payload"]["a"] == [1, 2, 3]


@pytest.mark.parametrize("bad", ['{"n":}', '{"n":1', '{"n":1}]', '[1,]', '{"n":1},{"n":2}',
                                 '{"n":"\\x"}', '[' * 63 + ']' * 63])
def test_repeated_envelope_payloads(clients, bad):
    # A session's frames that repeat the last SEND's envelope (target, nonce,
    # ts) with another payload are decoded from it (issue 13): each payload
    # still arrives byte for byte, and a bad one is still refused.
    a = app()
    c = clients.identified(a)
    r = clients.identified(a + "-r")
    envelope = '{"op":4,"t":"SEND","d":{"target":{"application":"%s"},"nonce":7,"payload":%%s},"ts":1}' % (a + "-r")
    payloads = ['{"n":1}', '{"n":2,"s":"}]\\"{["}', '[]', '[' * 62 + ']' * 62, '{"n":1}']
    for p in payloads:
        c.send_raw(envelope % p)
        r.recv_frame()
        assert r.last_raw.endswith(',"payload":%s},"ts":%d}' % (p, json.loads(r.last_raw)["ts"])), r.last_raw
    # A scalar payload is not the envelope's shape: decoded in full, delivered.
    c.send_raw(envelope % '"text"')
    assert r.recv_frame()["d"]["payload"] == "text"
    c.send_raw(envelope % '{"n":1},"x":{"n":2}')  # valid: another key in d
    assert r.recv_frame()["d"]["payload"] == {"n": 1}
    c.send_raw(envelope % '{"n":3}')
    assert r.recv_frame()["d"]["payload"] == {"n": 3}
    c.send_raw(envelope % bad)
    d = c.expect_error_close()
    assert d["error"].startswith("decode: "), d
    r.expect_no_frame(0.2)


@pytest.mark.parametrize("src,dst", [("json", "msgpack"), ("msgpack", "json"), ("msgpack", "msgpack")])
def test_send_transcoding(clients, src, dst):
    a = app()
    s = clients.identified(uid("s"), encoding=src)
    r = clients.identified(a, encoding=dst)
    payload = {"int": 5, "float": 5.0, "neg": -3, "big": 18446744073709551615, "min": -9223372036854775808,
               "s": "신경", "n": None, "t": True, "f": False, "nested": {"l": [1, 2.5, {"x": "y"}], "e": {}},
               "list": []}
    send(s, {"application": a}, payload, nonce="n-1")
    f = r.recv_frame()
    assert isinstance(r.last_raw, bytes if dst == "msgpack" else str)
    assert_delivery(f, "SEND", "n-1", payload)
    p = f["d"]["payload"]
    assert type(p["int"]) is int and type(p["float"]) is float and type(p["nested"]["l"][1]) is float
    assert type(p["nested"]["l"][0]) is int
    if dst == "json":
        assert '"float":5.0' in r.last_raw.replace(" ", "") or '"float":5e0' in r.last_raw.replace(" ", ""), \
            r.last_raw


def test_msgpack_integer_keys_and_bin_strings(clients):
    a = app()
    s = clients.identified(uid("s"), encoding="msgpack")
    r = clients.identified(a, encoding="json")
    frame = {"op": 4, "t": "SEND", "d": {"target": {"application": a}, "payload": {1: "one", "b": b"bytes"}}}
    s.send_raw(msgpack.packb(frame, use_bin_type=True))
    f = r.recv_frame()
    assert f["d"]["payload"] == {"1": "one", "b": "bytes"}


# ---------------------------------------------------------------- BROADCAST


def test_broadcast_every_match_once_mixed_encodings(clients):
    a = app()
    rs = [clients.identified(a, f"r{i}", encoding=("json" if i % 2 else "msgpack")) for i in range(4)]
    other = clients.identified(app())
    s = clients.identified(uid("s"))
    send(s, {"application": a}, {"x": 1.0, "y": 2}, t="BROADCAST", nonce=7)
    for r in rs:
        assert_delivery(r.recv_frame(), "BROADCAST", 7, {"x": 1.0, "y": 2})
        r.expect_no_frame(0.1)
    other.expect_no_frame(0.1)
    s.expect_no_frame(0.1)


def test_broadcast_with_selector_one_client(clients):
    a = app()
    rs = [clients.identified(a, f"r{i}", metadata=typed(lat=("integer", 10 * (i + 1)))) for i in range(3)]
    s = clients.identified(uid("s"))
    send(s, {"application": a, "selector": {"$min": "lat"}}, "one", t="BROADCAST")
    assert rs[0].recv_frame()["d"]["payload"] == "one"
    rs[1].expect_no_frame(0.2)
    rs[2].expect_no_frame(0.05)


def test_broadcast_key_ignored(clients):
    a = app()
    rs = [clients.identified(a, f"r{i}") for i in range(3)]
    s = clients.identified(uid("s"))
    send(s, {"application": a, "key": "user-42"}, 1, t="BROADCAST")
    for r in rs:
        assert r.recv_frame()["d"]["payload"] == 1


# ---------------------------------------------------------------- no_route / droppable / invalid


@pytest.mark.parametrize("t", ["SEND", "BROADCAST"])
def test_no_route(clients, t):
    c = clients.identified(app())
    d = {"target": {"application": "nobody-" + uid(), "ops": [{"path": "/x", "op": "$eq", "to": {"value": 1}}]},
         "payload": {"p": [1, 2]}, "nonce": "abc"}
    c.send({"op": 4, "t": t, "d": d, "ts": 12345})
    inv = c.expect_invalid()
    assert inv == {"error": "no_route", "extra_info": {"op": 4, "t": t, "ts": 12345, "d": d}}
    c.send({"op": 4, "t": t, "d": d})
    assert c.expect_invalid()["extra_info"] == {"op": 4, "t": t, "ts": None, "d": d}


@pytest.mark.parametrize("t", ["SEND", "BROADCAST"])
def test_droppable_silence(clients, t):
    c = clients.identified(app())
    send(c, {"application": "nobody-" + uid(), "droppable": True}, 1, t=t)
    send(c, {"application": "nobody-" + uid(), "droppable": "true", "optional": True,
             "ops": [{"path": "/region", "op": "$eq", "to": {"value": "us"}}]}, 1, t=t)
    c.sync()
    c.expect_no_frame(0.2)


@pytest.mark.parametrize("t", ["SEND", "BROADCAST"])
@pytest.mark.parametrize("d", [
    "string", [1], None, 5, {"payload": 1}, {"target": {}}, {"nonce": 1},
], ids=["d-string", "d-list", "d-null", "d-int", "no-target", "no-payload", "neither"])
def test_invalid_dispatch_payload(clients, t, d):
    c = clients.identified(app())
    frame = {"op": 4, "t": t, "d": d, "ts": 99}
    c.send(frame)
    assert c.expect_invalid() == {"error": "invalid dispatch payload", "extra_info": frame}
    c.heartbeat()


def test_invalid_dispatch_payload_missing_d(clients):
    c = clients.identified(app())
    c.send({"op": 4, "t": "SEND"})
    inv = c.expect_invalid()
    assert inv["error"] == "invalid dispatch payload"
    assert inv["extra_info"]["op"] == 4 and inv["extra_info"]["t"] == "SEND"


@pytest.mark.parametrize("t", ["FOO", "send", "", None, "missing", 5])
def test_unknown_dispatch_type(clients, t):
    c = clients.identified(app())
    frame = {"op": 4, "d": {"x": 1}, "ts": None}
    if t != "missing":
        frame["t"] = t
    c.send(frame)
    inv = c.expect_invalid()
    assert inv["error"] == "invalid dispatch payload"
    expected = dict(frame)
    expected.setdefault("t", None)
    assert inv["extra_info"] == expected
    c.heartbeat()


@pytest.mark.parametrize("target,detail_has", [
    ({"application": "a", "ops": [{"path": "/x", "op": "$foo", "to": {"value": 1}}]}, "$foo"),
    ({"application": "a", "ops": {"path": "/x"}}, "ops: must be an array"),
    ({"application": "a", "ops": [{"path": "x", "op": "$eq", "to": {"value": 1}}]}, "ops[0]"),
    ({"application": "a", "ops": [{"path": "/x", "op": "$in", "to": {"value": 1}}]}, "ops[0]"),
    ({"application": "a", "ops": [{"path": "/x", "op": "$eq"}]}, "ops[0]"),
    ({"application": "a", "ops": [{"op": "$and", "with": {}}]}, "ops[0]"),
    ({"application": "a", "ops": [{"op": "$and", "with": [{"path": "/x", "op": "$bad", "to": {"value": 1}}]}]},
     "ops[0].with[0]"),
    ({"application": "a", "selector": {}}, "selector"),
    ({"application": "a", "selector": {"$median": "x"}}, "selector"),
    ({"application": 5}, "application"),
    ("not-an-object", "target"),
    ([], "target"),
])
@pytest.mark.parametrize("t", ["SEND", "BROADCAST"])
def test_invalid_query_in_target(clients, target, detail_has, t):
    c = clients.identified(app())
    send(c, target, 1, t=t)
    inv = c.expect_invalid()
    assert inv["error"] == "invalid query", inv
    assert isinstance(inv["extra_info"], str) and detail_has in inv["extra_info"], inv
    c.heartbeat()


def test_invalid_query_exact_details(clients):
    c = clients.identified(app())
    send(c, {"application": "a", "ops": [{"path": "/x", "op": "$foo", "to": {"value": 1}}]}, 1)
    assert c.expect_invalid() == {"error": "invalid query", "extra_info": "ops[0]: unknown op $foo"}
    send(c, {"application": "a", "ops": {}}, 1)
    assert c.expect_invalid() == {"error": "invalid query", "extra_info": "ops: must be an array"}


# ---------------------------------------------------------------- QUERY_NODES


def test_query_nodes_reply_shape(clients):
    a = app()
    c = clients.identified(a, "qn", metadata=typed(lat=("integer", 5), v=("version", "1.2.3")), namespace="ns",
                           receive_client_updates=True)
    c.recv_frame()  # its own CLIENT_CONNECTED
    f = c.query_nodes({"application": a})
    assert set(f) == {"op", "t", "d", "ts"} and f["op"] == 4 and f["t"] == "QUERY_NODES", f
    assert set(f["d"]) == {"nodes"}
    [n] = f["d"]["nodes"]
    assert set(n) == {"app_id", "client_id", "metadata", "metadata_types", "queues", "socket_ip"}, n
    assert n["app_id"] == a and n["client_id"] == "qn" and n["queues"] == [] and n["socket_ip"] == "127.0.0.1"
    md = n["metadata"]
    assert md["lat"] == 5 and md["v"] == "1.2.3"
    assert md["restricted"] is False and md["encoding"] == "json" and md["ip"] == "127.0.0.1"
    assert md["namespace"] == "ns" and md["receive_client_updates"] is True
    assert isinstance(md["last_heartbeat_time"], int) and abs(md["last_heartbeat_time"] - now_ms()) < 10000
    assert n["metadata_types"] == {"lat": "integer", "v": "version", "restricted": "boolean", "encoding": "string",
                                   "ip": "string", "namespace": "string", "receive_client_updates": "boolean",
                                   "last_heartbeat_time": "integer"}


def test_query_nodes_msgpack_encoding_and_empty(clients):
    a = app()
    c = clients.identified(a, "m", encoding="msgpack")
    f = c.query_nodes({"application": a})
    assert f["d"]["nodes"][0]["metadata"]["encoding"] == "msgpack"
    e = c.query_nodes({"application": "nobody-" + uid(), "droppable": False})
    assert e["op"] == 4 and e["t"] == "QUERY_NODES" and e["d"] == {"nodes": []}


def test_query_nodes_selector_and_no_key_hashing(clients):
    a = app()
    for i, lat in enumerate([30, 10, 20]):
        clients.identified(a, f"n{i}", metadata=typed(lat=("integer", lat)))
    q = clients.identified(uid("q"))
    assert q.query_ids({"application": a, "selector": {"$min": "lat"}}) == {"n1"}
    assert q.query_ids({"application": a, "selector": {"$max": "lat"}}) == {"n0"}
    assert q.query_ids({"application": a, "key": "user-42"}) == {"n0", "n1", "n2"}


def test_query_nodes_invalid(clients):
    c = clients.identified(app())
    c.dispatch("QUERY_NODES", {"application": "x", "ops": [{"path": "/a", "op": "$nope", "to": {"value": 1}}]})
    inv = c.expect_invalid()
    assert inv == {"error": "invalid query", "extra_info": "ops[0]: unknown op $nope"}
    c.dispatch("QUERY_NODES", "nope")
    assert c.expect_invalid()["error"] == "invalid query"


# ---------------------------------------------------------------- UPDATE_METADATA (§7)


def test_update_metadata_silent_and_applied(clients):
    a = app()
    c = clients.identified(a)
    c.update_metadata(typed(test=("integer", 10)))
    c.sync()
    c.expect_no_frame(0.1)
    send(c, {"application": a, "ops": [{"path": "/test", "op": "$eq", "to": {"value": 10}}]}, "ok")
    assert c.recv_frame()["d"]["payload"] == "ok"


@pytest.mark.parametrize("md,op", [
    (typed(test=("list", [1, 2, 3, 4, 5])), {"path": "/test", "op": "$contains", "to": {"value": 1}}),
    (typed(test=("list", [1, 2, 3, 4, 5])), {"path": "/test/0", "op": "$eq", "to": {"value": 1}}),
    (typed(test=("map", {"key": [1, 2, 3, 4, 5]})), {"path": "/test/key/0", "op": "$eq", "to": {"value": 1}}),
    (typed(test=("integer", 15)), {"op": "$and", "with": [{"path": "/test", "op": "$gt", "to": {"value": 10}},
                                                          {"path": "/test", "op": "$lt", "to": {"value": 20}}]}),
    (typed(test=("boolean", True)), {"path": "/test", "op": "$eq", "to": {"value": True}}),
    (typed(test=("float", 2.5)), {"path": "/test", "op": "$gt", "to": {"value": 2}}),
    (typed(test=("version", "1.0.0-alpha+001")), {"path": "/test", "op": "$lt", "to": {"value": "1.0.0"}}),
], ids=["list-contains", "list-index", "map-nested", "and", "boolean", "float", "version"])
def test_metadata_then_send(clients, md, op):
    a = app()
    c = clients.identified(a)
    c.update_metadata(md)
    send(c, {"application": a, "ops": [op]}, "ok")
    assert c.recv_frame()["d"]["payload"] == "ok"


def test_metadata_selector_min_single(clients):
    a = app()
    c = clients.identified(a)
    c.update_metadata(typed(test=("integer", 1)))
    send(c, {"application": a, "ops": [{"path": "/test", "op": "$eq", "to": {"value": 1}}],
             "selector": {"$min": "test"}}, "ok")
    assert c.recv_frame()["d"]["payload"] == "ok"


def test_metadata_batching_visibility(start):
    s = start("--metadata-queue-interval", "300")
    cl = Clients(s.port)
    try:
        a = app()
        c = cl.identified(a, "b", metadata=typed(init=("integer", 1)))
        q = cl.identified(uid("q"))
        # identify metadata is applied before READY, not queued
        assert q.query_ids({"application": a, "ops": [{"path": "/init", "op": "$eq", "to": {"value": 1}}]}) == {"b"}
        c.update_metadata(typed(x=("integer", 1)))
        c.update_metadata(typed(x=("integer", 2), y=("string", "a")))
        c.update_metadata(typed(x=("integer", 3)))
        c.sync()
        match = {"application": a, "ops": [{"path": "/x", "op": "$eq", "to": {"value": 3}},
                                           {"path": "/y", "op": "$eq", "to": {"value": "a"}}]}
        assert q.query_ids(match) == set(), "update visible before the flush"
        time.sleep(0.55)
        assert q.query_ids(match) == {"b"}
        md = q.query_nodes({"application": a})["d"]["nodes"][0]["metadata"]
        assert md["init"] == 1 and md["x"] == 3 and md["y"] == "a"
    finally:
        cl.close_all()


@pytest.mark.parametrize("md,errors", [
    ({"k": {"type": "foo", "value": 1}}, {"k": "k: type 'foo' doesn't exists"}),
    ({"ip": {"type": "string", "value": "1.2.3.4"}}, {"ip": "ip: forbidden metadata key"}),
    ({"restricted": {"type": "boolean", "value": False}}, {"restricted": "restricted: forbidden metadata key"}),
    ({"namespace": {"type": "string", "value": "x"}}, {"namespace": "namespace: forbidden metadata key"}),
    ({"receive_client_updates": {"type": "boolean", "value": True}},
     {"receive_client_updates": "receive_client_updates: forbidden metadata key"}),
    ({"last_heartbeat_time": {"type": "integer", "value": 1}},
     {"last_heartbeat_time": "last_heartbeat_time: forbidden metadata key"}),
    ({"encoding": {"type": "string", "value": "etf"}}, {"encoding": "encoding: forbidden metadata key"}),
    ({"ip": {"type": "ipaddr", "value": "x"}}, {"ip": "ip: type 'ipaddr' doesn't exists"}),
    ({"n": {"type": "integer", "value": 1.5}}, {"n": "n: value fails validation for 'integer'"}),
    ({"n": {"type": "integer", "value": "1"}}, {"n": "n: value fails validation for 'integer'"}),
    ({"n": {"type": "integer", "value": 1.0}}, {"n": "n: value fails validation for 'integer'"}),
    ({"n": {"type": "integer", "value": True}}, {"n": "n: value fails validation for 'integer'"}),
    ({"n": {"type": "string", "value": 1234567890}}, {"n": "n: value fails validation for 'string'"}),
    ({"n": {"type": "map", "value": 7}}, {"n": "n: value fails validation for 'map'"}),
    ({"n": {"type": "list", "value": "[1,2]"}}, {"n": "n: value fails validation for 'list'"}),
    ({"n": {"type": "boolean", "value": 1}}, {"n": "n: value fails validation for 'boolean'"}),
    ({"n": {"type": "float", "value": "1.0"}}, {"n": "n: value fails validation for 'float'"}),
    ({"n": {"type": "string", "value": None}}, {"n": "n: value fails validation for 'string'"}),
    ({"n": {"type": "version", "value": "1.2"}}, {"n": "n: value fails validation for 'version'"}),
    ({"n": {"type": "version", "value": "v1.2.3"}}, {"n": "n: value fails validation for 'version'"}),
    ({"n": {"type": "version", "value": "01.2.3"}}, {"n": "n: value fails validation for 'version'"}),
    ({"n": {"type": "version", "value": 123}}, {"n": "n: value fails validation for 'version'"}),
    ({"n": 5}, {"n": "n: entry must be an object with type and value"}),
    ({"n": {"type": "integer"}}, {"n": "n: entry must be an object with type and value"}),
    ({"n": {"value": 1}}, {"n": "n: entry must be an object with type and value"}),
    ({"a": {"type": "integer", "value": "x"}, "b": {"type": "nope", "value": 1}, "ok": {"type": "integer", "value": 1}},
     {"a": "a: value fails validation for 'integer'", "b": "b: type 'nope' doesn't exists"}),
], ids=lambda x: json.dumps(x)[:40] if isinstance(x, dict) else str(x))
def test_invalid_metadata(clients, md, errors):
    a = app()
    c = clients.identified(a)
    c.update_metadata(md)
    assert c.expect_invalid() == {"error": "invalid metadata", "extra_info": errors}
    # all or nothing: nothing of the update was applied
    nodes = c.query_nodes({"application": a})["d"]["nodes"]
    for k in md:
        if k not in ("ip", "restricted", "namespace", "receive_client_updates", "last_heartbeat_time", "encoding"):
            assert k not in nodes[0]["metadata"], nodes
    assert nodes[0]["metadata"]["restricted"] is False and nodes[0]["metadata"]["encoding"] == "json"


@pytest.mark.parametrize("d", ["x", [1], None, 5])
def test_update_metadata_not_an_object(clients, d):
    c = clients.identified(app())
    c.dispatch("UPDATE_METADATA", d)
    assert c.expect_invalid() == {"error": "invalid metadata", "extra_info": "metadata update must be an object"}


@pytest.mark.parametrize("md,value", [
    (typed(f=("float", 1)), 1.0), (typed(f=("float", 1e3)), 1000.0), (typed(f=("float", -2.25)), -2.25),
    (typed(v=("version", "1.0.0-rc.1+build.5")), "1.0.0-rc.1+build.5"), (typed(v=("version", "0.0.0")), "0.0.0"),
    ({"e": {"type": "string", "value": "s", "extra": 1}}, "s"),
])
def test_valid_metadata_values(clients, md, value):
    a = app()
    c = clients.identified(a)
    c.update_metadata(md)
    [n] = c.query_nodes({"application": a})["d"]["nodes"]
    [k] = md
    assert n["metadata"][k] == value and type(n["metadata"][k]) is type(value)
    assert n["metadata_types"][k] == md[k]["type"]


def test_float_accepts_integer_and_compares(clients):
    a = app()
    c = clients.identified(a)
    c.update_metadata(typed(load=("float", 1)))
    send(c, {"application": a, "ops": [{"path": "/load", "op": "$eq", "to": {"value": 1.0}}]}, "ok")
    assert c.recv_frame()["d"]["payload"] == "ok"


def test_merge_strategy_default(clients):
    a = app()
    c = clients.identified(a)
    c.update_metadata(typed(a=("integer", 1), b=("integer", 2)))
    c.update_metadata(typed(b=("integer", 3), c=("string", "x")))
    md = c.query_nodes({"application": a})["d"]["nodes"][0]["metadata"]
    assert (md["a"], md["b"], md["c"]) == (1, 3, "x")
    assert md["restricted"] is False and md["encoding"] == "json"


def test_replace_strategy(start):
    s = start("--metadata-queue-interval", "0", "--metadata-update-strategy", "replace")
    cl = Clients(s.port)
    try:
        a = app()
        c = cl.identified(a, "r", namespace="ns", metadata=typed(init=("integer", 0)))
        c.update_metadata(typed(a=("integer", 1), b=("integer", 2)))
        c.update_metadata(typed(b=("integer", 3)))
        [n] = c.query_nodes({"application": a})["d"]["nodes"]
        md = n["metadata"]
        assert "a" not in md and "init" not in md and md["b"] == 3
        assert md["namespace"] == "ns" and md["restricted"] is False and md["encoding"] == "json"
        assert md["ip"] == "127.0.0.1" and isinstance(md["last_heartbeat_time"], int)
        assert "a" not in n["metadata_types"]
    finally:
        cl.close_all()


def test_replace_strategy_batched_last_wins(start):
    s = start("--metadata-queue-interval", "200", "--metadata-update-strategy", "replace")
    cl = Clients(s.port)
    try:
        a = app()
        c = cl.identified(a, "r")
        c.update_metadata(typed(a=("integer", 1)))
        c.update_metadata(typed(b=("integer", 2)))
        time.sleep(0.45)
        md = c.query_nodes({"application": a})["d"]["nodes"][0]["metadata"]
        assert "a" not in md and md["b"] == 2
    finally:
        cl.close_all()


def test_identify_metadata_visible_right_after_ready(clients):
    a = app()
    c = clients.identified(a, "im", metadata=typed(lat=("integer", 5), tags=("list", ["x"])))
    q = clients.identified(uid("q"))
    assert q.query_ids({"application": a, "ops": [{"path": "/tags", "op": "$contains", "to": {"value": "x"}}]}) \
        == {"im"}
    assert c.query_ids({"application": a, "ops": [{"path": "/lat", "op": "$eq", "to": {"value": 5}}]}) == {"im"}


def test_identify_invalid_metadata_fatal(clients):
    c = clients.connect()
    c.send({"op": 1, "d": {"client_id": "x", "application_id": app(),
                           "metadata": {"ip": {"type": "string", "value": "1"}, "n": {"type": "integer", "value": "1"},
                                        "ok": {"type": "integer", "value": 1}}}})
    c.expect_error_close({"error": "initial metadata: invalid",
                          "extra_info": {"ip": "ip: forbidden metadata key",
                                         "n": "n: value fails validation for 'integer'"}})


@pytest.mark.parametrize("md", [[1], "x", 5, True])
def test_identify_non_object_metadata_fatal(clients, md):
    a = app()
    c = clients.connect()
    c.send({"op": 1, "d": {"client_id": "x", "application_id": a, "metadata": md}})
    c.expect_error_close({"error": "initial metadata: invalid", "extra_info": {"metadata": "must be an object"}})
    q = clients.identified(uid("q"))
    assert q.query_ids({"application": a}) == set()


def test_identify_null_metadata_is_absent(clients):
    r = clients.identified(app(), metadata=None).ready
    assert r["d"]["restricted"] is False


# ---------------------------------------------------------------- CLIENT_CONNECTED / DISCONNECTED (§8.10–8.11)


def test_client_connected_events(clients):
    a, b = app(), app()
    sub1 = clients.identified(a, "s1", receive_client_updates=True)
    f = sub1.recv_frame()
    assert_delivery(f, "CLIENT_CONNECTED", None, {"app": a})
    sub2 = clients.identified(b, "s2", receive_client_updates=True, encoding="msgpack")
    assert_delivery(sub2.recv_frame(), "CLIENT_CONNECTED", None, {"app": b})
    assert_delivery(sub1.recv_frame(), "CLIENT_CONNECTED", None, {"app": b})
    non = [clients.identified(app(), receive_client_updates=v) for v in (False, "true", 1, None)]
    # each of those four connections is reported to both subscribers, and they themselves get nothing
    for _ in non:
        assert sub1.recv_frame()["t"] == "CLIENT_CONNECTED"
        assert sub2.recv_frame()["t"] == "CLIENT_CONNECTED"
    for n in non:
        n.heartbeat()
        n.expect_no_frame(0.05)
    x = app()
    xc = clients.identified(x)
    assert sub1.recv_frame()["d"]["payload"] == {"app": x}
    assert sub2.recv_frame()["d"]["payload"] == {"app": x}
    xc.close()
    assert_delivery(sub1.recv_frame(), "CLIENT_DISCONNECTED", None, {"app": x})
    assert_delivery(sub2.recv_frame(), "CLIENT_DISCONNECTED", None, {"app": x})
    sub2.close()
    assert_delivery(sub1.recv_frame(), "CLIENT_DISCONNECTED", None, {"app": b})
    sub1.expect_no_frame(0.3)


def test_receive_client_updates_non_true_is_false_in_metadata(clients):
    a = app()
    clients.identified(a, "s", receive_client_updates="true")
    q = clients.identified(uid("q"))
    [n] = q.query_nodes({"application": a})["d"]["nodes"]
    assert n["metadata"]["receive_client_updates"] is False


# ---------------------------------------------------------------- key hashing (query.md §8)


def test_fnv_vectors():
    assert fnv1a64("a") == 0xaf63dc4c8601ec8c
    assert fnv1a64("user-42") == 0x32c6d7a54d35dacb
    assert fnv1a64("") == 0xcbf29ce484222325


def test_send_key_consistent_hashing(clients):
    a = app()
    ids = ["c-b", "c-a", "c-c"]
    rs = {cid: clients.identified(a, cid) for cid in ids}
    s = clients.identified(uid("s"))
    expected_id = sorted(ids)[fnv1a64("user-42") % 3]
    assert expected_id == "c-a"
    for i in range(20):
        send(s, {"application": a, "key": "user-42"}, i)
    s.sync()
    assert [f["d"]["payload"] for f in rs[expected_id].drain(0.4)] == list(range(20))
    for cid in ids:
        if cid != expected_id:
            rs[cid].expect_no_frame(0.05)
    # other keys: "a" -> index 1, "" -> index 2
    send(s, {"application": a, "key": "a"}, "ka")
    assert rs[sorted(ids)[fnv1a64("a") % 3]].recv_frame()["d"]["payload"] == "ka"
    send(s, {"application": a, "key": ""}, "kempty")
    assert rs[sorted(ids)[fnv1a64("") % 3]].recv_frame()["d"]["payload"] == "kempty"


def test_send_key_non_string_ignored(clients):
    a = app()
    rs = [clients.identified(a, f"k{i}") for i in range(2)]
    s = clients.identified(uid("s"))
    for i in range(60):
        send(s, {"application": a, "key": 42}, i)
    s.sync()
    counts = [len(r.drain(0.3)) for r in rs]
    assert sum(counts) == 60 and min(counts) > 5, counts


# ---------------------------------------------------------------- selectors and optional (query.md §7, §9)


@pytest.fixture
def latency_clients(clients):
    a = app()
    spec = {"A": 10, "B": 50, "C": 30, "D": None, "E": "fast"}
    rs = {}
    for name, lat in spec.items():
        md = typed(region=("string", "eu"))
        if isinstance(lat, int):
            md.update(typed(latency=("integer", lat)))
        elif isinstance(lat, str):
            md.update(typed(latency=("string", lat)))
        rs[name] = clients.identified(a, name, metadata=md)
    s = clients.identified(uid("s"))
    return a, rs, s


@pytest.mark.parametrize("sel,who", [("$min", "A"), ("$max", "B"), ("$avg", "C")])
def test_send_selector(latency_clients, sel, who):
    a, rs, s = latency_clients
    for i in range(5):
        send(s, {"application": a, "selector": {sel: "latency"}}, i)
    s.sync()
    assert [f["d"]["payload"] for f in rs[who].drain(0.3)] == list(range(5))
    for name, r in rs.items():
        if name != who:
            r.expect_no_frame(0.02)


def test_selector_unknown_key_random(latency_clients):
    a, rs, s = latency_clients
    for i in range(50):
        send(s, {"application": a, "selector": {"$min": "nope"}}, i)
    s.sync()
    counts = {n: len(r.drain(0.15)) for n, r in rs.items()}
    assert sum(counts.values()) == 50 and sum(1 for v in counts.values() if v) >= 3, counts


def test_selector_empty_no_route(latency_clients):
    a, rs, s = latency_clients
    send(s, {"application": a, "ops": [{"path": "/region", "op": "$eq", "to": {"value": "us"}}],
             "selector": {"$min": "latency"}}, 1)
    assert s.expect_invalid()["error"] == "no_route"


def test_optional_fallback(latency_clients):
    a, rs, s = latency_clients
    target = {"application": a, "optional": True, "ops": [{"path": "/region", "op": "$eq", "to": {"value": "us"}}]}
    for i in range(50):
        send(s, target, i)
    s.sync()
    counts = {n: len(r.drain(0.15)) for n, r in rs.items()}
    assert sum(counts.values()) == 50 and sum(1 for v in counts.values() if v) >= 3, counts
    assert s.query_ids(target) == set(rs)
    # optional without the fallback being needed
    assert s.query_ids({**target, "ops": [{"path": "/latency", "op": "$gte", "to": {"value": 30}}]}) == {"B", "C"}
    # optional skips the selector under the fallback, restricted filter still applies
    assert s.query_ids({**target, "selector": {"$min": "latency"}}) == set(rs)


def test_optional_fallback_excludes_restricted(clients):
    a = app()
    clients.identified(a, "r", auth="pw")
    s = clients.identified(uid("s"))
    send(s, {"application": a, "optional": True, "ops": [{"path": "/x", "op": "$eq", "to": {"value": 1}}]}, 1)
    assert s.expect_invalid()["error"] == "no_route"


def test_key_after_ops(latency_clients):
    a, rs, s = latency_clients
    # B and C match; sorted [B, C]; FNV1a64("a") mod 2 = 0 -> B
    send(s, {"application": a, "key": "a", "ops": [{"path": "/latency", "op": "$gte", "to": {"value": 30}}]}, "k")
    assert rs["B"].recv_frame()["d"]["payload"] == "k"
    # A..E, key user-42 -> index 4 -> E
    send(s, {"application": a, "key": "user-42", "ops": []}, "k2")
    assert rs["E"].recv_frame()["d"]["payload"] == "k2"


# ---------------------------------------------------------------- lazily decoded payloads

@pytest.mark.parametrize("encoding", ["json", "msgpack"])
def test_metadata_key_named_payload_is_decoded_in_full(clients, encoding):
    """SEND payloads are validated but left undecoded; an UPDATE_METADATA
    whose key is "payload" is the same shape (d.payload an object) and must
    still be decoded and applied."""
    a = app()
    c = clients.identified(a, "m", encoding=encoding)
    c.update_metadata({"payload": {"type": "integer", "value": 7}})
    c.sync()
    q = clients.identified(uid("q"))
    assert q.query_ids({"application": a, "ops": [{"path": "/payload", "op": "$eq", "to": {"value": 7}}]}) == {"m"}


@pytest.mark.parametrize("payload", ['[1,tru]', '{"a" 1}', '[1,]', '["\\x"]', '[01]'])
def test_send_with_invalid_json_inside_the_payload_is_refused(clients, payload):
    """The payload is not decoded, but it is validated by the same rules:
    a SEND whose payload is not valid JSON is a decode error, nothing is
    delivered."""
    a = app()
    r = clients.identified(a)
    s = clients.identified(uid("s"))
    s.send_raw('{"op":4,"t":"SEND","d":{"target":{"application":"%s"},"payload":%s}}' % (a, payload))
    assert s.expect_error_close()["error"].startswith("decode:")
    r.expect_no_frame(0.3)
