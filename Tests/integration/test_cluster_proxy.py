"""The HTTP proxy and discovery across nodes (cluster.md §4.5, rest.md §4, §6):
the request runs on the node holding the chosen client and the answer
travels back; a node that dies mid-request gives the caller a clear error."""

from __future__ import annotations

import hashlib
import json
import socket
import threading
import time

from cluster_fixtures import cluster_factory, redis_factory  # noqa: F401 (fixtures)
from echo_upstream import EchoUpstream
from gateway_client import uid
from sy_helpers import RawConn


def call(host, port, req, timeout=15.0, path="/api/v1/proxy", method="POST"):
    body = json.dumps(req, ensure_ascii=False).encode()
    head = (f"{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    s = socket.create_connection((host, port), timeout=timeout)
    with RawConn(s) as c:
        c.send(head + body)
        return c.read_response(timeout=timeout)


def upstream_in_flight(node) -> float:
    """The node's singyeong_proxy_upstream_in_flight gauge."""
    from test_metrics import parse
    s = socket.create_connection((node.host, node.port), timeout=5)
    with RawConn(s) as c:
        c.send(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        return parse(c.read_response().body.decode())["singyeong_proxy_upstream_in_flight"]


def wait_until(condition, seconds: float, step: float = 0.02) -> bool:
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(step)
    return condition()


def proxy(node, app, method="GET", route="/", body=None, query=None, **kw):
    req = {"method": method, "route": route, "query": query or {"application": app}}
    if body is not None:
        req["body"] = body
    return call(node.host, node.port, req, **kw)


def test_proxy_runs_on_the_node_holding_the_client(cluster_factory):
    cluster = cluster_factory(2, extra=("--max-body-size", "2000000"))
    a, b = cluster.nodes
    up = EchoUpstream()
    app = uid("xpx")
    try:
        b.identified(app, "svc", ip=up.address)
        r = proxy(a, app, "POST", "/through/a?k=v", body={"hello": "cluster"})
        assert r.status == 200, r.body
        echo = r.json()
        assert echo["method"] == "POST" and echo["path"] == "/through/a?k=v" and json.loads(echo["body"]) == {"hello": "cluster"}
        xff = [v for k, v in echo["headers"] if k.lower() == "x-forwarded-for"]
        assert xff == ["127.0.0.1"], xff  # the REST caller's address, not node A's
        # Large bodies both ways, byte-exact.
        big = "ü" * 450_000
        r = proxy(a, app, "PUT", "/upload", body=big)
        assert r.status == 200 and r.json()["body_sha256"] == hashlib.sha256(big.encode()).hexdigest()
        r = proxy(a, app, "GET", "/big?n=3000000")
        assert r.status == 200 and len(r.body) == 3_000_000
        # Headers and status relayed through the peer.
        r = proxy(a, app, "GET", "/cookies")
        assert r.header_all("set-cookie") == ["a=1", "b=2"] and r.header("content-type") == "text/plain; charset=utf-8"
        assert proxy(a, app, "HEAD", "/h").body == b""
        assert proxy(a, app, "GET", "/status/418").status == 418
    finally:
        up.stop()


def test_upstream_failure_and_no_match_across_nodes(cluster_factory):
    cluster = cluster_factory(2)
    a, b = cluster.nodes
    down = uid("down")
    b.identified(down, "svc", ip="127.0.0.1:1")
    r = proxy(a, down)
    assert r.status == 400 and r.json() == {"errors": [":econnrefused"]}
    assert "proxy upstream failed" in b.log()
    r = proxy(a, uid("nobody"))
    assert r.status == 400 and r.json() == {"errors": ["no matches"]}


def test_choice_is_uniform_over_the_cluster(cluster_factory):
    cluster = cluster_factory(3)
    a, b, c = cluster.nodes
    ups = [EchoUpstream() for _ in range(3)]
    app = uid("spread")
    try:
        for node, u in zip((a, b, c), ups):
            node.identified(app, f"on-{node.name}", ip=u.address)
        b.identified(app, "restricted-on-b", ip=ups[1].address, auth="x")  # no AUTH set: not restricted
        for _ in range(60):
            assert proxy(a, app).status == 200
        counts = [len(u.requests) for u in ups]
        # 4 clients, two of them on B's upstream: every upstream is used.
        assert all(n >= 6 for n in counts), counts
    finally:
        for u in ups:
            u.stop()


def test_node_dying_mid_request_gives_a_clear_error(cluster_factory):
    cluster = cluster_factory(2)
    a, b = cluster.nodes
    up = EchoUpstream()
    app = uid("die")
    try:
        b.identified(app, "svc", ip=up.address)
        result = {}

        def run():
            t0 = time.monotonic()
            result["r"] = proxy(a, app, "GET", "/slow?ms=5000", timeout=20)
            result["t"] = time.monotonic() - t0

        t = threading.Thread(target=run)
        t.start()
        deadline = time.monotonic() + 5
        while not up.requests and time.monotonic() < deadline:
            time.sleep(0.02)
        assert up.requests, "the request never reached the upstream"
        b.kill9()
        t.join(20)
        r = result["r"]
        assert r.status == 502, (r.status, r.body)
        errors = r.json()["errors"]
        assert len(errors) == 1 and "went away" in errors[0] and b.node_id in errors[0], errors
        assert result["t"] < 4.5, result["t"]  # well before the upstream would have answered
        assert a.alive()
    finally:
        up.stop()


def discover(node, tags):
    q = json.dumps(tags).replace('"', "%22").replace(" ", "")
    head = f"GET /api/v1/discovery/tags?q={q} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    s = socket.create_connection((node.host, node.port), timeout=10)
    with RawConn(s) as c:
        c.send(head.encode())
        return c.read_response()


def test_discovery_is_cluster_wide(cluster_factory):
    cluster = cluster_factory(3)
    a, b, c = cluster.nodes
    apps = [uid("d1"), uid("d2"), uid("d3")]
    a.identified(apps[0], "x", tags=["t1", "t2"])
    b.identified(apps[1], "y", tags=["t2"])
    c.identified(apps[2], "z", tags=["t1", "t2", "t3"])
    b.identified(apps[0], "w", tags=["t1", "t2"])  # same application on a second node: reported once
    for node in (a, b, c):
        r = discover(node, ["t1", "t2"])
        assert r.status == 200
        assert r.json() == {"status": "ok", "result": sorted([apps[0], apps[2]])}
        assert discover(node, ["t2"]).json()["result"] == sorted(apps)
        assert discover(node, ["t3"]).json()["result"] == [apps[2]]


def test_cluster_metrics_and_readiness(cluster_factory):
    from test_metrics import parse
    cluster = cluster_factory(2)
    a, b = cluster.nodes
    for node in (a, b):
        s = socket.create_connection((node.host, node.port), timeout=5)
        with RawConn(s) as c:
            c.send(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            r = c.read_response()
        assert r.status == 200 and r.json() == {"status": "ready"}
    time.sleep(0.5)  # a ping round trip (200 ms tick)
    s = socket.create_connection((a.host, a.port), timeout=5)
    with RawConn(s) as c:
        c.send(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        m = parse(c.read_response().body.decode())
    assert m["singyeong_clustering"] == 1 and m["singyeong_peer_links_up"] == 1
    assert m["singyeong_redis_connected"] == 1 and m["singyeong_registered"] == 1
    rtt = m[f'singyeong_peer_rtt_seconds{{node="{b.node_id}"}}']
    assert 0 < rtt < 0.5
    assert m['singyeong_bytes_sent_total{listener="cluster"}'] > 0


def test_proxied_requests_to_one_peer_are_bounded(cluster_factory):
    """At most half the peer link's output bound of proxied answers may be in
    flight to one node (here 4 × 100 MB of PROXY_MAX_RESPONSE_SIZE against an
    800 MB link bound); past that the caller gets 503 instead of the link
    being reset by a burst of large responses."""
    cluster = cluster_factory(2, extra=("--proxy-max-response-size", "100000000", "--max-pending-bytes", "200000000"))
    a, b = cluster.nodes
    up = EchoUpstream()
    app = uid("bound")
    try:
        b.identified(app, "svc", ip=up.address)
        results = []
        lock = threading.Lock()

        def run():
            r = proxy(a, app, "GET", "/slow?ms=1500")
            with lock:
                results.append(r)

        threads = [threading.Thread(target=run) for _ in range(4)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 5
        while len(up.requests) < 4 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(up.requests) == 4
        r = proxy(a, app, "GET", "/fast")
        assert r.status == 503 and "too many proxied requests in flight to node" in r.json()["errors"][0], r.body
        for t in threads:
            t.join(10)
        assert sorted(r.status for r in results) == [200, 200, 200, 200]
        assert proxy(a, app, "GET", "/after").status == 200
    finally:
        up.stop()


def test_asking_node_dying_cancels_the_upstream_request(cluster_factory):
    """Node B runs an upstream request for node A; A dies: nobody can receive
    the answer, so B aborts the request instead of letting it run on."""
    cluster = cluster_factory(2)
    a, b = cluster.nodes
    up = EchoUpstream()
    app = uid("orphan")
    in_flight = lambda: upstream_in_flight(b)  # noqa: E731

    try:
        b.identified(app, "svc", ip=up.address)
        t = threading.Thread(target=lambda: _swallow(lambda: proxy(a, app, "GET", "/slow?ms=4000", timeout=10)))
        t.start()
        assert wait_until(lambda: up.requests, 5) and in_flight() == 1
        a.kill9()
        assert wait_until(lambda: in_flight() == 0, 2, 0.05)  # well before the upstream's 4 s
        t.join(10)
        assert b.alive()
    finally:
        up.stop()


def _swallow(fn):
    try:
        fn()
    except Exception:
        pass


def test_caller_leaving_cancels_the_request_on_the_peer(cluster_factory):
    """The REST caller on node A disconnects while node B runs the upstream
    request: A tells B (proxyCancel) and B aborts it."""
    cluster = cluster_factory(2)
    a, b = cluster.nodes
    up = EchoUpstream()
    app = uid("leave")
    in_flight = lambda: upstream_in_flight(b)  # noqa: E731

    try:
        b.identified(app, "svc", ip=up.address)
        body = json.dumps({"method": "GET", "route": "/slow?ms=4000", "query": {"application": app}}).encode()
        sock = socket.create_connection((a.host, a.port), timeout=5)
        sock.sendall(b"POST /api/v1/proxy HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        assert wait_until(lambda: up.requests, 5) and in_flight() == 1
        sock.close()
        assert wait_until(lambda: in_flight() == 0, 2, 0.05)  # well before the upstream's 4 s
        # The link is fine and the next request works.
        assert proxy(a, app, "GET", "/next").status == 200
    finally:
        up.stop()
