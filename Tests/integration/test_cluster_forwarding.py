"""Forwarded routing: when every candidate of a SEND/BROADCAST can only be on
one peer (no local candidate, no other peer with the application), the
asking node sends query and message together and that peer resolves them.
The answers must be those of scatter/gather (query.md §7–§10): no_route,
droppable, key hashing, selectors, optional, exactly-once delivery."""

from __future__ import annotations

import time

from cluster_fixtures import cluster_factory, redis_factory  # noqa: F401 (fixtures)
from gateway_client import fnv1a64, uid


def _recv_payloads(clients, within=1.0):
    got = {name: [] for name in clients}
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        for name, c in clients.items():
            try:
                f = c.recv_frame(timeout=0.02)
            except Exception:
                continue
            assert f["op"] == 4, f
            got[name].append(f)
    return got


def test_forwarded_routing_matches_gathering(cluster_factory):
    cluster = cluster_factory(3)
    a, b, c = cluster.nodes
    app = uid("fwd")
    # All of the application's clients on B; C has clients of another app only.
    recv = {f"r{i}": b.identified(app, f"r{i}", metadata={"n": {"type": "integer", "value": i}}) for i in range(3)}
    c.identified(uid("other"), "x")
    sender = a.identified(uid("snd"))

    # Exactly once, spread over B's clients (uniform pick on B).
    for i in range(90):
        sender.dispatch("SEND", {"target": {"application": app}, "nonce": i, "payload": {"i": i}})
    got = _recv_payloads(recv, within=1.5)
    nonces = sorted(f["d"]["nonce"] for fs in got.values() for f in fs)
    assert nonces == list(range(90)), nonces
    assert all(len(fs) >= 15 for fs in got.values()), {k: len(v) for k, v in got.items()}
    assert got["r0"][0]["d"] == {"target": None, "nonce": got["r0"][0]["d"]["nonce"], "payload": got["r0"][0]["d"]["payload"]}

    # key: FNV-1a-64 mod n over the candidates sorted by (app, client).
    for key in ("user-42", "a", ""):
        sender.dispatch("SEND", {"target": {"application": app, "key": key}, "nonce": key, "payload": 1})
        want = sorted(recv)[fnv1a64(key) % 3]
        got = _recv_payloads(recv, within=0.4)
        assert [n for n, fs in got.items() if fs] == [want], (key, {k: len(v) for k, v in got.items()})

    # Selectors: the global min / max is on B.
    sender.dispatch("SEND", {"target": {"application": app, "selector": {"$max": "n"}}, "payload": "max"})
    got = _recv_payloads(recv, within=0.4)
    assert [n for n, fs in got.items() if fs] == ["r2"]
    sender.dispatch("BROADCAST", {"target": {"application": app, "selector": {"$min": "n"}}, "payload": "min"})
    got = _recv_payloads(recv, within=0.4)
    assert [n for n, fs in got.items() if fs] == ["r0"], "a selector makes BROADCAST pick one client"

    # BROADCAST reaches every client once.
    sender.dispatch("BROADCAST", {"target": {"application": app}, "payload": "all"})
    got = _recv_payloads(recv, within=0.5)
    assert {n: len(fs) for n, fs in got.items()} == {"r0": 1, "r1": 1, "r2": 1}

    # optional: no match on B → B's base-filter clients.
    sender.dispatch("SEND", {"target": {"application": app, "optional": True,
                                        "ops": [{"path": "/n", "op": "$gt", "to": {"value": 99}}]}, "payload": "opt"})
    got = _recv_payloads(recv, within=0.4)
    assert sum(len(fs) for fs in got.values()) == 1

    # No match: no_route to the sender with the frame as sent; droppable: silence.
    frame_d = {"target": {"application": app, "ops": [{"path": "/n", "op": "$gt", "to": {"value": 99}}]}, "nonce": "nr", "payload": 5}
    sender.dispatch("SEND", frame_d)
    d = sender.expect_invalid()
    assert d["error"] == "no_route"
    assert d["extra_info"] == {"op": 4, "t": "SEND", "ts": None, "d": frame_d}
    sender.dispatch("SEND", dict(frame_d, target=dict(frame_d["target"], droppable=True)))
    sender.expect_no_frame(within=0.5)
    assert all(not fs for fs in _recv_payloads(recv, within=0.2).values())


def test_forwarded_message_to_a_msgpack_client_is_transcoded(cluster_factory):
    cluster = cluster_factory(2)
    a, b = cluster.nodes
    app = uid("fwdmp")
    r = b.identified(app, "mp", encoding="msgpack")
    s = a.identified(uid("snd"))
    s.dispatch("SEND", {"target": {"application": app}, "nonce": 7, "payload": {"f": 1.0, "i": 1, "s": "x", "l": [None, True]}})
    f = r.recv_frame(timeout=3)
    assert f["d"] == {"target": None, "nonce": 7, "payload": {"f": 1.0, "i": 1, "s": "x", "l": [None, True]}}
    assert isinstance(f["d"]["payload"]["f"], float) and isinstance(f["d"]["payload"]["i"], int)
