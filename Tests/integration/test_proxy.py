"""POST /api/v1/proxy (rest.md §4) and GET /api/v1/discovery/tags (§6) on one
node, against a real local HTTP upstream registered through a client's `ip`."""

from __future__ import annotations

import hashlib
import json
import socket
import time

import pytest

from echo_upstream import EchoUpstream
from gateway_client import Clients, start_server, stop_server, uid
from gw_fixtures import start  # noqa: F401 (fixture)
from sy_helpers import RawConn, free_port

JSON_CT = "application/json; charset=utf-8"


def call(port, body, headers: dict | None = None, path="/api/v1/proxy", method="POST", timeout=10.0, host="127.0.0.1"):
    if not isinstance(body, (bytes, str)):
        body = json.dumps(body, ensure_ascii=False)
    if isinstance(body, str):
        body = body.encode()
    head = [f"{method} {path} HTTP/1.1", "Host: x", "Connection: close", f"Content-Length: {len(body)}"]
    for k, v in (headers if headers is not None else {"Content-Type": "application/json"}).items():
        head.append(f"{k}: {v}")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect((host, port))
    with RawConn(s) as c:
        c.send(("\r\n".join(head) + "\r\n\r\n").encode() + body)
        return c.read_response(timeout=timeout)


def proxy(port, app, method="GET", route="/", body=None, headers=None, query=None, auth=None, timeout=10.0, **kw):
    req = {"method": method, "route": route, "query": query or {"application": app}}
    if body is not None:
        req["body"] = body
    if headers is not None:
        req["headers"] = headers
    h = {"Content-Type": "application/json"}
    if auth is not None:
        h["Authorization"] = auth
    return call(port, req, h, timeout=timeout, **kw)


def echo_headers(r) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for k, v in r.json()["headers"]:
        out.setdefault(k.lower(), []).append(v)
    return out


@pytest.fixture(scope="module")
def upstream():
    u = EchoUpstream()
    yield u
    u.stop()


@pytest.fixture(scope="module")
def srv(upstream):
    s = start_server("--metadata-queue-interval", "0", "--proxy-timeout", "1500", "--proxy-max-response-size", "4000000",
                     "--max-body-size", "2000000")
    cl = Clients(s.port)
    app = uid("px")
    cl.identified(app, "svc-1", ip=upstream.address, tags=["web", "proxy"])
    yield s, app
    cl.close_all()
    stop_server(s)


def test_get_is_relayed_with_forwarded_for(srv, upstream):
    s, app = srv
    r = proxy(s.port, app, "GET", "/hello/world?x=1&y=%20", headers={"X-Test": "one", "x-forwarded-for": "6.6.6.6"})
    assert r.status == 200, r.body
    echo = r.json()
    assert echo["method"] == "GET" and echo["path"] == "/hello/world?x=1&y=%20"
    h = echo_headers(r)
    assert h["x-test"] == ["one"]
    assert h["x-forwarded-for"] == ["127.0.0.1"]  # the caller, replacing the user-supplied one
    # No body and nothing libcurl would add on its own.
    assert echo["body_len"] == 0
    for added in ("content-type", "expect", "accept", "user-agent", "content-length", "transfer-encoding"):
        assert added not in h, (added, h)
    assert r.header("content-type") == "application/json"
    assert r.header("content-length") == str(len(r.body))


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
def test_methods_with_json_bodies(srv, method):
    s, app = srv
    body = {"test": "key", "map": {"this": "is a map"}, "n": [1, 2.5]}
    r = proxy(s.port, app, method, "/items/7", body=body, headers={"Content-Type": "application/json"})
    assert r.status == 200, r.body
    echo = r.json()
    assert echo["method"] == method and echo["path"] == "/items/7"
    assert json.loads(echo["body"]) == body
    assert echo_headers(r)["content-type"] == ["application/json"]


def test_string_body_sent_as_is_and_absent_body_is_empty(srv):
    s, app = srv
    r = proxy(s.port, app, "POST", "/raw", body="plain text, not JSON")
    assert r.json()["body"] == "plain text, not JSON"
    assert "content-type" not in echo_headers(r)
    r = proxy(s.port, app, "POST", "/raw")
    assert r.status == 200 and r.json()["body_len"] == 0 and r.json()["method"] == "POST"
    r = proxy(s.port, app, "POST", "/raw", body=False)
    assert r.json()["body_len"] == 0


def test_head(srv):
    s, app = srv
    r = proxy(s.port, app, "HEAD", "/head")
    assert r.status == 200 and r.body == b""
    assert r.header("content-type") == "application/json"


def test_large_request_and_response_bodies(srv):
    s, app = srv
    big = "é" * 400_000  # 800 kB of UTF-8
    r = proxy(s.port, app, "POST", "/upload", body=big)
    assert r.status == 200, r.body[:200]
    assert r.json()["body_sha256"] == hashlib.sha256(big.encode()).hexdigest()
    r = proxy(s.port, app, "GET", "/big?n=3500000")
    assert r.status == 200 and len(r.body) == 3_500_000 and set(r.body) == {ord("x")}
    assert r.header("content-type") == "application/octet-stream"


def test_response_over_limit_is_a_clear_error(srv):
    s, app = srv
    r = proxy(s.port, app, "GET", "/big?n=4000001")
    assert r.status == 400 and r.json() == {"errors": ["response body over 4000000 bytes"]}


def test_request_body_over_max_body_size_is_413(srv):
    s, app = srv
    r = proxy(s.port, app, "POST", "/upload", body="x" * 2_100_000)
    assert r.status == 413


def test_redirects_followed(srv, upstream):
    s, app = srv
    r = proxy(s.port, app, "GET", "/redirect")
    assert r.status == 200 and r.json()["path"] == "/final"


def test_response_headers_relayed(srv):
    s, app = srv
    r = proxy(s.port, app, "GET", "/cookies")
    assert r.status == 200 and r.body == b"cookies"
    assert r.header_all("set-cookie") == ["a=1", "b=2"]
    assert r.header("x-upstream") == "yes"
    assert r.header("content-type") == "text/plain; charset=utf-8"
    assert r.header("connection") == "close"  # ours (the caller asked), not the upstream's keep-alive
    names = [k for k, _ in r.headers]
    assert all(k == k.lower() for k in names), names


@pytest.mark.parametrize("status", [201, 404, 503])
def test_upstream_status_relayed(srv, status):
    s, app = srv
    r = proxy(s.port, app, "GET", f"/status/{status}")
    assert r.status == status and r.json()["path"] == f"/status/{status}"


def test_slow_upstream_within_and_past_the_timeout(srv):
    s, app = srv
    r = proxy(s.port, app, "GET", "/slow?ms=200")
    assert r.status == 200
    t0 = time.monotonic()
    r = proxy(s.port, app, "GET", "/slow?ms=4000")
    took = time.monotonic() - t0
    assert r.status == 400 and r.json() == {"errors": [":timeout"]}
    assert 1.2 < took < 3.5, took


def test_upstream_reset(srv):
    s, app = srv
    r = proxy(s.port, app, "GET", "/reset")
    assert r.status == 400 and r.json()["errors"][0] in (":econnreset", ":closed"), r.body


def test_connection_reuse(srv, upstream):
    s, app = srv
    proxy(s.port, app, "GET", "/warm")
    before = upstream.connections
    for _ in range(5):
        assert proxy(s.port, app, "GET", "/again").status == 200
    assert upstream.connections == before


def test_no_match(srv):
    s, app = srv
    r = proxy(s.port, app, query={"application": app, "ops": [{"path": "/nope", "op": "$eq", "to": {"value": 1}}]})
    assert r.status == 400 and r.json() == {"errors": ["no matches"]}
    r = proxy(s.port, uid("empty"))
    assert r.status == 400 and r.json() == {"errors": ["no matches"]}


@pytest.mark.parametrize("req,expected", [
    ({}, {"method": ["no method provided"]}),
    ({"method": "GET"}, {"route": ["no route provided"]}),
    ({"method": "GET", "route": "/"}, {"query": ["no query provided"]}),
    ({"method": "MOVE", "route": "/", "query": {}},
     {"errors": ["MOVE is not a valid method! (valid methods: [\"GET\", \"HEAD\", \"POST\", \"PUT\", \"DELETE\", "
                 "\"CONNECT\", \"OPTIONS\", \"TRACE\", \"PATCH\"])"]}),
    ({"method": "OPTIONS", "route": "/", "query": {}},
     {"errors": ["OPTIONS is not a supported method! (not supported: [\"CONNECT\", \"OPTIONS\", \"TRACE\"])"]}),
    ({"method": "GET", "route": "/", "body": "x", "query": {}},
     {"errors": ["no body required but one given (you probably wanted to send nil)"]}),
    ({"method": "GET", "route": "/", "headers": "x", "query": {}}, {"errors": ["headers: must be an object of strings"]}),
    ({"method": "GET", "route": "/", "query": {"ops": 3}}, None),
])
def test_validation(srv, req, expected):
    s, _ = srv
    r = call(s.port, req)
    assert r.status == 400 and r.header("content-type") == JSON_CT
    if expected is None:
        assert r.json()["errors"][0].startswith("invalid query: ")
    else:
        assert r.json() == expected


def test_bad_json_and_url_parameters(srv):
    s, app = srv
    r = call(s.port, b"{nope")
    assert r.status == 400 and r.json() == {"errors": {"detail": "Bad Request"}}
    # URL parameters are merged under the body (rest.md §2.2).
    r = call(s.port, {"query": {"application": app}}, path="/api/v1/proxy?method=GET&route=%2Ffrom-url")
    assert r.status == 200 and r.json()["path"] == "/from-url"


def test_wrong_method_is_404(srv):
    s, _ = srv
    assert call(s.port, b"", method="GET").status == 404


def test_daemon_keeps_serving_during_slow_upstreams(srv):
    """Proxied requests do not block the loop: a second request is answered
    while the first waits for a slow upstream."""
    import threading
    s, app = srv
    results = {}
    t = threading.Thread(target=lambda: results.setdefault("slow", proxy(s.port, app, "GET", "/slow?ms=800")))
    t.start()
    time.sleep(0.1)
    t0 = time.monotonic()
    assert proxy(s.port, app, "GET", "/fast").status == 200
    assert time.monotonic() - t0 < 0.5
    t.join()
    assert results["slow"].status == 200


def test_caller_leaving_cancels_the_upstream_request(srv, upstream):
    """A caller that disconnects while its upstream request runs: the transfer
    is aborted (in-flight gauge back to 0, the upstream sees its connection
    closed) instead of running to PROXY_TIMEOUT for nobody."""
    from test_metrics import parse
    s, app = srv
    body = json.dumps({"method": "GET", "route": "/slow?ms=1400", "query": {"application": app}}).encode()
    sock = socket.create_connection(("127.0.0.1", s.port), timeout=5)
    sock.sendall(b"POST /api/v1/proxy HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)

    def in_flight():
        r = call(s.port, b"", method="GET", path="/metrics")
        return parse(r.body.decode())["singyeong_proxy_upstream_in_flight"]

    deadline = time.monotonic() + 3
    while in_flight() != 1 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert in_flight() == 1
    sock.close()
    deadline = time.monotonic() + 1
    while in_flight() != 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert in_flight() == 0  # well before the upstream answers (1.4 s) or PROXY_TIMEOUT (1.5 s)


def test_sigterm_lets_a_running_proxy_request_finish(start, upstream):
    s = start("--metadata-queue-interval", "0", "--shutdown-timeout", "3000")
    cl = Clients(s.port)
    app = uid("drain")
    cl.identified(app, "c", ip=upstream.address)
    import signal
    import threading
    result = {}
    t = threading.Thread(target=lambda: result.setdefault("r", proxy(s.port, app, "GET", "/slow?ms=600")))
    t.start()
    time.sleep(0.25)
    s.proc.send_signal(signal.SIGTERM)
    t.join(5)
    r = result["r"]
    assert r.status == 200 and r.json()["path"] == "/slow?ms=600"
    assert r.header("connection") == "close"
    assert s.proc.wait(5) == 0
    cl.close_all()


# ---------------------------------------------------------------- targets


def test_upstream_down_and_unresolvable(start):
    s = start("--metadata-queue-interval", "0")
    cl = Clients(s.port)
    down, dns = uid("down"), uid("dns")
    cl.identified(down, "c", ip=f"127.0.0.1:{free_port()}")
    cl.identified(dns, "c", ip="no-such-host.invalid:80")
    try:
        r = proxy(s.port, down)
        assert r.status == 400 and r.json() == {"errors": [":econnrefused"]}
        r = proxy(s.port, dns)
        assert r.status == 400 and r.json() == {"errors": [":nxdomain"]}
        assert "proxy upstream failed" in s.stderr()
    finally:
        cl.close_all()


def test_https_upstream_is_verified(start, tmp_path):
    """An https:// client address is verified against the system trust store:
    a self-signed upstream is refused with a `tls: ...` reason, not trusted."""
    import ssl
    from sy_helpers import make_cert
    cert, key = make_cert(tmp_path)
    u = EchoUpstream()
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(cert), str(key))
    u.socket = ctx.wrap_socket(u.socket, server_side=True)
    s = start("--metadata-queue-interval", "0")
    cl = Clients(s.port)
    app = uid("tls")
    try:
        cl.identified(app, "c", ip=f"https://127.0.0.1:{u.port}")
        r = proxy(s.port, app)
        assert r.status == 400
        reason = r.json()["errors"][0]
        assert reason.startswith("tls: ") and "certificate" in reason, reason
        assert not u.requests
    finally:
        cl.close_all()
        u.stop()


def test_auth_and_restricted_clients(start, upstream):
    s = start("--metadata-queue-interval", "0", "--auth", "sekrit", "--auth-failures-per-minute", "0")
    other = EchoUpstream()
    cl = Clients(s.port)
    app = uid("auth")
    try:
        cl.identified(app, "restricted", ip=other.address)  # no password → restricted
        assert proxy(s.port, app, auth="sekrit").json() == {"errors": ["no matches"]}
        # A query asking for restricted clients still never gets one.
        r = proxy(s.port, app, auth="sekrit", query={"application": app, "restricted": True})
        assert r.json() == {"errors": ["no matches"]}
        cl.identified(app, "full", ip=upstream.address, auth="sekrit")
        before = len(other.requests)
        for _ in range(20):
            r = proxy(s.port, app, "GET", "/who", auth="sekrit", query={"application": app, "restricted": True})
            assert r.status == 200
        assert len(other.requests) == before
        assert proxy(s.port, app).status == 401
        assert proxy(s.port, app).json() == {"status": "error", "error": "not authorized"}
        assert proxy(s.port, app, auth="wrong").status == 401
        assert proxy(s.port, app, auth="Bearer sekrit").status == 401
    finally:
        cl.close_all()
        other.stop()


def test_uniform_choice_over_matching_clients(start):
    s = start("--metadata-queue-interval", "0")
    ups = [EchoUpstream() for _ in range(3)]
    cl = Clients(s.port)
    app = uid("uni")
    try:
        for i, u in enumerate(ups):
            cl.identified(app, f"c{i}", ip=u.address, metadata={"zone": {"type": "string", "value": "a" if i < 2 else "b"}})
        q = {"application": app, "ops": [{"path": "/zone", "op": "$eq", "to": {"value": "a"}}]}
        for _ in range(60):
            assert proxy(s.port, app, query=q).status == 200
        counts = [len(u.requests) for u in ups]
        assert counts[2] == 0 and counts[0] >= 12 and counts[1] >= 12, counts
        # key: the same key always reaches the same client.
        for u in ups:
            u.requests.clear()
        for _ in range(10):
            proxy(s.port, app, query={**q, "key": "user-1"})
        assert sorted(len(u.requests) for u in ups) == [0, 0, 10]
    finally:
        cl.close_all()
        for u in ups:
            u.stop()


def test_upstream_url_forms(start):
    """ip as http://host:port/base and as a bare IPv6 address (bracketed)."""
    s = start("--metadata-queue-interval", "0")
    u4 = EchoUpstream()
    u6 = EchoUpstream(host="::1")
    cl = Clients(s.port)
    base, v6 = uid("base"), uid("v6")
    try:
        cl.identified(base, "c", ip=f"http://127.0.0.1:{u4.port}/base/")
        r = proxy(s.port, base, route="//x")
        assert r.status == 200 and r.json()["path"] == "/base/x"
        # A bare IPv6 address has no port, so it means port 80: nothing listens
        # there, and the refusal shows the URL was well formed.
        cl.identified(v6, "c", ip="::1")
        r = proxy(s.port, v6)
        assert r.json() == {"errors": [":econnrefused"]}
        bracket = uid("br")
        cl.identified(bracket, "c", ip=f"[::1]:{u6.port}")
        assert proxy(s.port, bracket).json()["path"] == "/"
    finally:
        cl.close_all()
        u4.stop()
        u6.stop()


def test_peer_address_used_without_ip_and_ipv6_caller(start):
    """Without identify `ip` the client's TCP peer address is the host (port
    80 then, so nothing answers); an IPv6 caller appears compressed in
    X-Forwarded-For."""
    s = start("--metadata-queue-interval", "0", "--bind", "::")
    u = EchoUpstream()
    cl = Clients(s.port)
    app, app2 = uid("peer"), uid("v6c")
    try:
        cl.identified(app, "c")
        assert proxy(s.port, app).json() == {"errors": [":econnrefused"]}
        cl.identified(app2, "c", ip=u.address)
        r = proxy(s.port, app2, host="::1")
        assert r.status == 200 and echo_headers(r)["x-forwarded-for"] == ["::1"]
    finally:
        cl.close_all()
        u.stop()


# ---------------------------------------------------------------- discovery


def discover(port, q, auth=None):
    path = "/api/v1/discovery/tags" if q is None else "/api/v1/discovery/tags?q=" + q
    head = f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
    if auth:
        head += f"Authorization: {auth}\r\n"
    with RawConn.open(port) as c:
        c.send((head + "\r\n").encode())
        return c.read_response()


def test_discovery_tags(start):
    s = start("--metadata-queue-interval", "0", "--auth", "1234", "--auth-failures-per-minute", "0")
    cl = Clients(s.port)
    try:
        cl.identified("test-app-1", "a", tags=["test", "cool", "memes"], auth="1234")
        cl.identified("test-app-2", "b", tags=["webscale"], auth="1234")
        cl.identified("test-app-3", "c", tags=["test", "webscale"], auth="1234")
        cl.identified("test-app-3", "d", tags=["test", "webscale"], auth="1234")  # two clients share tags
        cl.identified("test-app-4", "e", tags=["webscale"])  # restricted: tags ignored
        ok = lambda q: discover(s.port, q, "1234")  # noqa: E731
        r = ok("%5B%22test%22,%22webscale%22%5D")
        assert r.status == 200 and r.header("content-type") == JSON_CT
        assert r.json() == {"status": "ok", "result": ["test-app-3"]}
        assert ok('["webscale"]'.replace('"', "%22")).json() == {"status": "ok", "result": ["test-app-2", "test-app-3"]}
        assert ok("%5B%5D").json() == {"status": "ok", "result": []}
        assert ok("%5B%22nobody%22%5D").json() == {"status": "ok", "result": []}
        r = ok(None)
        assert r.status == 400 and r.json() == {"status": "error", "error": "no query parameter"}
        for bad in ("%5B1%5D", "notjson", "%7B%7D", "%5B%22a%22"):
            r = ok(bad)
            assert r.status == 400 and r.json() == {"status": "error", "error": "invalid query parameter"}, bad
        assert discover(s.port, "%5B%5D", "12345678").status == 401
        assert discover(s.port, "%5B%5D").status == 401
    finally:
        cl.close_all()
