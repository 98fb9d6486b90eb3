"""No use after close (issue 10, point 5): a send that pushes a connection over
MAX_PENDING_BYTES closes it, and that close must never free the connection
while the caller that sent still holds it.

The dangerous shape: client A stopped reading long ago, its queue sits a few
bytes under the bound, and in a later loop turn another client's action
sends A one more frame. The tests build it exactly:

1. The cost the node charges per queued SEND delivery is measured by
   bisection: the node is frozen (SIGSTOP), several senders write their
   frames, and it is thawed (SIGCONT), so it handles them all in one loop
   turn; output is flushed only at the end of a turn, so the queue is
   byte-exact and the first "closing slow consumer" marks the bound.
2. A never reads: deliveries fill the kernel buffers (measured in
   /proc/net/tcp; SEND_BUFFER_SIZE fixes the node's side, since autotuning
   would let the kernel take more at any moment) until the node holds a
   remainder of its own, known exactly from what was sent minus what the
   kernel holds.
3. One more flood in one turn lifts A's queue to `offset` bytes under the
   bound (A's socket is full, so the end-of-turn flush writes nothing).
4. In a later turn the trigger (a takeover, SIGTERM) sends A its op 8 or
   op 7, which crosses the bound.

Several offsets are tried so that the frame that crosses is the trigger's
whatever its exact cost; each test is void (and fails) unless at least one
trial crossed there. Triggers: a takeover (reconnect), SIGTERM's GOODBYE,
load balancing's GOODBYE when a peer joins, and a READY sent after the
peers heard of a new application (the client filled its queue with pongs).

Against the code before the fix (a close completed inside the call that
decided it): the takeover, load-balancing and random tests killed the node
("Attempted to read an unowned reference but object ... was already
destroyed"); the READY test found the closed client left registered; the
shutdown test passed there too (shutdown walked a copied array of
connections, which kept them alive)."""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import struct
import time
import urllib.request

from cluster_fixtures import cluster_factory, redis_factory  # noqa: F401 (fixtures)
from gateway_client import GatewayClient, uid
from sy_helpers import HOST, OP_CLOSE, OP_TEXT, Closed, RawConn, close_payload, open_ws, wait_for, ws_frame

MAX_FRAME = 16_384
MAX_PENDING = 131_072
# Payload of the deliveries that fill A's kernel buffers, four per round.
FILL = 10_000


def host_of(server) -> str:
    return getattr(server, "host", HOST)


def frame(obj) -> bytes:
    return ws_frame(OP_TEXT, json.dumps(obj, separators=(",", ":")).encode())


def read_json(conn: RawConn, timeout: float = 3.0) -> dict:
    """The next text frame as JSON (control frames skipped)."""
    deadline = time.monotonic() + timeout
    while True:
        f = conn.read_frame(timeout=max(0.05, deadline - time.monotonic()))
        if f.opcode == OP_TEXT:
            return json.loads(f.payload)


def raw_identified(server, app: str, client_id: str, rcvbuf: int | None = None, **fields) -> RawConn:
    conn, _, _ = open_ws(server.port, rcvbuf=rcvbuf, host=host_of(server))
    d = {"application_id": app, "client_id": client_id, **fields}
    conn.send(frame({"op": 1, "d": d}))
    ready = read_json(conn)
    assert ready["op"] == 2, ready
    return conn


def send_batch(app: str, sizes: list[int]) -> bytes:
    """SENDs to the one client of `app`, payload strings of the given sizes."""
    target = {"application": app, "ops": []}
    return b"".join(frame({"op": 4, "t": "SEND", "d": {"target": target, "payload": "x" * n}})
                    for n in sizes)


def in_one_turn(server, *writes: tuple[RawConn, bytes]):
    """Writes every (connection, bytes) while the node is stopped, then lets
    it run: the node reads and handles them all in one loop turn."""
    server.signal(signal.SIGSTOP)
    # kill() returns before the stop lands: wait for state T.
    assert wait_for(lambda: stopped(server.pid), 2), "node did not stop"
    try:
        for conn, data in writes:
            conn.sock.sendall(data)
        time.sleep(0.05)
    finally:
        server.signal(signal.SIGCONT)


def stopped(pid: int) -> bool:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0] == "T"


def slow_consumer_count(server) -> int:
    return server.stderr().count("closing slow consumer")


def flood(senders: list[RawConn], app: str, sizes: list[int]) -> list[tuple[RawConn, bytes]]:
    """SENDs of `sizes` to `app`, two per sender: a stopped node's socket
    receive buffer holds about 64 KiB, so one sender could not put the whole
    flood into one turn."""
    assert len(sizes) <= 2 * len(senders)
    return [(senders[i // 2], send_batch(app, sizes[i:i + 2])) for i in range(0, len(sizes), 2)]


def cut_off_by(server, senders: list[RawConn], sizes: list[int]) -> bool:
    """Does a flood of `sizes` alone, handled in one turn, push a fresh
    client over the bound? (Each probe uses a new client.)"""
    app = uid("probe")
    victim = raw_identified(server, app, "v")
    before = slow_consumer_count(server)
    in_one_turn(server, *flood(senders, app, sizes))
    round_trips(senders)
    cut = slow_consumer_count(server) > before
    victim.close()
    return cut


def round_trips(senders: list[RawConn]):
    """A heartbeat through each sender: everything sent before is handled."""
    for sender in senders:
        sender.send(frame({"op": 5, "d": {}}))
        while read_json(sender).get("op") != 6:
            pass


def threshold(server, senders: list[RawConn], base: list[int]) -> int:
    """The smallest size of one more payload after `base` that the flood
    alone pushes over the bound (bisection; the node's queue is exact)."""
    lo, hi = 0, MAX_FRAME - 200
    assert not cut_off_by(server, senders, base + [lo]), "base flood alone is over the bound"
    assert cut_off_by(server, senders, base + [hi]), "calibration flood never reaches the bound"
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if cut_off_by(server, senders, base + [mid]):
            hi = mid
        else:
            lo = mid
    return hi


def tcp_queues(local_port: int, remote_port: int) -> tuple[int, int]:
    """(tx_queue, rx_queue) of the IPv4 TCP socket local_port -> remote_port."""
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            cols = line.split()
            local, remote = cols[1], cols[2]
            if int(local.split(":")[1], 16) == local_port and int(remote.split(":")[1], 16) == remote_port:
                tx, rx = cols[4].split(":")
                return int(tx, 16), int(rx, 16)
    raise AssertionError(f"no socket {local_port} -> {remote_port}")


class Costs:
    """What one SEND delivery costs: `wire(n)` bytes on the socket for a
    payload of n bytes, and `charge(n)` in the node's queue (bytes plus the
    per-chunk charge), both measured on the real binary."""

    def __init__(self, server, senders: list[RawConn]):
        app = uid("measure")
        probe = raw_identified(server, app, "p")
        senders[0].send(send_batch(app, [1000]))
        f = probe.read_frame()
        assert f.opcode == OP_TEXT and json.loads(f.payload)["t"] == "SEND"
        self.envelope = len(f.payload) - 1000
        probe.close()
        # Bisection: base + [t] is the smallest flood over the bound.
        base = [15_000] * 8
        t = threshold(server, senders, base)
        frames = base + [t]
        over = sum(self.wire(n) for n in frames)
        # charge(n) = wire(n) + per_frame; the bisection says the flood costs bound + 1.
        per_frame, rest = divmod(MAX_PENDING + 1 - over, len(frames))
        assert rest == 0 and 0 <= per_frame <= 512, f"queue charge not per frame: {per_frame} r {rest}"
        self.per_frame = per_frame

    def wire(self, n: int) -> int:
        length = self.envelope + n
        return length + (2 if length < 126 else 4 if length < 65536 else 10)

    def charge(self, n: int) -> int:
        return self.wire(n) + self.per_frame

    def flood_for(self, total: int) -> list[int]:
        """Payload sizes whose deliveries cost exactly `total` in the queue."""
        sizes = []
        while total - self.charge(15_000) >= self.charge(200):
            sizes.append(15_000)
            total -= self.charge(15_000)
        n = total - self.per_frame - self.envelope - 4
        assert n >= 126 and self.charge(n) == total, (total, n)
        return sizes + [n]


def fill_kernel(server, senders: list[RawConn], costs: Costs, app: str, a: RawConn) -> list[int]:
    """Sends deliveries to A (which never reads) until the kernel takes no
    more; returns the payload sizes of the deliveries still (partly) in the
    node's own queue for A.
    The kernel keeps taking a little after its first refusal (it compacts
    its buffers), so small deliveries follow until its queue stops growing."""
    a_port = a.sock.getsockname()[1]
    sizes: list[int] = []
    last_tx, steady = -1, 0
    while steady < 3:
        batch = [FILL] * 4 if not sizes else [1000]
        senders[0].send(send_batch(app, batch))
        round_trips(senders[:1])
        sizes += batch
        tx, _ = tcp_queues(server.port, a_port)
        _, rx = tcp_queues(a_port, server.port)
        left = sum(costs.wire(n) for n in sizes) - tx - rx
        steady = steady + 1 if left > 0 and tx == last_tx else 0
        last_tx = tx
        assert len(sizes) < 200, "the kernel queue never stopped growing"
    # Deliveries not completely written, counted from the end.
    started, rest = 0, left
    while rest > 0:
        rest -= costs.wire(sizes[-1 - started])
        started += 1
    return sizes[-started:]


def prepared_victim(server, senders: list[RawConn], costs: Costs, offset: int) -> tuple[str, RawConn]:
    """A client that stopped reading, with its queue `offset` bytes under the
    bound."""
    app = uid("victim")
    a = raw_identified(server, app, "a", rcvbuf=4096)
    # A partly written delivery still holds (and is charged) all its bytes.
    held = sum(costs.charge(n) for n in fill_kernel(server, senders, costs, app, a))
    flood_total = MAX_PENDING - offset - held
    in_one_turn(server, *flood(senders, app, costs.flood_for(flood_total)))
    round_trips(senders)
    return app, a


# A fixed kernel send buffer: autotuning would let the kernel take more of
# A's queue at any moment.
BOUND_FLAGS = ("--max-frame-size", str(MAX_FRAME), "--max-pending-bytes", str(MAX_PENDING),
               "--send-buffer-size", "16384")


def start(spawn):
    s = spawn(*BOUND_FLAGS)
    senders = [raw_identified(s, uid("sender"), "s") for _ in range(5)]
    return s, senders, Costs(s, senders)


OFFSETS = (1, 30, 60, 90, 120)


def test_takeover_of_a_client_just_under_the_bound(spawn):
    """B identifies with A's ids and reconnect: true; the op 8 sent to A
    crosses the bound, A is closed, and the takeover goes on with A's
    session still valid: B gets READY, the node keeps serving."""
    s, senders, costs = start(spawn)
    crossed = 0
    for offset in OFFSETS:
        app, a = prepared_victim(s, senders, costs, offset)
        before = slow_consumer_count(s)
        b, _, _ = open_ws(s.port, host=host_of(s))
        b.send(frame({"op": 1, "d": {"application_id": app, "client_id": "a", "reconnect": True}}))
        ready = read_json(b)
        assert s.alive(), f"node died in the takeover:\n{s.stderr()[-3000:]}"
        assert ready["op"] == 2, f"B did not take over: {ready!r}"
        crossed += slow_consumer_count(s) > before
        # B is the client now: a SEND to the app reaches it.
        senders[0].send(send_batch(app, [10]))
        assert read_json(b)["t"] == "SEND"
        a.close()
        b.close()
    assert crossed >= 1, "no trial put the op 8 over the bound: the test proved nothing"
    with GatewayClient(s.port) as c:
        c.identify(uid("after"))
        c.heartbeat()


def test_shutdown_goodbye_to_clients_just_under_the_bound(spawn):
    """SIGTERM sends every client GOODBYE and close 1001; for clients a few
    bytes under the bound that crosses it mid-loop. The node still drains
    and exits 0."""
    s, senders, costs = start(spawn)
    victims = [prepared_victim(s, senders, costs, offset)[1] for offset in OFFSETS]
    before = slow_consumer_count(s)
    s.signal(signal.SIGTERM)
    code = s.wait_exit(15)
    assert code == 0, f"exit {code}:\n{s.stderr()[-3000:]}"
    assert slow_consumer_count(s) > before, "no GOODBYE crossed the bound: the test proved nothing"
    for v in victims:
        v.close()


class NodeServer:
    """A cluster node seen through the surface the helpers above use."""

    def __init__(self, node):
        self.node = node

    port = property(lambda self: self.node.port)
    host = property(lambda self: self.node.host)
    pid = property(lambda self: self.node.proc.pid)

    def signal(self, sig: int):
        self.node.proc.send_signal(sig)

    def stderr(self) -> str:
        return self.node.log()

    def alive(self) -> bool:
        return self.node.alive()


def test_load_balancing_goodbye_to_clients_just_under_the_bound(cluster_factory):
    """Node A alone prepares its newest clients a few bytes under the bound;
    then an empty node B joins, and A's next tick sends GOODBYE to its newest
    excess clients (cluster.md §5), which crosses the bound for some. A keeps
    balancing and serving. (Prepared while A is alone: balancing is skipped
    without peers, and routing stays synchronous.)"""
    cluster = cluster_factory(0)
    a = cluster.add(extra=BOUND_FLAGS)
    s = NodeServer(a)
    senders = [raw_identified(s, uid("sender"), "s") for _ in range(5)]
    costs = Costs(s, senders)
    victims = [prepared_victim(s, senders, costs, offset)[1] for offset in OFFSETS]
    before = slow_consumer_count(s)
    cluster.wait_mesh([a, cluster.add(extra=BOUND_FLAGS)])
    assert wait_for(lambda: "load balancing: sending GOODBYE" in s.stderr(), 10), cluster.dump()
    time.sleep(0.5)
    assert s.alive(), f"node died balancing:\n{s.stderr()[-3000:]}"
    assert slow_consumer_count(s) > before, "no GOODBYE crossed the bound: the test proved nothing"
    for v in victims:
        v.close()
    a.identified("after", "x").heartbeat()


def test_ready_after_peers_to_a_client_just_under_the_bound(cluster_factory):
    """A client of a new application waits for its READY until the peers
    have heard of the application (a later loop turn). Before that it can
    be sent only pongs: its pings fill the kernel, then more pings put its
    queue a few bytes under the bound, and the READY crosses it."""
    cluster = cluster_factory(2, extra=BOUND_FLAGS)
    s = NodeServer(cluster.nodes[0])
    pong = 2 + 125  # wire bytes of a pong to a 125-byte ping
    charge = pong + 64
    crossed = 0
    for offset in OFFSETS:
        conn, _, _ = open_ws(s.port, rcvbuf=4096, host=s.host)
        port = conn.sock.getsockname()[1]
        sent, last_tx, steady = 0, -1, 0
        while steady < 3:  # as fill_kernel, with pongs; no round trip: C never reads
            n = 300 if sent == 0 else 1
            conn.send(ws_frame(9, b"p" * 125) * n)
            sent += n
            time.sleep(0.05)
            tx, _ = tcp_queues(s.port, port)
            _, rx = tcp_queues(port, s.port)
            left = sent * pong - tx - rx
            steady = steady + 1 if left > 0 and tx == last_tx else 0
            last_tx = tx
        held = -(-left // pong) * charge
        # Pings whose pongs cost exactly `room`: 125-byte ones, then one or two smaller.
        room = MAX_PENDING - offset - held
        k, r = divmod(room, charge)
        if r < 66:
            k, r = k - 1, r + charge
        tail = [r - 66] if r - 66 <= 125 else [(r - 132) // 2, r - 132 - (r - 132) // 2]
        pings = ws_frame(9, b"p" * 125) * k + b"".join(ws_frame(9, b"q" * n) for n in tail)
        before = slow_consumer_count(s)
        app = uid("new-app")
        conn.send(pings + frame({"op": 1, "d": {"application_id": app, "client_id": "c"}}))
        wait_for(lambda: not s.alive() or slow_consumer_count(s) > before, 2)
        assert s.alive(), f"node died sending READY:\n{s.stderr()[-3000:]}"
        if slow_consumer_count(s) > before:
            crossed += 1
            # The client closed by its own READY is not left registered.
            q = cluster.nodes[1].identified(uid("q"))
            assert q.query_ids({"application": app, "optional": True, "ops": []}) == set()
        conn.close()
    assert crossed >= 1, "no READY crossed the bound: the test proved nothing"
    cluster.nodes[0].identified("after", "x").heartbeat()


def test_random_mix_of_takeovers_slow_consumers_and_closes(spawn):
    """A seeded random mix for ~12 s: clients that never read joining three
    applications with six client ids (takeovers with and without
    reconnect), SEND and BROADCAST floods of random sizes, ping floods,
    polite and abortive closes, some of it in one frozen-then-thawed turn.
    The node must survive it all and serve a new client afterwards.
    STRESS_SEED=<n> replays a run."""
    seed = int(os.environ.get("STRESS_SEED", random.randrange(1 << 30)))
    print(f"STRESS_SEED={seed}")
    rng = random.Random(seed)
    s = spawn("--max-frame-size", str(MAX_FRAME), "--max-pending-bytes", "65536",
              "--send-buffer-size", "8192")
    apps = [uid("app") for _ in range(3)]
    ids = [f"c{i}" for i in range(6)]
    senders = [raw_identified(s, uid("sender"), "s") for _ in range(3)]
    live: list[RawConn] = []
    identifies = 0
    deadline = time.monotonic() + 12
    while time.monotonic() < deadline and s.alive():
        writes: list[tuple[RawConn, bytes]] = []
        for _ in range(rng.randint(1, 8)):
            r = rng.random()
            if r < 0.3 or not live:
                try:
                    conn, _, _ = open_ws(s.port, rcvbuf=4096, host=host_of(s))
                except (OSError, Closed):
                    time.sleep(0.2)
                    assert s.alive(), f"node died (STRESS_SEED={seed}):\n{s.stderr()[-3000:]}"
                    raise
                d = {"application_id": rng.choice(apps), "client_id": rng.choice(ids),
                     "reconnect": rng.random() < 0.7}
                writes.append((conn, frame({"op": 1, "d": d})))
                live.append(conn)
                identifies += 1
            elif r < 0.75:
                t = rng.choice(["SEND", "BROADCAST"])
                target = {"application": rng.choice(apps), "optional": True, "ops": []}
                batch = b"".join(frame({"op": 4, "t": t, "d": {"target": target, "payload": "x" * rng.randint(1, 15_000)}})
                                 for _ in range(rng.randint(1, 3)))
                writes.append((rng.choice(senders), batch))
            elif r < 0.85:
                writes.append((rng.choice(live), ws_frame(9, b"p" * rng.randint(0, 125)) * rng.randint(1, 400)))
            else:
                conn = live.pop(rng.randrange(len(live)))
                if rng.random() < 0.5:  # abortive: RST
                    conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                conn.close()
        if rng.random() < 0.3:
            s.signal(signal.SIGSTOP)
            wait_for(lambda: stopped(s.pid), 2)
            try:
                write_all(writes)
            finally:
                s.signal(signal.SIGCONT)
        else:
            write_all(writes)
        for i, sender in enumerate(senders):
            try:
                sender.discard_pending()
            except OSError:
                # A sender is a slow consumer too when the no_route echoes of
                # its floods (up to 3 × 15 KB per write, several writes in a
                # frozen turn) pass --max-pending-bytes before it reads: the
                # node closes it, as designed. Carry on with a new one.
                assert s.alive(), f"node died (STRESS_SEED={seed}):\n{s.stderr()[-3000:]}"
                senders[i] = raw_identified(s, uid("sender"), "s")
        if len(live) > 200:
            for conn in live[:100]:
                conn.close()
            del live[:100]
    time.sleep(0.3)
    assert s.alive(), f"node died (STRESS_SEED={seed}):\n{s.stderr()[-3000:]}"
    assert identifies > 50 and slow_consumer_count(s) > 0, "the mix never made a slow consumer"
    for conn in live:
        conn.close()
    with GatewayClient(s.port) as c:
        c.identify(apps[0], "c0", reconnect=True)
        c.heartbeat()


def write_all(writes: list[tuple[RawConn, bytes]]):
    for conn, data in writes:
        try:
            conn.sock.settimeout(2)
            conn.sock.sendall(data)
        except OSError:
            pass  # the node closed it (slow consumer, replaced): expected


def test_no_route_from_peers_for_a_sender_already_gone(cluster_factory):
    """A SEND whose only candidates could be on a peer waits for its answer,
    and routing holds the sender until then (it held it weakly before, which
    made every retain of a session slow). Here the SEND and the close frame
    come in one write, so the sender is cleaned up and its connection freed
    before the peer answers "none"; the node counts the no_route and must
    not write to the freed connection. With the `cleanedUp` check removed
    from `GatewaySession.noRoute`, the node dies here."""
    cluster = cluster_factory(2)
    a, b = cluster.nodes
    app = uid("far")
    b.identified(app, "r", metadata={"n": {"type": "integer", "value": 1}})
    target = {"application": app, "ops": [{"path": "/n", "op": "$eq", "to": {"value": 2}}]}
    gone = 20
    for i in range(gone):
        conn = raw_identified(a, uid("snd"), f"s{i}")
        conn.send(frame({"op": 4, "t": "SEND", "d": {"target": target, "nonce": i, "payload": i}})
                  + ws_frame(OP_CLOSE, close_payload(1000)))
        conn.close()

    def no_routes():
        with urllib.request.urlopen(f"http://{a.host}:{a.port}/metrics", timeout=5) as r:
            text = r.read().decode()
        for line in text.splitlines():
            if line.startswith('singyeong_messages_no_route_total{event="SEND"}'):
                return int(float(line.split()[-1]))
        return 0

    assert wait_for(lambda: no_routes() >= gone, 5), no_routes()
    # Still serving: a connected sender gets its no_route as usual.
    c = a.identified(uid("snd"))
    c.dispatch("SEND", {"target": target, "nonce": "x", "payload": 1})
    f = c.recv_frame()
    assert f["op"] == 3 and f["d"]["error"] == "no_route", f
    assert a.alive()
