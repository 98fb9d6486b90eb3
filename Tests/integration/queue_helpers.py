"""Steps the queue tests share: enqueue, confirm, delivery, produce and
consume, and the queue endpoints."""

from __future__ import annotations

import json
import time
import urllib.parse
import urllib.request
import uuid

from gateway_client import uid


def state(port, name, host="127.0.0.1"):
    url = f"http://{host}:{port}/api/v1/queues/{urllib.parse.quote(name, safe='')}"
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.loads(r.read())


def queue_list(port, host="127.0.0.1"):
    with urllib.request.urlopen(f"http://{host}:{port}/api/v1/queues", timeout=5) as r:
        return json.loads(r.read())


def wait_for(predicate, timeout=3.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def enqueue(c, queue, target, payload, **extra):
    d = {"queue": queue, "target": target, "payload": payload}
    d.update(extra)
    c.dispatch("QUEUE", d)


def confirm(c, queue):
    f = c.recv_frame()
    assert f["op"] == 4 and f["t"] == "QUEUE_CONFIRM" and f["d"] == {"queue": queue}, f
    return f


def delivery(c, timeout=3.0):
    f = c.recv_frame(timeout)
    assert f["op"] == 4 and f["t"] == "QUEUE", f
    assert set(f["d"]) == {"target", "nonce", "payload"} and f["d"]["target"] is None, f
    assert set(f["d"]["payload"]) == {"queue", "id", "payload"}, f
    uuid.UUID(f["d"]["payload"]["id"], version=4)
    return f


def produce(client, q, app, payloads):
    """QUEUE each payload (target: every client of `app`), each confirmed."""
    for p in payloads:
        enqueue(client, q, {"application": app}, p)
        confirm(client, q)


def consume(client, q, count, timeout=15.0, ack=True):
    """Requests, receives and (by default) acknowledges `count` messages one
    at a time; returns their payloads in delivery order."""
    got = []
    deadline = time.monotonic() + timeout
    while len(got) < count:
        assert time.monotonic() < deadline, f"got only {got}"
        client.dispatch("QUEUE_REQUEST", {"queue": q})
        f = delivery(client, timeout=max(0.1, deadline - time.monotonic()))
        got.append(f["d"]["payload"]["payload"])
        if ack:
            client.dispatch("QUEUE_ACK", {"queue": q, "id": f["d"]["payload"]["id"]})
    return got


def qname():
    return uid("q")
