"""Cluster features beyond routing: GOODBYE load balancing (cluster.md §5)
and peer links over TLS with the COOKIE proof bound to the TLS session."""

from __future__ import annotations

import json
import queue
import re
import socket
import ssl
import subprocess
import threading
import time

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect as ws_connect

from cluster_fixtures import Cluster, cluster_factory, redis_factory  # noqa: F401 (fixtures)
from sy_helpers import make_cert


def test_goodbye_sends_the_newest_excess_clients_away(cluster_factory):
    """Two nodes, ten clients on A, none on B: A sends GOODBYE to its newest
    clients until it holds no more than max = avg + n - 1 (10 -> 6 -> 4 -> 3
    with nobody reconnecting); the oldest three stay. The clients sent away
    never show up at B, so each round waits out the grace (10 ticks, 2 s
    here) before the next."""
    cluster = cluster_factory(2)
    a = cluster.nodes[0]
    clients = [a.identified("balance-app", f"c{i}") for i in range(10)]
    said_goodbye = set()
    deadline = time.monotonic() + 12
    while time.monotonic() < deadline and len(said_goodbye) < 7:
        for i, c in enumerate(clients):
            if i in said_goodbye:
                continue
            try:
                frame = c.recv_frame(timeout=0.05)
            except Exception:
                continue
            assert frame["op"] == 7, frame
            assert frame["d"] == {"reason": "load balancing"}, frame
            said_goodbye.add(i)
            c.expect_closed(1000, timeout=2)
    assert said_goodbye == set(range(3, 10)), f"GOODBYE went to {sorted(said_goodbye)}\n{cluster.dump()}"
    # The survivors stay: nothing more for them over two more ticks.
    for c in clients[:3]:
        c.expect_no_frame(within=0.5)
    assert a.log().count("load balancing: sending GOODBYE") == 3


# Metadata comes before the message: "... clients=2 in_flight=0 local=7 ... load balancing: sending GOODBYE".
_GOODBYE_LINE = re.compile(r"\bclients=(\d+)\b.*load balancing: sending GOODBYE")


def _watch(client, name: str, goodbyes: "queue.Queue", stop: threading.Event):
    """Reader thread: puts (time, name) on `goodbyes` for a GOODBYE frame;
    ends when the connection closes (or at `stop`)."""
    while not stop.is_set():
        try:
            frame = client.decode(client.ws.recv(timeout=0.1))
        except TimeoutError:
            continue
        except ConnectionClosed:
            return
        if frame.get("op") == 7:
            goodbyes.put((time.monotonic(), name, frame))


def test_one_imbalance_gives_one_round_of_goodbyes(cluster_factory):
    """Issue 12.5: counts 7 / 1 / 1, so A sends GOODBYE to 2 (avg 3, max 5).
    The dismissed clients reconnect to B and C only after a second (5
    ticks); the ticks in between see 5 / 1 / 1, which by the bare formula
    sends a third away. The clients on their way count as still on A until
    the peers' counts show them: exactly 2 GOODBYEs in all, and none once
    settled at 5 / 2 / 2."""
    cluster = cluster_factory(3)
    a, b, c = cluster.nodes
    b.identified("balance-app", "b0")
    c.identified("balance-app", "c0")
    time.sleep(1.0)  # five ticks: A has B's and C's counts (1 each)
    goodbyes: queue.Queue = queue.Queue()
    stop = threading.Event()
    threads = []

    def watch(client, name):
        t = threading.Thread(target=_watch, args=(client, name, goodbyes, stop), daemon=True)
        t.start()
        threads.append(t)

    try:
        # Connected back to back; a tick landing in between (5 or 6 / 1 / 1)
        # sends one early, and the grace then sends just one more.
        for i in range(7):
            watch(a.identified("balance-app", f"a{i}"), f"a{i}")
        received = []  # (time, client name)
        reconnect_delay = 1.0
        targets = [b, c]
        settle_until = time.monotonic() + 4.0
        while time.monotonic() < settle_until:
            try:
                at, name, frame = goodbyes.get(timeout=0.05)
            except queue.Empty:
                continue
            assert frame["d"] == {"reason": "load balancing"}, frame
            received.append((at, name))
            # Reconnect elsewhere a second later (in order: one to B, one to C).
            wait = at + reconnect_delay - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            node = targets[(len(received) - 1) % 2]
            watch(node.identified("balance-app", name), f"{name}@{node.name}")
            # Settled: no GOODBYE for 3 s (15 ticks) after the last reconnect.
            settle_until = time.monotonic() + 3.0
        sent = [int(m.group(1)) for n in cluster.nodes for m in _GOODBYE_LINE.finditer(n.log())]
        assert len(received) == 2, f"GOODBYE frames to {received}\n{cluster.dump()}"
        assert sum(sent) == 2, f"nodes logged GOODBYEs {sent}\n{cluster.dump()}"
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=2)


def test_load_balance_false_sends_nobody_away(cluster_factory):
    cluster = cluster_factory(2, extra=("--load-balance", "false"))
    a = cluster.nodes[0]
    clients = [a.identified("balance-app", f"c{i}") for i in range(10)]
    time.sleep(1.0)  # five ticks
    for c in clients:
        c.expect_no_frame(within=0.05)
    assert "load balancing" not in a.log()


def _tls_context() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def test_peer_links_use_tls_when_configured(cluster_factory, tmp_path):
    make_cert(tmp_path)
    cert, key = str(tmp_path / "cert.pem"), str(tmp_path / "key.pem")
    cluster = cluster_factory(2, extra=("--tls-cert", cert, "--tls-key", key))
    a, b = cluster.nodes
    # The cluster port speaks TLS: a TLS handshake succeeds on it...
    with socket.create_connection((b.host, b.cluster_port), timeout=3) as raw:
        with _tls_context().wrap_socket(raw) as tls:
            assert tls.version() in ("TLSv1.2", "TLSv1.3")
    # ...and routing across the TLS link works (clients over wss).
    def client(node, app):
        ws = ws_connect(f"wss://{node.host}:{node.port}/gateway/websocket", ssl=_tls_context(), open_timeout=5)
        assert json.loads(ws.recv(timeout=3))["op"] == 0
        ws.send(json.dumps({"op": 1, "d": {"client_id": app + "-1", "application_id": app}}))
        assert json.loads(ws.recv(timeout=3))["op"] == 2
        return ws
    sender, receiver = client(a, "tls-send"), client(b, "tls-recv")
    try:
        for i in range(20):
            sender.send(json.dumps({"op": 4, "t": "SEND", "d": {
                "target": {"application": "tls-recv"}, "nonce": i, "payload": {"i": i}}}))
        got = []
        deadline = time.monotonic() + 5
        while len(got) < 20 and time.monotonic() < deadline:
            try:
                frame = json.loads(receiver.recv(timeout=0.2))
            except TimeoutError:
                continue
            assert frame["op"] == 4 and frame["t"] == "SEND", frame
            got.append(frame["d"]["nonce"])
        assert got == list(range(20)), got  # all delivered, in order, over the TLS link
    finally:
        sender.close()
        receiver.close()


def test_plain_node_cannot_join_a_tls_cluster(cluster_factory, tmp_path):
    """A node without TLS dials (or is dialed by) TLS nodes: no link forms,
    and the TLS nodes keep their own link."""
    make_cert(tmp_path)
    cert, key = str(tmp_path / "cert.pem"), str(tmp_path / "key.pem")
    cluster = cluster_factory(2, extra=("--tls-cert", cert, "--tls-key", key))
    plain = cluster.add("P")
    time.sleep(1.5)
    assert plain.linked() == set(), plain.log()
    a, b = cluster.nodes[:2]
    assert a.linked() == {b.node_id} and b.linked() == {a.node_id}
