"""GET /metrics (Prometheus text), /healthz and /readyz against the real binary:
the counters move with the traffic that should move them."""

from __future__ import annotations

import re

import pytest

from echo_upstream import EchoUpstream
from gateway_client import Clients, start_server, stop_server, uid
from sy_helpers import RawConn

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$')


def get(port, path, headers: dict | None = None):
    head = f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
    for k, v in (headers or {}).items():
        head += f"{k}: {v}\r\n"
    with RawConn.open(port) as c:
        c.send((head + "\r\n").encode())
        return c.read_response()


def parse(text: str) -> dict[str, float]:
    """`name{labels}` -> value; also checks every sample belongs to a declared family."""
    declared = set()
    out = {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            declared.add(line.split()[2])
            continue
        if line.startswith("#") or not line:
            continue
        m = SAMPLE.match(line)
        assert m, f"not a sample line: {line!r}"
        name = m.group(1)
        family = re.sub(r"_(bucket|sum|count)$", "", name)
        assert name in declared or family in declared, f"sample without TYPE: {line!r}"
        out[name + (m.group(2) or "")] = float(m.group(3))
    return out


@pytest.fixture
def srv():
    s = start_server("--metadata-queue-interval", "0", "--auth", "pw", "--auth-failures-per-minute", "0")
    yield s
    stop_server(s)


def scrape(s):
    r = get(s.port, "/metrics", {"Authorization": "pw"})
    assert r.status == 200
    assert r.header("content-type") == "text/plain; version=0.0.4; charset=utf-8"
    return parse(r.body.decode())


def test_health_and_ready_need_no_auth(srv):
    r = get(srv.port, "/healthz")
    assert r.status == 200 and r.json() == {"status": "ok"}
    r = get(srv.port, "/readyz")
    assert r.status == 200 and r.json() == {"status": "ready"}


def test_metrics_need_auth_and_accept_bearer(srv):
    assert get(srv.port, "/metrics").status == 401
    assert get(srv.port, "/metrics", {"Authorization": "nope"}).status == 401
    assert get(srv.port, "/metrics", {"Authorization": "Bearer pw"}).status == 200
    # Bearer is accepted for /metrics only (rest.md §2.1 for the API).
    r = get(srv.port, "/api/v1/discovery/tags?q=%5B%5D", {"Authorization": "Bearer pw"})
    assert r.status == 401


def test_counters_follow_traffic(srv):
    before = scrape(srv)
    assert before["singyeong_ready"] == 1 and before["singyeong_clustering"] == 0
    assert before['singyeong_build_info{version="0.1.0"}'] == 1
    cl = Clients(srv.port)
    up = EchoUpstream()
    try:
        app = uid("m")
        rx = [cl.identified(app, f"r{i}", auth="pw", ip=up.address) for i in range(3)]
        tx = cl.identified(uid("tx"), "tx", auth="pw")
        for i in range(10):
            tx.dispatch("SEND", {"target": {"application": app}, "nonce": i, "payload": i})
        for i in range(4):
            tx.dispatch("BROADCAST", {"target": {"application": app}, "nonce": i, "payload": i})
        tx.dispatch("SEND", {"target": {"application": "nobody"}, "nonce": "x", "payload": 1})
        assert tx.recv_frame()["d"]["error"] == "no_route"
        tx.dispatch("SEND", {"target": {"application": "nobody", "droppable": True}, "nonce": "y", "payload": 1})
        tx.query_nodes({"application": app})
        tx.sync()
        got = sum(len(c.drain(0.3)) for c in rx)
        assert got == 10 + 4 * 3
        from test_proxy import proxy
        assert proxy(srv.port, app, auth="pw").status == 200
        assert proxy(srv.port, "nobody", auth="pw").status == 400
        after = scrape(srv)
        d = lambda k: after.get(k, 0) - before.get(k, 0)  # noqa: E731
        assert d('singyeong_messages_routed_total{event="SEND"}') == 12
        assert d('singyeong_messages_routed_total{event="BROADCAST"}') == 4
        assert d('singyeong_messages_routed_total{event="QUERY_NODES"}') == 1
        assert d('singyeong_messages_delivered_total{event="SEND"}') == 10
        assert d('singyeong_messages_delivered_total{event="BROADCAST"}') == 12
        assert d('singyeong_messages_no_route_total{event="SEND"}') == 1
        assert d('singyeong_messages_dropped_total{event="SEND"}') == 1
        assert d('singyeong_proxy_requests_total{status="200"}') == 1
        assert d('singyeong_proxy_requests_total{status="400"}') == 1
        assert after["singyeong_clients"] == 4
        assert after["singyeong_connections"] >= 5
        assert d('singyeong_bytes_received_total{listener="client"}') > 500
        assert d('singyeong_bytes_sent_total{listener="client"}') > 500
        # The histogram is sampled (1 query in 64): its buckets are cumulative.
        buckets = [v for k, v in after.items() if k.startswith("singyeong_query_evaluation_seconds_bucket")]
        assert buckets == sorted(buckets) and buckets[-1] == after["singyeong_query_evaluation_seconds_count"]
    finally:
        cl.close_all()
        up.stop()


def test_query_histogram_samples(srv):
    cl = Clients(srv.port)
    try:
        tx = cl.identified(uid("tx"), "tx", auth="pw")
        for i in range(200):
            tx.dispatch("SEND", {"target": {"application": "none", "droppable": True}, "nonce": i, "payload": 1})
        tx.sync()
        m = scrape(srv)
        assert m["singyeong_query_evaluation_seconds_count"] >= 3  # 200 / 64
        assert m['singyeong_query_evaluation_seconds_bucket{le="+Inf"}'] == m["singyeong_query_evaluation_seconds_count"]
    finally:
        cl.close_all()
