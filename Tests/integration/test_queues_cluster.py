"""Queues in a cluster (issue 14 points 3 and 6): three real nodes and a real
Redis (QUEUE_STORE=redis, the default when clustering). One node owns each
queue (the lease holder); the others forward their clients' operations to
it. Faults: the owner killed with messages queued, unacknowledged and dead;
the owner frozen past its lease; the whole cluster restarted; Redis
restarted with its AOF; a partition [A B] [C].

The invariant checked after every fault: every confirmed message that was
not acknowledged is delivered afterwards (duplicates only of messages that
were delivered but not acknowledged, as the spec allows), and no QUEUE got
a QUEUE_CONFIRM without being stored."""

from __future__ import annotations

import re
import shutil
import signal
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from cluster_fixtures import NOBODY_UID, Cluster, RedisServer, cluster_factory, redis_factory  # noqa: F401 (fixtures)
from gateway_client import uid
from queue_helpers import confirm, consume, delivery, enqueue, produce, state, wait_for

GC_MS = 100
# No GOODBYE load balancing: after a node is killed the others would send
# the test's newest clients away.
FLAGS = ("--queue-gc-interval", str(GC_MS), "--load-balance", "false")
# Unacknowledged and dead messages come back within 2 s.
SHORT = ("--queue-ack-timeout", "1000", "--queue-dlq-time", "1000")


def qstate(node, q):
    return state(node.port, q, host=node.host)


def owner_of(nodes, q):
    """The node whose mirror of `q` is loaded (the lease holder)."""
    held = [n for n in nodes if n.alive() and qstate(n, q)["loaded"]]
    assert len(held) <= 1, f"two nodes hold {q}: {[n.name for n in held]}"
    return held[0] if held else None


def make_cluster(cluster_factory, n=3, *flags):
    return cluster_factory(n, extra=FLAGS + flags)


def test_producers_and_consumers_on_different_nodes(cluster_factory):
    cl = make_cluster(cluster_factory)
    A, B, C = cl.nodes
    q, app = uid("q"), uid("work")
    pa = A.identified(uid("prod"))
    produce(pa, q, app, range(10))
    owner = owner_of(cl.nodes, q)
    assert owner is not None
    assert qstate(owner, q)["queued"] == 10 and qstate(owner, q)["owner"] == owner.node_id
    # Every node's consumers get messages, each exactly once.
    consumers = [n.identified(app) for n in (A, B, C)]
    got = []
    for c in consumers:
        got += consume(c, q, 3)
    pb = B.identified(uid("prod"))
    produce(pb, q, app, range(10, 15))
    for c in consumers:
        got += consume(c, q, 2 if c is not consumers[2] else 0)
    got += consume(consumers[2], q, 2)
    assert sorted(got) == list(range(15)), got
    assert wait_for(lambda: qstate(owner, q)["unacked"] == 0 and qstate(owner, q)["queued"] == 0)
    # A consumer waiting on another node is served as soon as a message comes.
    cc = consumers[2]
    cc.dispatch("QUEUE_REQUEST", {"queue": q})
    assert wait_for(lambda: qstate(owner, q)["waiting"] == 1, timeout=5)
    produce(pa, q, app, ["late"])
    f = delivery(cc, timeout=5)
    assert f["d"]["payload"]["payload"] == "late"
    cc.dispatch("QUEUE_ACK", {"queue": q, "id": f["d"]["payload"]["id"]})
    assert wait_for(lambda: cl.redis.cmd("HLEN", f"singyeong:queue:singyeong:{q}:msgs") == 0)


def test_queues_spread_over_the_nodes(cluster_factory):
    cl = make_cluster(cluster_factory)
    A = cl.nodes[0]
    p = A.identified(uid("prod"))
    owners = {}
    for i in range(24):
        q = f"spread-{uuid.uuid4().hex[:8]}-{i}"
        produce(p, q, "nobody", [i])
        owners[q] = owner_of(cl.nodes, q).name
    counts = {n.name: list(owners.values()).count(n.name) for n in cl.nodes}
    assert all(c >= 3 for c in counts.values()), counts  # 24 queues, 3 nodes: ~8 each


def test_owner_killed_with_queued_unacked_and_dead_loses_nothing(cluster_factory):
    cl = make_cluster(cluster_factory, 3, *SHORT)
    q, app, late = uid("q"), uid("work"), uid("late")
    # A queue this test's producer node does not own.
    owner = None
    while owner is None or owner is cl.nodes[0]:
        q = uid("q")
        p = cl.nodes[0].identified(uid("prod"))
        produce(p, q, app, ["probe"])
        owner = owner_of(cl.nodes, q)
    others = [n for n in cl.nodes if n is not owner]
    producer_node, consumer_node = others[0], others[1]
    p = producer_node.identified(uid("prod"))
    w = consumer_node.identified(app)
    assert consume(w, q, 1) == ["probe"]
    # Dead: head messages nobody can take while someone waits.
    idle = consumer_node.identified(uid("idle"))
    idle.dispatch("QUEUE_REQUEST", {"queue": q})
    assert wait_for(lambda: qstate(owner, q)["waiting"] == 1, timeout=5)
    produce(p, q, late, [100, 101])
    assert wait_for(lambda: qstate(owner, q)["dead"] == 2, timeout=5), qstate(owner, q)
    idle.close()
    produce(p, q, app, range(10))
    acked = consume(w, q, 3)
    unacked = consume(w, q, 3, ack=False)
    assert acked == [0, 1, 2] and unacked == [3, 4, 5]
    key = f"singyeong:queue:singyeong:{q}:"
    assert wait_for(lambda: cl.redis.cmd("HLEN", key + "msgs") == 9, timeout=5)
    owner.kill9()
    # The lease expires (3 ticks); the next request goes to a new owner.
    lw = producer_node.identified(late)
    got = set(consume(w, q, 7, timeout=30))
    assert got == set(range(3, 10)), got  # 6..9 queued, 3..5 after the ack timeout
    assert set(consume(lw, q, 2, timeout=30)) == {100, 101}
    new_owner = owner_of(others, q)
    assert new_owner is not None and new_owner is not owner
    assert wait_for(lambda: cl.redis.cmd("HLEN", key + "msgs") == 0, timeout=5)


def test_frozen_owner_is_replaced_and_writes_nothing_stale(cluster_factory):
    cl = make_cluster(cluster_factory, n=3)
    q, app = uid("q"), uid("work")
    p = cl.nodes[0].identified(uid("prod"))
    produce(p, q, app, ["m1", "m2", "m3"])
    owner = owner_of(cl.nodes, q)
    others = [n for n in cl.nodes if n is not owner]
    w = others[0].identified(app)
    assert consume(w, q, 1, ack=False) == ["m1"]  # unacked at the owner
    key = f"singyeong:queue:singyeong:{q}:"
    # The move is written after the delivery: freeze once Redis has it.
    assert wait_for(lambda: cl.redis.cmd("ZCARD", key + "unacked") == 1)
    owner.proc.send_signal(signal.SIGSTOP)
    try:
        # Links to it time out, its lease expires, another node takes over.
        got = consume(w, q, 2, timeout=30, ack=False)
        assert sorted(got) == ["m2", "m3"], got
        new_owner = owner_of(others, q)
        assert new_owner is not None
        unacked_before = cl.redis.cmd("ZRANGE", key + "unacked", 0, -1)
        holder = cl.redis.cmd("GET", key + "owner")
        assert holder == new_owner.node_id
    finally:
        owner.proc.send_signal(signal.SIGCONT)
    time.sleep(1.5)  # the old owner's timers fire: its writes are fenced
    assert cl.redis.cmd("GET", key + "owner") == new_owner.node_id
    assert sorted(cl.redis.cmd("ZRANGE", key + "unacked", 0, -1)) == sorted(unacked_before)
    assert cl.redis.cmd("ZCARD", key + "dead") == 0
    assert owner_of(cl.nodes, q) is new_owner, "the woken node still serves a queue it lost"


def test_whole_cluster_restart_loses_nothing(cluster_factory):
    cl = make_cluster(cluster_factory)
    q, app = uid("q"), uid("work")
    p = cl.nodes[1].identified(uid("prod"))
    produce(p, q, app, range(20))
    w = cl.nodes[2].identified(app)
    assert consume(w, q, 5) == [0, 1, 2, 3, 4]
    key = f"singyeong:queue:singyeong:{q}:"
    assert wait_for(lambda: cl.redis.cmd("HLEN", key + "msgs") == 15, timeout=5)
    for n in cl.nodes:
        n.kill9()
    for n in cl.nodes:
        n.start()
    cl.wait_mesh(cl.nodes, timeout=15)
    w = cl.nodes[0].identified(app)
    assert sorted(consume(w, q, 15, timeout=30)) == list(range(5, 20))
    assert wait_for(lambda: cl.redis.cmd("HLEN", key + "msgs") == 0, timeout=5)


def test_redis_restart_with_aof_in_a_cluster(redis_factory):
    d = Path(tempfile.mkdtemp(prefix="sy-redis-aof-"))
    redis = RedisServer(d, appendonly=True).start()
    cl = Cluster(redis)
    try:
        cl.start(3, extra=FLAGS)
        q, app = uid("q"), uid("work")
        p = cl.nodes[0].identified(uid("prod"))
        produce(p, q, app, range(8))
        key = f"singyeong:queue:singyeong:{q}:"
        assert cl.redis.cmd("HLEN", key + "msgs") == 8
        redis.stop(signal.SIGKILL)
        enqueue(p, q, {"application": app}, "during")
        f = p.recv_frame(10)
        assert f["op"] == 3 and "queue storage" in f["d"]["error"], f  # never a false confirm
        redis.start()
        w = cl.nodes[1].identified(app)
        assert sorted(consume(w, q, 8, timeout=30)) == list(range(8))
    finally:
        cl.close()
        cl.release_files(keep=False)
        redis.stop(signal.SIGKILL)
        shutil.rmtree(d, ignore_errors=True)


def test_partition_ab_c_keeps_queues_single_owned(cluster_factory):
    """[A B] [C] with Redis reachable from both sides: a queue is served by
    exactly one side (the lease holder's); the other side's clients get a
    clear error, never a false confirm; after healing everything confirmed
    is delivered."""
    from test_cluster import _Firewall, _isolate
    if shutil.which("iptables") is None:
        pytest.fail("iptables not installed (apt-get install -y iptables): needed for the partition test")
    cl = cluster_factory(0)
    A = cl.add(extra=FLAGS)
    B = cl.add(extra=FLAGS)
    C = cl.add(user=NOBODY_UID, extra=FLAGS)
    cl.wait_mesh([A, B, C])
    app = uid("work")
    # A queue owned on the [A B] side.
    pa = A.identified(uid("prod"))
    while True:
        q = uid("q")
        produce(pa, q, app, ["before"])
        if owner_of([A, B, C], q) is not C:
            break
    pc = C.identified(uid("prod"))
    fw = _Firewall(f"singyeong-queue-test-{C.cluster_port}")
    confirmed = {"before"}
    try:
        _isolate(fw, C, [A, B])
        assert wait_for(lambda: A.linked() == {B.node_id} and C.linked() == set(), timeout=10)
        produce(pa, q, app, ["ab1", "ab2"])
        confirmed |= {"ab1", "ab2"}
        for i in range(3):
            enqueue(pc, q, {"application": app}, f"c{i}")
            f = pc.recv_frame(10)
            if f["t"] == "QUEUE_CONFIRM":
                confirmed.add(f"c{i}")
            else:
                assert f["op"] == 3 and "queue" in f["d"]["error"], f
        owners = [n for n in (A, B, C) if qstate(n, q)["loaded"]]
        assert len(owners) == 1, [n.name for n in owners]
    finally:
        fw.close()
    cl.wait_mesh([A, B, C], timeout=15)
    w = C.identified(app)
    got = consume(w, q, len(confirmed), timeout=30)
    assert set(got) == confirmed, (got, confirmed)


def test_repeated_requests_leave_the_metadata_out_until_it_matters(cluster_factory):
    """A consumer waiting on a queue held by another node is sent again every
    GC interval. Once the owner keeps its metadata, the repeats leave it out
    (trace log of the consumer's node); a metadata change still reaches the
    owner (a deliver-only attempt there); and when the owner dropped the
    shadow meanwhile (the consumer's node frozen past 3 GC intervals, the
    links still up), the next repeat is answered "send the metadata" and the
    consumer is served again. Cluster ticks of 1 s keep the links, the
    registry and the lease alive through a 1 s freeze."""
    cl = make_cluster(cluster_factory, 2, "--cluster-tick-ms", "1000", "--log-level", "trace")
    q, app = uid("q"), uid("work")
    p = cl.nodes[0].identified(uid("prod"))
    produce(p, q, app, ["first"])
    owner = owner_of(cl.nodes, q)
    other = next(n for n in cl.nodes if n is not owner)
    c = other.identified(app, metadata={"role": {"type": "string", "value": "a"}})
    assert consume(c, q, 1) == ["first"]
    mark = other.log_size()
    c.dispatch("QUEUE_REQUEST", {"queue": q})
    assert wait_for(lambda: qstate(owner, q)["waiting"] == 1, timeout=5)

    def short_repeat_since(offset):
        """A refresh line of one waiting request sent without its metadata."""
        return any("queue requests sent again" in line and re.search(r"\bcount=1\b", line)
                   and re.search(r"\bwithout_metadata=1\b", line) for line in other.log()[offset:].splitlines())

    assert wait_for(lambda: short_repeat_since(mark), timeout=5), other.log()[mark:][-3000:]
    # A message for role b: not for this consumer until its metadata says so.
    role_b = {"application": app, "ops": [{"path": "/role", "op": "$eq", "to": {"value": "b"}}]}
    enqueue(p, q, role_b, "for-b")
    confirm(p, q)
    c.expect_no_frame(0.5)
    c.update_metadata({"role": {"type": "string", "value": "b"}})
    f = delivery(c, timeout=5)
    assert f["d"]["payload"]["payload"] == "for-b"
    c.dispatch("QUEUE_ACK", {"queue": q, "id": f["d"]["payload"]["id"]})
    # Waiting again with short repeats; then the owner forgets the shadow.
    mark = other.log_size()
    c.dispatch("QUEUE_REQUEST", {"queue": q})
    assert wait_for(lambda: short_repeat_since(mark), timeout=5)
    other.proc.send_signal(signal.SIGSTOP)
    try:
        assert wait_for(lambda: qstate(owner, q)["waiting"] == 0, timeout=0.9), "the shadow was not dropped"
    finally:
        other.proc.send_signal(signal.SIGCONT)
    assert wait_for(lambda: qstate(owner, q)["waiting"] == 1, timeout=5), "the consumer was not sent again in full"
    produce(p, q, app, ["after"])
    f = delivery(c, timeout=5)
    assert f["d"]["payload"]["payload"] == "after"
