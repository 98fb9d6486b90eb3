"""Hostile use of POST /api/v1/proxy: a client's `ip` (or an upstream's
redirect) aiming the node at an address it must not reach, at the node
itself, at more response bytes than the node will buffer, or at host names
that never resolve.

Traffic stays on loopback: PROXY_DENY=127.0.0.2/32 stands in for the
default link-local / metadata rules (those are checked by the table-driven
Swift tests of the matcher, never by a connection)."""

from __future__ import annotations

import os
import re
import shutil
import threading
import time

import pytest

import conftest
from cluster_fixtures import cluster_factory, redis_factory  # noqa: F401 (fixtures)
from echo_upstream import EchoUpstream
from gateway_client import Clients, start_server, stop_server, uid
from sy_helpers import HOST, free_port
from test_proxy import proxy

DENIED = "127.0.0.2"
needs_namespace = pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None,
                                     reason="needs root and unshare(1) for a private /etc/hosts and /etc/resolv.conf")


@pytest.fixture(scope="module")
def allowed():
    u = EchoUpstream("127.0.0.1")
    yield u
    u.stop()


@pytest.fixture(scope="module")
def denied():
    u = EchoUpstream(DENIED)
    yield u
    u.stop()


@pytest.fixture(scope="module")
def node():
    s = start_server("--metadata-queue-interval", "0", "--proxy-timeout", "5000", "--proxy-deny", f"{DENIED}/32")
    yield s
    stop_server(s)


def via(port: int, ip: str, route: str = "/", **kw):
    """Proxies GET `route` to a fresh client whose `ip` is `ip`."""
    cl = Clients(port)
    app = uid("hp")
    try:
        cl.identified(app, "c", ip=ip)
        return proxy(port, app, "GET", route, **kw)
    finally:
        cl.close_all()


def assert_denied(r, reason: str | re.Pattern):
    assert r.status == 400, (r.status, r.body)
    errors = r.json()["errors"]
    assert len(errors) == 1, errors
    if isinstance(reason, str):
        assert errors[0] == reason, errors
    else:
        assert reason.fullmatch(errors[0]), errors


# ---------------------------------------------------------------- PROXY_DENY


def test_denied_address_is_refused_and_others_still_served(node, allowed, denied):
    before = len(denied.requests)
    assert_denied(via(node.port, denied.address), f"egress denied: {DENIED}")
    assert len(denied.requests) == before  # never connected (not just no answer relayed)
    assert f"egress denied: {DENIED}" in node.stderr()  # the log line
    r = via(node.port, allowed.address, "/fine")
    assert r.status == 200 and r.json()["path"] == "/fine"


def test_ipv4_mapped_ipv6_address_matches_the_ipv4_rule(node, denied):
    before = len(denied.requests)
    assert_denied(via(node.port, f"[::ffff:{DENIED}]:{denied.port}"), f"egress denied: {DENIED}")
    assert_denied(via(node.port, f"http://[::ffff:{DENIED}]:{denied.port}/base"), f"egress denied: {DENIED}")
    assert len(denied.requests) == before


def test_redirect_to_a_denied_address_is_refused(node, allowed, denied):
    before = len(denied.requests)
    r = via(node.port, allowed.address, f"/redirect-to?url=http://{DENIED}:{denied.port}/stolen")
    assert_denied(r, f"egress denied: {DENIED}")
    assert ("GET", f"/redirect-to?url=http://{DENIED}:{denied.port}/stolen") in allowed.requests
    assert len(denied.requests) == before
    # A redirect to an allowed address is still followed.
    r = via(node.port, allowed.address, f"/redirect-to?url=http://127.0.0.1:{allowed.port}/landed")
    assert r.status == 200 and r.json()["path"] == "/landed"


def test_explicitly_empty_proxy_deny_means_no_rule(spawn, denied):
    s = spawn("--metadata-queue-interval", "0", env={"PROXY_DENY": ""})
    r = via(s.port, denied.address, "/open")
    assert r.status == 200 and r.json()["path"] == "/open"
    # This node's own port stays refused whatever PROXY_DENY says.
    assert_denied(via(s.port, f"127.0.0.1:{s.port}"), f"egress denied: 127.0.0.1 port {s.port} (this node)")


@pytest.mark.parametrize("value, expected", [
    ("10.0.0.1/8", "did you mean 10.0.0.0/8?"),
    ("169.254.0.0/33", "prefix length must be a number from 0 to 32"),
    ("metadata.internal", "is not a numeric IPv4 or IPv6 address"),
    ("127.0.0.2/32,,fe80::/10", "empty entry"),
])
def test_invalid_proxy_deny_stops_start_up_naming_it(cli, value, expected):
    r = cli("--port", str(free_port()), "--bind", HOST, "--proxy-deny", value, timeout=10)
    assert r.returncode != 0
    assert "PROXY_DENY" in r.stderr and expected in r.stderr, r.stderr


# ---------------------------------------------------------------- this node's own ports


def test_request_looping_into_this_node_is_refused(node, allowed):
    port = node.port
    own = re.compile(rf"egress denied: (127\.0\.0\.1|::1|127\.0\.0\.3) port {port} \(this node\)")
    for ip in (f"127.0.0.1:{port}", f"http://127.0.0.1:{port}/api/v1", f"localhost:{port}", f"[::1]:{port}",
               f"127.0.0.3:{port}", f"[::ffff:127.0.0.1]:{port}"):
        assert_denied(via(port, ip), own)
    # Through a redirect from an allowed upstream.
    assert_denied(via(port, allowed.address, f"/redirect-to?url=http://127.0.0.1:{port}/api/v1/proxy"), own)
    # Another port of this host is fine (the echo upstream).
    assert via(port, allowed.address).status == 200


def test_cluster_port_is_refused_too(cluster_factory):
    cluster = cluster_factory(2)
    a, _ = cluster.nodes
    app = uid("hpc")
    try:
        a.identified(app, "c", ip=f"{a.host}:{a.cluster_port}")
        from test_cluster_proxy import proxy as cluster_proxy
        r = cluster_proxy(a, app)
        assert_denied(r, f"egress denied: {a.host} port {a.cluster_port} (this node)")
    finally:
        a.close_clients()


# ---------------------------------------------------------------- buffered bytes budget


def test_buffered_response_bytes_have_one_node_wide_budget(spawn, allowed):
    # Each response fits PROXY_MAX_RESPONSE_SIZE; two at once do not fit the budget.
    s = spawn("--metadata-queue-interval", "0", "--proxy-timeout", "10000", "--proxy-max-buffered-bytes", "1000000")
    cl = Clients(s.port)
    app = uid("hpb")
    try:
        cl.identified(app, "c", ip=allowed.address)
        results: list = [None, None]

        def run(i):
            # 600 kB, a pause, then the rest: both responses are half-buffered at once.
            results[i] = proxy(s.port, app, "GET", "/big?n=700000&first=600000&pause_ms=1500", timeout=15)

        threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(20)
        statuses = sorted(r.status for r in results)
        assert statuses == [200, 503], [(r.status, r.body[:200]) for r in results]
        ok = next(r for r in results if r.status == 200)
        full = next(r for r in results if r.status == 503)
        assert ok.body == b"x" * 700000
        assert full.json() == {"errors": [
            "upstream responses buffered by this node are at their bound (1000000 bytes); try again later"]}
        log = s.stderr()
        assert "proxy upstream failed" in log and "at their bound (1000000 bytes)" in log, log[-2000:]
        # The budget is returned once responses leave: the same response fits again.
        r = proxy(s.port, app, "GET", "/big?n=700000")
        assert r.status == 200 and len(r.body) == 700000
    finally:
        cl.close_all()


# ---------------------------------------------------------------- names (private /etc/hosts, stalled DNS)


@needs_namespace
def test_name_resolving_to_a_denied_address_is_refused(allowed, denied):
    from test_proxy_dns import PrivateDNSNode
    n = PrivateDNSNode("--proxy-timeout", "5000", "--proxy-deny", f"{DENIED}/32",
                       hosts=f"127.0.0.1 localhost allowed.test\n{DENIED} denied.test\n")
    try:
        before = len(denied.requests)
        assert_denied(via(n.port, f"denied.test:{denied.port}"), f"egress denied: {DENIED}")
        assert len(denied.requests) == before
        r = via(n.port, f"allowed.test:{allowed.port}", "/named")
        assert r.status == 200 and r.json()["path"] == "/named"
        # A name for this node's own port.
        assert_denied(via(n.port, f"allowed.test:{n.port}"), f"egress denied: 127.0.0.1 port {n.port} (this node)")
    finally:
        n.close()


def thread_count(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return int(next(line for line in f if line.startswith("Threads:")).split()[1])


@needs_namespace
def test_pending_name_lookups_are_capped(allowed):
    from test_proxy_dns import PrivateDNSNode
    n = PrivateDNSNode("--proxy-timeout", "800", "--proxy-max-pending-lookups", "2",
                       hosts="127.0.0.1 localhost allowed.test\n")
    cl = Clients(n.port)
    app = uid("hpl")
    try:
        cl.identified(app, "c", ip="never-resolves.example:80")
        cl.identified(app + "-ip", "c", ip=allowed.address)
        cl.identified(app + "-name", "c", ip=f"allowed.test:{allowed.port}")
        results: list = [None, None]

        def run(i):
            results[i] = proxy(n.port, app, timeout=15)

        threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        n.sink.settimeout(5)
        n.sink.recvfrom(512)  # lookups under way
        time.sleep(0.1)
        # Two names resolving: a third name is refused at once, an IP literal is not.
        t0 = time.monotonic()
        r = proxy(n.port, app + "-name")
        assert r.status == 503 and r.json() == {"errors": ["too many upstream host names being resolved (2); try again later"]}
        assert time.monotonic() - t0 < 0.5
        assert proxy(n.port, app + "-ip").status == 200
        for t in threads:
            t.join(15)
        assert [r.json() for r in results] == [{"errors": [":timeout"]}] * 2
        # Their transfers timed out, but the resolver threads libcurl detached
        # still wait on the silent DNS server: their slots stay taken.
        assert thread_count(n.proc.pid) >= 3
        r = proxy(n.port, app + "-name")
        assert r.status == 503, r.body
        assert "too many upstream host names being resolved (2)" in n.stderr()
    finally:
        cl.close_all()
        n.close()
