"""Queues in Redis (QUEUE_STORE=redis, issue 14 points 2–4): what survives.

Every test runs real nodes against a real redis-server with an AOF fsynced on
every write, and checks the one promise of the Redis store: a QUEUE_CONFIRM
means Redis holds the message, and nothing confirmed is lost — across a
SIGKILL of the node, a graceful restart, a Redis restart, a Redis outage
(QUEUE is refused then, never falsely confirmed) — and that a node that lost
a queue's lease while frozen writes nothing stale when it wakes up."""

from __future__ import annotations

import shutil
import signal
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from cluster_fixtures import RedisServer
from gateway_client import Clients, start_server, stop_server, uid
from queue_helpers import confirm, consume, delivery, enqueue, produce, queue_list, state, wait_for

TICK_MS = 200  # CLUSTER_TICK_MS: lease renewal; the lease lasts 3 ticks


@pytest.fixture
def redis():
    d = Path(tempfile.mkdtemp(prefix="sy-redis-aof-"))
    r = RedisServer(d, appendonly=True).start()
    yield r
    r.stop(signal.SIGKILL)
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def nodes():
    """nodes(redis, group, *flags) starts a node on the Redis store and waits
    until the store is available; every node is stopped at teardown."""
    started = []

    def _start(redis, group, *flags, wait=True):
        s = start_server("--queue-store", "redis", "--redis-dsn", f"redis://127.0.0.1:{redis.port}",
                         "--cluster-group", group, "--cluster-tick-ms", str(TICK_MS),
                         "--queue-gc-interval", "100", "--auth-failures-per-minute", "0", *flags)
        started.append(s)
        if wait:
            assert wait_for(lambda: queue_list(s.port)["store_available"], timeout=10), "queue store not available"
        return s

    yield _start
    for s in started:
        if s.alive():
            s.signal(signal.SIGCONT)
            stop_server(s)


def group():
    return f"g{uuid.uuid4().hex[:12]}"


def keys(g, q):
    return f"singyeong:queue:{g}:{q}:"


def test_confirm_means_redis_holds_it(redis, nodes):
    g, q = group(), uid("q")
    s = nodes(redis, g)
    cs = Clients(s.port)
    try:
        p = cs.identified(uid("prod"))
        for i in range(20):
            enqueue(p, q, {"application": "nobody"}, {"n": i}, nonce=f"n{i}")
            confirm(p, q)
            # Confirmed: already in Redis, queued, not just in the node.
            assert redis.cmd("HLEN", keys(g, q) + "msgs") == i + 1
            assert redis.cmd("ZCARD", keys(g, q) + "queued") == i + 1
        assert redis.cmd("GET", keys(g, q) + "owner") == queue_list(s.port)["queues"][0]["owner"]
        assert q in redis.cmd("SMEMBERS", f"singyeong:queues:{g}")
    finally:
        cs.close_all()


def test_sigkill_loses_nothing_confirmed_queued_unacked_or_dead(redis, nodes):
    """A node killed with messages queued, unacknowledged and dead: a new
    node on the same Redis delivers every one of them (the unacked and dead
    ones after their timeouts), acknowledged ones never again."""
    g, q = group(), uid("q")
    app, late = uid("work"), uid("late")
    s1 = nodes(redis, g, "--queue-ack-timeout", "60000", "--queue-dlq-time", "60000")
    cs = Clients(s1.port)
    try:
        p = cs.identified(uid("prod"))
        # Dead: head messages nobody can take, while someone waits.
        idle = cs.identified(uid("idle"))
        idle.dispatch("QUEUE_REQUEST", {"queue": q})
        assert wait_for(lambda: state(s1.port, q)["waiting"] == 1)
        produce(p, q, late, range(100, 103))
        assert wait_for(lambda: state(s1.port, q)["dead"] == 3), state(s1.port, q)
        idle.close()
        assert wait_for(lambda: state(s1.port, q)["waiting"] == 0)
        produce(p, q, app, range(12))
        w = cs.identified(app)
        acked = consume(w, q, 4)  # 0..3 acknowledged
        assert consume(w, q, 3, ack=False) == [4, 5, 6]  # delivered, not acknowledged
        before = state(s1.port, q)
        assert (before["queued"], before["unacked"], before["dead"]) == (5, 3, 3), before
        # The ACKs are pipelined: wait until Redis applied them.
        assert wait_for(lambda: redis.cmd("HLEN", keys(g, q) + "msgs") == 11), redis.cmd("HLEN", keys(g, q) + "msgs")
    finally:
        cs.close_all()
    s1.signal(signal.SIGKILL)
    s1.wait_exit(5)

    # The old lease expires (3 ticks); then everything comes back, with
    # short timeouts so unacked and dead messages return quickly.
    s2 = nodes(redis, g, "--queue-ack-timeout", "500", "--queue-dlq-time", "500")
    cs = Clients(s2.port)
    try:
        assert wait_for(lambda: state(s2.port, q)["loaded"], timeout=10), state(s2.port, q)
        after = state(s2.port, q)
        assert after["queued"] + after["unacked"] + after["dead"] == 11, after
        w = cs.identified(app)
        lw = cs.identified(late)  # before w asks: the dead ones have a candidate now
        got = set(consume(w, q, 8, timeout=15))
        assert got == set(range(4, 12)), got  # the queued ones and, after the timeout, the unacked ones
        assert not got & set(acked)
        assert set(consume(lw, q, 3, timeout=15)) == {100, 101, 102}
        assert wait_for(lambda: redis.cmd("HLEN", keys(g, q) + "msgs") == 0, timeout=5)
        w.dispatch("QUEUE_REQUEST", {"queue": q})
        w.expect_no_frame(0.5)  # nothing acknowledged comes back
    finally:
        cs.close_all()


def test_graceful_restart_gives_the_lease_back(redis, nodes):
    g, q = group(), uid("q")
    s1 = nodes(redis, g)
    cs = Clients(s1.port)
    try:
        p = cs.identified(uid("prod"))
        produce(p, q, "later", range(5))
    finally:
        cs.close_all()
    assert redis.cmd("GET", keys(g, q) + "owner") is not None
    s1.signal(signal.SIGTERM)
    assert s1.wait_exit(10) == 0
    assert redis.cmd("GET", keys(g, q) + "owner") is None, "the lease outlived a graceful shutdown"
    s2 = nodes(redis, g)
    # No lease to wait for: loaded as soon as the store is connected.
    assert wait_for(lambda: state(s2.port, q)["queued"] == 5, timeout=2), state(s2.port, q)


def test_redis_restart_with_aof_loses_nothing_and_outage_refuses(redis, nodes):
    g, q = group(), uid("q")
    app = uid("work")
    s = nodes(redis, g)
    cs = Clients(s.port)
    try:
        p = cs.identified(uid("prod"))
        produce(p, q, app, range(10))
        w = cs.identified(app)
        assert consume(w, q, 2) == [0, 1]
        assert wait_for(lambda: redis.cmd("HLEN", keys(g, q) + "msgs") == 8)
        redis.stop(signal.SIGKILL)
        assert wait_for(lambda: not queue_list(s.port)["store_available"], timeout=10)
        # During the outage: a clear error, never a confirm.
        enqueue(p, q, {"application": app}, "lost?")
        f = p.recv_frame()
        assert f["op"] == 3 and "queue storage unavailable" in f["d"]["error"], f
        assert f["d"]["extra_info"] == {"queue": q}, f
        p.expect_no_frame(0.3)
        # An ACK that cannot be recorded says so (the message will come again).
        w.dispatch("QUEUE_ACK", {"queue": q, "id": str(uuid.uuid4())})
        f = w.recv_frame()
        assert f["op"] == 3 and "ACK was not recorded" in f["d"]["error"], f
        redis.start()
        assert wait_for(lambda: queue_list(s.port)["store_available"], timeout=15)
        assert wait_for(lambda: state(s.port, q)["loaded"] and state(s.port, q)["queued"] == 8, timeout=10), state(s.port, q)
        enqueue(p, q, {"application": app}, 10)
        confirm(p, q)
        assert consume(w, q, 9) == list(range(2, 11))
        assert wait_for(lambda: redis.cmd("HLEN", keys(g, q) + "msgs") == 0, timeout=5)
    finally:
        cs.close_all()
    assert "lost the Redis connection" in s.stderr()


def test_frozen_owner_does_not_write_stale_state(redis, nodes):
    """Node A holds the queue and has delivered message m; frozen (SIGSTOP)
    past its lease, node B takes the queue and delivers another. Woken up
    (SIGCONT), A's ack timeout for m fires, but its dead-letter write is
    fenced: m stays where B's state has it, and A drops its copy."""
    g, q = group(), uid("q")
    app = uid("work")
    a = nodes(redis, g, "--queue-ack-timeout", "1000")
    b = nodes(redis, g, "--queue-ack-timeout", "60000")
    ca, cb = Clients(a.port), Clients(b.port)
    try:
        p = ca.identified(uid("prod"))
        enqueue(p, q, {"application": app}, "m")
        confirm(p, q)
        enqueue(p, q, {"application": app}, "m2")
        confirm(p, q)
        wa = ca.identified(app)
        wa.dispatch("QUEUE_REQUEST", {"queue": q})
        m_id = delivery(wa)["d"]["payload"]["id"]
        # The move to unacked is written after the delivery (group commit):
        # freeze A only once Redis has it, or B would rightly deliver m again.
        assert wait_for(lambda: m_id in redis.cmd("ZRANGE", keys(g, q) + "unacked", 0, -1))
        a.signal(signal.SIGSTOP)
        time.sleep(3 * TICK_MS / 1000 + 0.5)  # A's lease expires
        wb = cb.identified(app)
        wb.dispatch("QUEUE_REQUEST", {"queue": q})
        f = delivery(wb, timeout=5)
        assert f["d"]["payload"]["payload"] == "m2"
        owner_b = state(b.port, q)["owner"]
        assert redis.cmd("GET", keys(g, q) + "owner") == owner_b
        unacked_before = redis.cmd("ZRANGE", keys(g, q) + "unacked", 0, -1, "WITHSCORES")
        time.sleep(1.2)  # m is past A's ack timeout
        a.signal(signal.SIGCONT)
        assert wait_for(lambda: not state(a.port, q)["loaded"], timeout=5), state(a.port, q)
        time.sleep(0.5)
        assert redis.cmd("ZCARD", keys(g, q) + "dead") == 0, "a stale dead-letter write got through"
        assert redis.cmd("ZRANGE", keys(g, q) + "unacked", 0, -1, "WITHSCORES") == unacked_before
        assert m_id in redis.cmd("ZRANGE", keys(g, q) + "unacked", 0, -1)
        assert redis.cmd("GET", keys(g, q) + "owner") == owner_b
        # A's producers get a clear error while B holds the queue.
        enqueue(p, q, {"application": app}, "m3")
        f = p.recv_frame(5)
        assert f["op"] == 3 and "queue storage" in f["d"]["error"], f
    finally:
        ca.close_all()
        cb.close_all()
    # Fenced (the GC's write got NOTOWNER) or caught first by the renewal.
    assert "NOTOWNER" in a.stderr() or "lease lost" in a.stderr(), a.stderr()[-2000:]
