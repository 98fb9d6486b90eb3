"""Queues on one node (queues.md, protocol.md §8.5–8.9, issue 14): the test
scenarios of queues.md §8 over the wire, plus bounds and bad input, each run
twice: QUEUE_STORE=memory and QUEUE_STORE=redis (a real redis-server).
State is read through GET /api/v1/queues/<name>. Durability (restarts,
Redis outages, fencing) is in test_queues_durable.py.

Scenarios about timeouts run on a server with ack_timeout = dlq_time =
gc_interval = 250 ms (the spec's test configuration says 100 ms; 250 leaves
room for a loaded 2-core CI machine, where a 100 ms stall of the test
process would let a message time out between two steps). Everything else
runs on a server with the default 15 s timeouts, so nothing times out
under it."""

from __future__ import annotations

import json
import shutil
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid

from pathlib import Path

import pytest

from cluster_fixtures import RedisServer
from gateway_client import Clients, start_server, stop_server, uid
from gw_fixtures import start  # noqa: F401 (fixture)
from queue_helpers import confirm, delivery, enqueue, qname, queue_list, state, wait_for

TICK = 0.25  # ack_timeout = dlq_time = gc_interval of `tserver`, seconds


@pytest.fixture(scope="module", params=["memory", "redis"])
def store(request):
    """The QUEUE_STORE every scenario runs with: memory, then a real Redis
    (each server its own CLUSTER_GROUP, so their keys never meet)."""
    if request.param == "memory":
        yield lambda: []
        return
    d = Path(tempfile.mkdtemp(prefix="sy-redis-"))
    r = RedisServer(d).start()
    yield lambda: ["--queue-store", "redis", "--redis-dsn", f"redis://127.0.0.1:{r.port}",
                   "--cluster-group", f"q{uuid.uuid4().hex[:12]}"]
    r.stop()
    shutil.rmtree(d, ignore_errors=True)


def start_queue_server(*flags):
    s = start_server(*flags)
    # With Redis, QUEUE is refused until the store is connected.
    assert wait_for(lambda: queue_list(s.port)["store_available"], timeout=10), "queue store not available"
    return s


@pytest.fixture(scope="module")
def tserver(store):
    """Short queue timeouts (TICK)."""
    ms = str(int(TICK * 1000))
    s = start_queue_server("--queue-ack-timeout", ms, "--queue-dlq-time", ms, "--queue-gc-interval", ms,
                           "--metadata-queue-interval", "100", "--auth-failures-per-minute", "0", *store())
    yield s
    stop_server(s)


@pytest.fixture(scope="module")
def qserver(store):
    """Default queue timeouts: nothing times out during a test."""
    s = start_queue_server("--metadata-queue-interval", "100", "--auth-failures-per-minute", "0", *store())
    yield s
    stop_server(s)


@pytest.fixture
def clients(qserver):
    c = Clients(qserver.port)
    yield c
    c.close_all()


@pytest.fixture
def tclients(tserver):
    c = Clients(tserver.port)
    yield c
    c.close_all()


# ------------------------------------------------------------- §8 scenarios


def test_1_queue_confirms_and_stores(clients, qserver):
    q = qname()
    c = clients.identified("test-app-1", uid("client"))
    enqueue(c, q, {"application": "test-app-1", "ops": []}, "test!", nonce=None)
    confirm(c, q)
    assert state(qserver.port, q)["queued"] == 1
    c.expect_no_frame(0.2)


def test_2_request_delivers_once(clients, qserver):
    q = qname()
    c = clients.identified("test-app-1", uid("client"))
    enqueue(c, q, {"application": "test-app-1", "ops": []}, "test!", nonce=None)
    confirm(c, q)
    c.dispatch("QUEUE_REQUEST", {"queue": q})
    f = delivery(c)
    assert f["d"]["nonce"] is None
    assert f["d"]["payload"]["queue"] == q and f["d"]["payload"]["payload"] == "test!"
    s = state(qserver.port, q)
    assert s["waiting"] == 0 and s["queued"] == 0 and s["unacked"] == 1, s


def test_3_unroutable_message_dead_letters_only_when_someone_waits(tclients, tserver):
    q = qname()
    c = tclients.identified("test-app-1", uid("client"))
    enqueue(c, q, {"application": "unresolveable-app-name", "ops": []}, "x", nonce=None)
    confirm(c, q)
    s = state(tserver.port, q)
    assert (s["queued"], s["dead"]) == (1, 0), s
    c.dispatch("QUEUE_REQUEST", {"queue": q})
    assert wait_for(lambda: state(tserver.port, q)["dead"] == 1)
    s = state(tserver.port, q)
    assert (s["queued"], s["waiting"]) == (0, 1), s
    # After the DLQ time it is queued again; the GC's attempt only delivers.
    assert wait_for(lambda: state(tserver.port, q)["queued"] == 1)
    time.sleep(2 * TICK)
    s = state(tserver.port, q)
    assert (s["queued"], s["dead"], s["waiting"]) == (1, 0, 1), s
    c.expect_no_frame(0.1)


def test_4_unacked_message_dies_then_comes_back(tclients, tserver):
    q = qname()
    c = tclients.identified("test-app-1", uid("client"))
    enqueue(c, q, {"application": "test-app-1", "ops": []}, "m", nonce=None)
    confirm(c, q)
    c.dispatch("QUEUE_REQUEST", {"queue": q})
    delivery(c)
    s = state(tserver.port, q)
    assert (s["queued"], s["unacked"]) == (0, 1), s
    assert wait_for(lambda: state(tserver.port, q)["dead"] == 1)
    assert wait_for(lambda: state(tserver.port, q)["queued"] == 1)
    assert state(tserver.port, q)["dead"] == 0


def test_5_no_head_of_line_blocking(clients, qserver):
    q = qname()
    app_a, app_b = uid("A"), uid("B")
    producer = clients.identified(uid("prod"))
    a = clients.identified(app_a)
    b = clients.identified(app_b)
    enqueue(producer, q, {"application": app_a}, "for A", nonce=1)
    confirm(producer, q)
    enqueue(producer, q, {"application": app_b}, "for B", nonce=2)
    confirm(producer, q)
    b.dispatch("QUEUE_REQUEST", {"queue": q})
    f = delivery(b)
    assert f["d"]["nonce"] == 2 and f["d"]["payload"]["payload"] == "for B"
    s = state(qserver.port, q)
    assert (s["queued"], s["dead"]) == (1, 0), s  # the first stays queued (A exists)
    a.dispatch("QUEUE_REQUEST", {"queue": q})
    assert delivery(a)["d"]["payload"]["payload"] == "for A"


def test_6_requeued_message_is_redelivered_without_a_new_queue(tclients, tserver):
    q = qname()
    c = tclients.identified("test-app-1", uid("client"))
    enqueue(c, q, {"application": "test-app-1"}, "again", nonce=None)
    confirm(c, q)
    c.dispatch("QUEUE_REQUEST", {"queue": q})
    first = delivery(c)
    c.dispatch("QUEUE_REQUEST", {"queue": q})
    second = delivery(c, timeout=3.0)  # after ack_timeout + dlq_time
    assert second["d"]["payload"]["id"] == first["d"]["payload"]["id"]


def test_7_ack_removes_the_message(tclients, tserver):
    q = qname()
    c = tclients.identified("test-app-1", uid("client"))
    enqueue(c, q, {"application": "test-app-1"}, "ack me", nonce=None)
    confirm(c, q)
    c.dispatch("QUEUE_REQUEST", {"queue": q})
    mid = delivery(c)["d"]["payload"]["id"]
    c.dispatch("QUEUE_ACK", {"queue": q, "id": mid})
    time.sleep(4 * TICK)
    s = state(tserver.port, q)
    assert (s["queued"], s["unacked"], s["dead"]) == (0, 0, 0), s
    c.dispatch("QUEUE_ACK", {"queue": q, "id": mid})  # unknown now: ignored
    c.dispatch("QUEUE_ACK", {"queue": q, "id": "not-an-id"})
    c.expect_no_frame(0.2)


def test_ack_after_timeout_removes_it_from_the_dlq(tclients, tserver):
    q = qname()
    c = tclients.identified("test-app-1", uid("client"))
    enqueue(c, q, {"application": "test-app-1"}, "late", nonce=None)
    confirm(c, q)
    c.dispatch("QUEUE_REQUEST", {"queue": q})
    mid = delivery(c)["d"]["payload"]["id"]
    assert wait_for(lambda: state(tserver.port, q)["dead"] == 1)
    c.dispatch("QUEUE_ACK", {"queue": q, "id": mid})
    assert wait_for(lambda: state(tserver.port, q)["dead"] == 0)
    time.sleep(3 * TICK)
    s = state(tserver.port, q)
    assert (s["queued"], s["unacked"], s["dead"]) == (0, 0, 0), s


def test_8_repeated_request_is_one_delivery(clients, qserver):
    q = qname()
    c = clients.identified("test-app-1", uid("client"))
    c.dispatch("QUEUE_REQUEST", {"queue": q})
    c.dispatch("QUEUE_REQUEST", {"queue": q})
    assert wait_for(lambda: state(qserver.port, q)["waiting"] == 1)
    enqueue(c, q, {"application": "test-app-1"}, "one", nonce=None)
    confirm(c, q)  # the confirm comes before the delivery it caused
    delivery(c)
    c.expect_no_frame(0.2)
    assert state(qserver.port, q)["waiting"] == 0


def test_9_cancel_removes_the_request_and_the_listing(clients, qserver):
    q = qname()
    app = uid("app")
    c = clients.identified(app, "client-9")
    c.dispatch("QUEUE_REQUEST", {"queue": q})

    def listed():
        body = json.dumps({"application": app}).encode()
        req = urllib.request.Request(f"http://127.0.0.1:{qserver.port}/api/v1/query", data=body, method="POST")
        with urllib.request.urlopen(req, timeout=5) as r:
            return json.loads(r.read())

    assert wait_for(lambda: listed()[0]["queues"] == [q]), listed()
    c.dispatch("QUEUE_REQUEST_CANCEL", {"queue": q})
    assert wait_for(lambda: listed()[0]["queues"] == [])
    enqueue(c, q, {"application": app}, "no one", nonce=None)
    confirm(c, q)
    c.expect_no_frame(0.2)
    assert state(qserver.port, q)["queued"] == 1


def test_10_consumer_disconnect_redelivers_to_another(tclients, tserver):
    q = qname()
    app = uid("app")
    producer = tclients.identified(uid("prod"))
    first = tclients.identified(app)
    second = tclients.identified(app)
    enqueue(producer, q, {"application": app}, "work", nonce=None)
    confirm(producer, q)
    first.dispatch("QUEUE_REQUEST", {"queue": q})
    mid = delivery(first)["d"]["payload"]["id"]
    first.close()
    second.dispatch("QUEUE_REQUEST", {"queue": q})
    assert delivery(second, timeout=3.0)["d"]["payload"]["id"] == mid


def test_11_restricted_client_cannot_queue(start):
    s = start("--auth", "secret-password", "--auth-failures-per-minute", "0")
    cs = Clients(s.port)
    try:
        c = cs.connect()
        c.identify(uid("app"), restricted=True, auth="wrong")
        enqueue(c, qname(), {"application": "x"}, "p", nonce=None)
        f = c.recv_frame()
        assert f["op"] == 3 and f["d"] == {"error": "invalid dispatch type QUEUE (are you restricted?)"}, f
    finally:
        cs.close_all()


def test_12_queue_without_nonce_is_confirmed(clients, qserver):
    q = qname()
    c = clients.identified("test-app-1", uid("client"))
    enqueue(c, q, {"application": "test-app-1"}, {"k": [1, 2]})
    confirm(c, q)
    c.dispatch("QUEUE_REQUEST", {"queue": q})
    f = delivery(c)
    assert f["d"]["nonce"] is None and f["d"]["payload"]["payload"] == {"k": [1, 2]}


# ------------------------------------------------------- beyond the scenarios


def test_fairness_and_selector(clients, qserver):
    q = qname()
    app = uid("app")
    producer = clients.identified(uid("prod"))
    low = clients.identified(app, metadata={"load": {"type": "integer", "value": 1}})
    high = clients.identified(app, metadata={"load": {"type": "integer", "value": 9}})
    # Frames on two connections may be read in either order: high's
    # request must be in before low's is sent.
    high.dispatch("QUEUE_REQUEST", {"queue": q})
    assert wait_for(lambda: state(qserver.port, q)["waiting"] == 1)
    low.dispatch("QUEUE_REQUEST", {"queue": q})
    assert wait_for(lambda: state(qserver.port, q)["waiting"] == 2)
    # No selector: the longest waiting client.
    enqueue(producer, q, {"application": app}, "first", nonce=None)
    confirm(producer, q)
    first = delivery(high)["d"]["payload"]
    assert first["payload"] == "first"
    # Done with it (unacknowledged it would come back after the timeouts).
    high.dispatch("QUEUE_ACK", {"queue": q, "id": first["id"]})
    high.dispatch("QUEUE_REQUEST", {"queue": q})
    assert wait_for(lambda: state(qserver.port, q)["waiting"] == 2), json.dumps(state(qserver.port, q))
    # $min load: the selector's choice among the waiting candidates.
    enqueue(producer, q, {"application": app, "selector": {"$min": "load"}}, "second", nonce=None)
    confirm(producer, q)
    assert delivery(low)["d"]["payload"]["payload"] == "second"


def test_metadata_change_of_a_waiting_client_delivers(clients, qserver):
    q = qname()
    app = uid("app")
    producer = clients.identified(uid("prod"))
    c = clients.identified(app, metadata={"ready": {"type": "boolean", "value": False}})
    # A matching client that does not wait: the message is routable, so it
    # stays queued rather than going to the DLQ.
    clients.identified(app, metadata={"ready": {"type": "boolean", "value": True}})
    enqueue(producer, q, {"application": app, "ops": [{"path": "/ready", "op": "$eq", "to": {"value": True}}]}, "go",
            nonce=None)
    confirm(producer, q)
    c.dispatch("QUEUE_REQUEST", {"queue": q})
    c.expect_no_frame(0.3)
    assert state(qserver.port, q)["queued"] == 1
    c.dispatch("UPDATE_METADATA", {"ready": {"type": "boolean", "value": True}})
    assert delivery(c)["d"]["payload"]["payload"] == "go"


def test_transcoding_between_encodings(clients, qserver):
    q = qname()
    app = uid("app")
    producer = clients.identified(uid("prod"))
    consumer = clients.identified(app, encoding="msgpack")
    enqueue(producer, q, {"application": app}, {"a": [1, 2.5, "x"]}, nonce={"n": 1})
    confirm(producer, q)
    consumer.dispatch("QUEUE_REQUEST", {"queue": q})
    f = delivery(consumer)
    assert f["d"]["nonce"] == {"n": 1} and f["d"]["payload"]["payload"] == {"a": [1, 2.5, "x"]}


@pytest.mark.parametrize("d", [
    {"target": {"application": "a"}, "payload": 1},                     # no queue
    {"queue": "", "target": {"application": "a"}, "payload": 1},        # empty name
    {"queue": "x" * 256, "target": {"application": "a"}, "payload": 1},  # 256 bytes
    {"queue": 7, "target": {"application": "a"}, "payload": 1},
    {"queue": "q", "payload": 1},                                        # no target
    {"queue": "q", "target": {"application": "a"}},                      # no payload
], ids=["no-queue", "empty-name", "long-name", "number-name", "no-target", "no-payload"])
def test_bad_queue_frames_are_refused(clients, d):
    c = clients.identified(uid("app"))
    c.dispatch("QUEUE", d)
    f = c.recv_frame()
    assert f["op"] == 3 and f["d"]["error"] == "invalid dispatch payload", f
    c.expect_no_frame(0.2)  # no QUEUE_CONFIRM


def test_bad_target_is_invalid_query(clients):
    c = clients.identified(uid("app"))
    enqueue(c, qname(), {"application": "a", "ops": 5}, 1)
    f = c.recv_frame()
    assert f["op"] == 3 and f["d"]["error"] == "invalid query", f
    c.expect_no_frame(0.2)


@pytest.mark.parametrize("t,d", [("QUEUE_REQUEST", {}), ("QUEUE_REQUEST_CANCEL", {"queue": ""}),
                                 ("QUEUE_ACK", {"queue": "q"}), ("QUEUE_ACK", {"queue": "q", "id": 5})])
def test_bad_request_cancel_ack_frames(clients, t, d):
    c = clients.identified(uid("app"))
    c.dispatch(t, d)
    f = c.recv_frame()
    assert f["op"] == 3 and f["d"]["error"] == "invalid dispatch payload", f


def test_the_longest_name_is_accepted(clients, qserver):
    q = "é" * 127 + "x"  # 255 bytes of UTF-8
    c = clients.identified("test-app-1", uid("client"))
    enqueue(c, q, {"application": "test-app-1"}, 1)
    confirm(c, q)
    assert state(qserver.port, q)["queued"] == 1


def test_per_queue_and_node_bounds(start):
    s = start("--queue-max-messages", "3", "--queue-max-bytes", "4096", "--queue-max-total-bytes", "9000")
    cs = Clients(s.port)
    try:
        c = cs.identified(uid("app"))
        q = qname()
        for i in range(3):
            enqueue(c, q, {"application": "nobody"}, i)
            confirm(c, q)
        enqueue(c, q, {"application": "nobody"}, 3)
        f = c.recv_frame()
        assert f["op"] == 3 and "QUEUE_MAX_MESSAGES" in f["d"]["error"], f
        assert f["d"]["extra_info"] == {"queue": q}, f
        assert state(s.port, q)["queued"] == 3
        # Bytes: one queue, then the node.
        big = "y" * 3500
        q2 = qname()
        enqueue(c, q2, {"application": "nobody"}, big)
        confirm(c, q2)
        enqueue(c, q2, {"application": "nobody"}, big)
        f = c.recv_frame()
        assert f["op"] == 3 and "QUEUE_MAX_BYTES" in f["d"]["error"], f
        q3 = qname()
        enqueue(c, q3, {"application": "nobody"}, big)
        confirm(c, q3)
        enqueue(c, qname(), {"application": "nobody"}, big)
        f = c.recv_frame()
        assert f["op"] == 3 and "QUEUE_MAX_TOTAL_BYTES" in f["d"]["error"], f
        assert state(s.port, q2)["queued"] == 1
    finally:
        cs.close_all()


def test_distinct_targets_per_queue_are_bounded(start):
    """QUEUE_MAX_TARGETS bounds what one QUEUE_REQUEST evaluates: a QUEUE
    with a new target past it is refused; the same target bytes are not a
    new target; a target whose messages are all gone frees its place."""
    s = start("--queue-max-targets", "3")
    cs = Clients(s.port)
    try:
        c = cs.identified(uid("app"))
        q = qname()
        targets = [{"application": "nobody", "ops": [{"path": "/n", "op": "$eq", "to": {"value": i}}]} for i in range(4)]
        for t in targets[:3]:
            enqueue(c, q, t, "x")
            confirm(c, q)
        enqueue(c, q, targets[3], "x")
        f = c.recv_frame()
        assert f["op"] == 3 and "QUEUE_MAX_TARGETS" in f["d"]["error"] and f["d"]["extra_info"] == {"queue": q}, f
        enqueue(c, q, targets[0], "same target")
        confirm(c, q)
        # A consumer takes both messages of target 0 and acknowledges them.
        w = cs.identified("nobody", metadata={"n": {"type": "integer", "value": 0}})
        for _ in range(2):
            w.dispatch("QUEUE_REQUEST", {"queue": q})
            w.dispatch("QUEUE_ACK", {"queue": q, "id": delivery(w)["d"]["payload"]["id"]})
        assert wait_for(lambda: state(s.port, q)["unacked"] == 0)
        enqueue(c, q, targets[3], "now it fits")
        confirm(c, q)
        assert state(s.port, q)["queued"] == 3
    finally:
        cs.close_all()


def test_a_client_waits_on_a_bounded_number_of_queues(clients):
    c = clients.identified(uid("app"))
    for i in range(64):
        c.dispatch("QUEUE_REQUEST", {"queue": f"w-{i}"})
    c.dispatch("QUEUE_REQUEST", {"queue": "one-too-many"})
    f = c.recv_frame()
    assert f["op"] == 3 and "too many queues" in f["d"]["error"], f
    c.dispatch("QUEUE_REQUEST", {"queue": "w-0"})  # already waiting there: fine
    c.expect_no_frame(0.2)


def test_queue_list_endpoint(clients, qserver):
    q = qname()
    c = clients.identified("test-app-1", uid("client"))
    enqueue(c, q, {"application": "nobody"}, 1)
    confirm(c, q)
    listing = queue_list(qserver.port)
    assert listing["store_available"] is True and listing["store"] in ("memory", "redis")
    mine = [x for x in listing["queues"] if x["name"] == q]
    assert mine and mine[0]["queued"] == 1 and mine[0]["loaded"] is True and mine[0]["oldest_queued_age_ms"] >= 0
    if listing["store"] == "memory":
        assert mine[0]["owner"] is None
    else:  # the node's id, as the lease in Redis holds it
        assert isinstance(mine[0]["owner"], str) and len(mine[0]["owner"]) == 32


def test_metrics_totals(clients, qserver):
    def metrics():
        with urllib.request.urlopen(f"http://127.0.0.1:{qserver.port}/metrics", timeout=5) as r:
            out = {}
            for line in r.read().decode().splitlines():
                if line and not line.startswith("#"):
                    k, v = line.rsplit(" ", 1)
                    out[k] = float(v)
            return out

    before = metrics()
    q = qname()
    c = clients.identified("test-app-1", uid("client"))
    enqueue(c, q, {"application": "test-app-1"}, "counted")
    confirm(c, q)
    c.dispatch("QUEUE_REQUEST", {"queue": q})
    mid = delivery(c)["d"]["payload"]["id"]
    c.dispatch("QUEUE_ACK", {"queue": q, "id": mid})
    assert wait_for(lambda: metrics()["singyeong_queue_acked_total"] == before["singyeong_queue_acked_total"] + 1)
    after = metrics()
    for name in ("confirmed", "delivered"):
        assert after[f"singyeong_queue_{name}_total"] == before[f"singyeong_queue_{name}_total"] + 1, name
    assert 'singyeong_queue_messages{state="queued"}' in after and "singyeong_queues" in after
    assert not any(q in k for k in after)  # no label per queue name


@pytest.mark.parametrize("path,status", [("%zz", 400), ("%", 400), ("%ff", 400), ("", 400), ("a%2Fb%20c", 200)])
def test_queue_endpoint_names(qserver, path, status):
    url = f"http://127.0.0.1:{qserver.port}/api/v1/queues/{path}"
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            got, body = r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        got, body = e.code, json.loads(e.read())
    assert got == status, body
    if status == 200:
        assert body["name"] == "a/b c" and body["queued"] == 0


def test_queued_object_payload_bytes_are_kept(clients, qserver):
    q = qname()
    app = uid("app")
    producer = clients.identified(uid("prod"))
    consumer = clients.identified(app)
    raw_payload = '{"a" :  [1,2 ,3], "f": 1.50}'
    producer.send_raw('{"op":4,"t":"QUEUE","d":{"queue":"%s","target":{"application":"%s"},"payload":%s}}'
                      % (q, app, raw_payload))
    confirm(producer, q)
    consumer.dispatch("QUEUE_REQUEST", {"queue": q})
    delivery(consumer)
    assert ('"payload":%s}' % raw_payload) in consumer.last_raw, consumer.last_raw
