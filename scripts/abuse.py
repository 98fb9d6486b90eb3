#!/usr/bin/env python3
"""Hostile clients against one node while well-behaved clients keep talking
(issue 10). Not part of `make test`; run it on a release build:

    make release && .venv/bin/python scripts/abuse.py --seconds 180
    .venv/bin/python scripts/abuse.py --pause     # the largest-frame pause only

Everything goes to 127.0.0.1. Two measurements:

* `--pause`: a prober heartbeats every 2 ms (and records every round trip)
  while another client sends frames as large as MAX_FRAME_SIZE allows
  (16 MiB by default) made of small keys: a SEND whose payload is one object
  of ~1.9 million members, to a receiver of each encoding, and frames whose
  values lie outside the payload (an UPDATE_METADATA, an unknown field),
  refused by MAX_FRAME_VALUES. Prints the worst round trip per frame (the
  longest any other client waited), over `--repeat` rounds. PAUSE_CASE=n
  (an index into that list) runs one frame only; ABUSE_TERM=1 stops the
  node with SIGTERM rather than SIGKILL, so a profiler wrapper passed as
  `--binary` can write its data.
* the default run: for `--seconds`, worker processes run hostile clients
  (listed in HOSTILE below) while a sender SENDs to a receiver at a fixed
  rate; prints the SEND latency percentiles seen by the normal pair, how
  many hostile actions ran, and the node's peak RSS (VmHWM).
"""

from __future__ import annotations

import argparse
import itertools
import json
import multiprocessing as mp
import os
import random
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "Tests" / "integration"))

import msgpack  # noqa: E402

from sy_helpers import HOST, OP_BINARY, OP_TEXT, Closed, RawConn, free_port, open_ws, ws_frame  # noqa: E402


def frame(obj, binary: bool = False) -> bytes:
    if binary:
        return ws_frame(OP_BINARY, msgpack.packb(obj, use_bin_type=True))
    return ws_frame(OP_TEXT, json.dumps(obj, separators=(",", ":")).encode())


def identified(port: int, app: str, client_id: str, encoding: str = "json", **fields) -> RawConn:
    conn, _, _ = open_ws(port, path=f"/gateway/websocket?encoding={encoding}")
    d = {"application_id": app, "client_id": client_id, **fields}
    conn.send(frame({"op": 1, "d": d}, binary=encoding == "msgpack"))
    f = conn.read_frame(timeout=10)
    ready = msgpack.unpackb(f.payload, raw=False) if encoding == "msgpack" else json.loads(f.payload)
    assert ready["op"] == 2, ready
    return conn


def next_json(conn: RawConn, timeout: float = 10.0) -> dict:
    while True:
        f = conn.read_frame(timeout=timeout)
        if f.opcode == OP_TEXT:
            return json.loads(f.payload)


# ---------------------------------------------------------------- the largest frame

class Prober:
    """Heartbeats in a loop on its own connection, in its own process (the
    client that sends and reads the big frame must not delay it through
    Python's GIL); keeps every round trip."""

    def __init__(self, port: int):
        self.stop = mp.Event()
        self.ready = mp.Event()
        self.results = mp.Queue()
        self.process = mp.Process(target=self._run, args=(port,), daemon=True)

    def _run(self, port: int):
        conn = identified(port, "probe", f"probe-{time.monotonic_ns()}")
        beat = frame({"op": 5, "d": {}})
        rtts = []
        self.ready.set()
        while not self.stop.is_set():
            start = time.perf_counter()
            conn.send(beat)
            while next_json(conn, 60).get("op") != 6:
                pass
            rtts.append((start, time.perf_counter() - start))
            time.sleep(0.002)
        self.results.put(rtts)

    def start(self):
        self.process.start()
        self.ready.wait(10)

    def finish(self) -> list[tuple[float, float]]:
        self.stop.set()
        rtts = self.results.get(timeout=70)
        self.process.join(10)
        return rtts


def small_keys_object(total: int) -> dict:
    """An object of 1- to 3-character keys with 0/1 values, about `total`
    bytes as compact JSON."""
    out: dict = {}
    alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    size = 2
    i = 0
    while size < total:
        k = ""
        n = i
        while True:
            k = alphabet[n % 62] + k
            n //= 62
            if n == 0:
                break
        out[k] = i & 1
        size += len(k) + 5
        i += 1
    return out


def skip_frame(conn: RawConn) -> int:
    """Reads one (unmasked, server-sent) frame into a preallocated buffer
    and drops it: reading 16 MiB through RawConn's growing bytes would burn
    a core in the client, which shares this machine with the node."""
    head = conn.recv_exact(2, 120)
    n = head[1] & 0x7F
    if n == 126:
        n = struct.unpack("!H", conn.recv_exact(2, 120))[0]
    elif n == 127:
        n = struct.unpack("!Q", conn.recv_exact(8, 120))[0]
    buf = bytearray(n)
    view = memoryview(buf)
    got = min(len(conn.buf), n)
    view[:got] = conn.buf[:got]
    conn.buf = conn.buf[got:]
    conn.sock.settimeout(120)
    while got < n:
        got += conn.sock.recv_into(view[got:], n - got)
    return n


def pause_benchmark(binary: str, max_frame: int, repeat: int):
    port = free_port()
    node = subprocess.Popen([binary, "--port", str(port), "--bind", HOST, "--log-level", "warning"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_listening(port)
        big = small_keys_object(max_frame - 4096)
        payload_json = json.dumps(big, separators=(",", ":"))
        print(f"object of {len(big):,} members: {len(payload_json):,} bytes of JSON, "
              f"{len(msgpack.packb(big)):,} bytes of MessagePack")
        receivers = {"json": identified(port, "sink-json", "r"),
                     "msgpack": identified(port, "sink-msgpack", "r", encoding="msgpack")}
        sender_json = identified(port, "src", "s")
        sender_mp = identified(port, "src", "m", encoding="msgpack")

        def send(sender: str, receiver: str) -> bytes:
            target = {"application": f"sink-{receiver}", "ops": []}
            if sender == "json":
                return ws_frame(OP_TEXT, b'{"op":4,"t":"SEND","d":{"target":' + json.dumps(target).encode()
                                + b',"payload":' + payload_json.encode() + b"}}")
            return frame({"op": 4, "t": "SEND", "d": {"target": target, "payload": big}}, binary=True)

        senders = {"json": sender_json, "msgpack": sender_mp}
        cases = [(f"SEND {a} -> {b} receiver", senders[a], send(a, b), receivers[b])
                 for a, b in (("json", "json"), ("msgpack", "msgpack"), ("json", "msgpack"), ("msgpack", "json"))]
        serial = itertools.count()
        # Values outside a payload count against MAX_FRAME_VALUES: these are
        # refused (op 8, closed) after that many, each on its own connection.
        metadata = {k: {"type": "integer", "value": v} for k, v in list(big.items())[:len(big) // 4]}
        cases.append(("UPDATE_METADATA, JSON, refused by MAX_FRAME_VALUES", lambda: identified(port, "src", f"u{next(serial)}"),
                      ws_frame(OP_TEXT, b'{"op":4,"t":"UPDATE_METADATA","d":'
                               + json.dumps(metadata, separators=(",", ":")).encode() + b"}"), None))
        cases.append(("SEND, JSON, the object in an unknown field of d, refused by MAX_FRAME_VALUES",
                      lambda: identified(port, "src", f"j{next(serial)}"),
                      ws_frame(OP_TEXT, b'{"op":4,"t":"SEND","d":{"target":{"application":"sink-json","ops":[]},'
                               b'"payload":1,"junk":' + payload_json.encode() + b"}}"), None))
        cases.append(("SEND, MessagePack, the object in an unknown field of d, refused by MAX_FRAME_VALUES",
                      lambda: identified(port, "src", f"k{next(serial)}", encoding="msgpack"),
                      frame({"op": 4, "t": "SEND", "d": {"target": {"application": "sink-json", "ops": []},
                                                         "payload": 1, "junk": big}}, binary=True), None))
        only = os.environ.get("PAUSE_CASE")
        chosen = cases if only is None else [cases[int(only)]]
        worst: dict[str, list[float]] = {name: [] for name, *_ in chosen}
        for round_ in range(repeat):
            for name, conn, data, receiver in chosen:
                assert len(data) <= max_frame + 14, (name, len(data))
                if callable(conn):
                    conn = conn()  # refused frames close their connection: a new one each time
                prober = Prober(port)
                prober.start()
                time.sleep(0.3)
                start = time.perf_counter()
                conn.send(data)
                if receiver is not None:
                    length = skip_frame(receiver)
                    assert length > max_frame // 2, length
                else:
                    f = conn.read_frame(timeout=120)
                    reply = json.loads(f.payload) if f.opcode == OP_TEXT else msgpack.unpackb(f.payload, raw=False)
                    assert reply["op"] == 8 and "MAX_FRAME_VALUES" in reply["d"]["error"], reply
                done = time.perf_counter() - start
                time.sleep(0.3)
                during = [rtt for t0, rtt in prober.finish() if t0 + rtt >= start]
                worst[name].append(max(during))
                print(f"round {round_ + 1}, {name}: frame {len(data):,} bytes, answered after {done * 1000:.0f} ms "
                      f"(client side: sending, handling, and reading it back); prober round trips meanwhile: "
                      f"{len(during)}, worst {max(during) * 1000:.1f} ms, median {sorted(during)[len(during) // 2] * 1000:.2f} ms")
        print(f"\nworst pause per frame over {repeat} round(s), ms (min / median / max):")
        for name, values in worst.items():
            v = sorted(values)
            print(f"  {name}: {v[0] * 1000:.0f} / {v[len(v) // 2] * 1000:.0f} / {v[-1] * 1000:.0f}")
        print(f"node peak RSS (VmHWM): {vm_hwm(node.pid) // 1024} MiB")
    finally:
        node.terminate() if os.environ.get("ABUSE_TERM") else node.kill()


# ---------------------------------------------------------------- the mixed run

def hostile_big_identify(port: int, rng: random.Random):
    """IDENTIFY with as many metadata keys as IDENTIFY_MAX_SIZE lets through
    (over METADATA_MAX_KEYS: refused with op 3/8), then close."""
    conn, _, _ = open_ws(port)
    n = rng.choice([1000, 5000, 15000])
    md = {f"k{i}": {"type": "integer", "value": i} for i in range(n)}
    conn.send(frame({"op": 1, "d": {"application_id": "h", "client_id": f"big{rng.random()}", "metadata": md}}))
    conn.read_frame(timeout=10)
    conn.close()


def hostile_trickle(port: int, rng: random.Random):
    """A partial frame, a byte at a time, never identifying."""
    conn, _, _ = open_ws(port)
    data = frame({"op": 1, "d": {"application_id": "h", "client_id": "t"}})[:-1]
    try:
        for b in data[: rng.randint(5, 20)]:
            conn.send(bytes([b]))
            time.sleep(0.2)
    except OSError:
        pass
    conn.close()


def hostile_non_reader(port: int, rng: random.Random):
    """Joins the broadcast app and never reads: a slow consumer."""
    conn = identified(port, "bcast", f"nr{rng.random()}")
    time.sleep(rng.uniform(1, 5))
    conn.close()


def hostile_broadcaster(port: int, rng: random.Random):
    """BROADCASTs 16 KiB payloads to the app the non-readers joined."""
    conn = identified(port, "flood", f"b{rng.random()}")
    target = {"application": "bcast", "optional": True, "ops": []}
    data = frame({"op": 4, "t": "BROADCAST", "d": {"target": target, "payload": "x" * 16384}}) * 20
    try:
        for _ in range(20):
            conn.send(data)
            conn.discard_pending()
    except OSError:
        pass
    conn.close()


def hostile_ping_flood(port: int, rng: random.Random):
    """Pings as fast as it can, never reading the pongs."""
    conn, _, _ = open_ws(port)
    burst = ws_frame(9, b"") * 5000
    conn.sock.settimeout(2)
    try:
        for _ in range(50):
            conn.send(burst)
    except OSError:
        pass
    conn.close()


def hostile_garbage(port: int, rng: random.Random):
    """Bad frames of every kind: invalid JSON, bad UTF-8, reserved opcodes,
    unmasked frames, random bytes."""
    conn, _, _ = open_ws(port)
    choices = [
        ws_frame(OP_TEXT, b"{not json"),
        ws_frame(OP_TEXT, b"\xff\xfe"),
        ws_frame(0x3, b"x"),
        ws_frame(OP_TEXT, b"{}", mask=False),
        os.urandom(rng.randint(1, 4096)),
        ws_frame(OP_TEXT, b"[" * 100_000),
    ]
    try:
        conn.send(rng.choice(choices))
        conn.read_frame(timeout=5)
    except (OSError, Closed, TimeoutError, ValueError):
        pass
    conn.close()


def hostile_rest(port: int, rng: random.Random):
    """REST query bodies of many keys and requests without credentials."""
    body = json.dumps({"application": "h", "ops": [{"path": f"/k{i}", "op": "$eq", "to": {"value": i}}
                                                   for i in range(rng.choice([10, 5000, 20000]))]})
    with socket.create_connection((HOST, port), timeout=10) as s:
        s.sendall(f"POST /api/v1/query HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body.encode())
        while s.recv(65536):
            pass


HOSTILE = [hostile_big_identify, hostile_trickle, hostile_non_reader, hostile_broadcaster,
           hostile_ping_flood, hostile_garbage, hostile_rest]


def hostile_worker(port: int, seed: int, until: float, counts):
    rng = random.Random(seed)
    while time.time() < until:
        action = rng.choice(HOSTILE)
        try:
            action(port, rng)
            with counts.get_lock():
                counts[HOSTILE.index(action)] += 1
        except (OSError, Closed, TimeoutError, AssertionError, ValueError):
            with counts.get_lock():
                counts[len(HOSTILE)] += 1


def normal_pair(port: int, seconds: float, rate: int) -> tuple[list[float], int]:
    """A sender SENDs to a receiver `rate` times a second; returns the
    latencies (receive time minus send time) and the count lost."""
    receiver = identified(port, "normal", "receiver", metadata={"role": {"type": "string", "value": "rx"}})
    sender = identified(port, "normal", "sender")
    target = {"application": "normal", "ops": [{"path": "/role", "op": "$eq", "to": {"value": "rx"}}]}
    latencies: list[float] = []
    sent: dict[int, float] = {}
    done = threading.Event()

    def receive():
        while not done.is_set() or len(latencies) < len(sent):
            try:
                f = next_json(receiver, 5)
            except TimeoutError:
                if done.is_set():
                    return
                continue
            if f.get("t") == "SEND":
                n = f["d"]["payload"]["n"]
                latencies.append(time.perf_counter() - sent[n])

    t = threading.Thread(target=receive, daemon=True)
    t.start()
    interval = 1 / rate
    start = time.perf_counter()
    n = 0
    beat = frame({"op": 5, "d": {}})
    next_beat = start
    while time.perf_counter() - start < seconds:
        if time.perf_counter() >= next_beat:  # within HEARTBEAT_INTERVAL (45 s)
            sender.send(beat)
            receiver.send(beat)
            next_beat += 20
        sent[n] = time.perf_counter()
        sender.send(frame({"op": 4, "t": "SEND", "d": {"target": target, "payload": {"n": n}}}))
        n += 1
        sender.discard_pending()
        time.sleep(max(0.0, start + n * interval - time.perf_counter()))
    done.set()
    t.join(10)
    return latencies, len(sent) - len(latencies)


def vm_hwm(pid: int) -> int:
    """Peak resident set of `pid`, KiB."""
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def wait_listening(port: int):
    for _ in range(100):
        try:
            socket.create_connection((HOST, port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit("node did not start")


def mixed_run(binary: str, seconds: float, workers: int, rate: int, seed: int):
    port = free_port()
    node = subprocess.Popen([binary, "--port", str(port), "--bind", HOST, "--log-level", "error"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_listening(port)
        base_rss = vm_hwm(node.pid)
        # Normal traffic alone first, for comparison.
        quiet, quiet_lost = normal_pair(port, 10, rate)
        counts = mp.Array("l", len(HOSTILE) + 1)
        until = time.time() + seconds
        procs = [mp.Process(target=hostile_worker, args=(port, seed + i, until, counts)) for i in range(workers)]
        for p in procs:
            p.start()
        loud, loud_lost = normal_pair(port, seconds, rate)
        for p in procs:
            p.join(60)
        assert node.poll() is None, f"node exited with {node.returncode}"
        print(f"seed {seed}, {workers} hostile workers for {seconds:.0f} s; normal SENDs at {rate}/s")
        for name, lat, lost in (("alone", quiet, quiet_lost), ("under abuse", loud, loud_lost)):
            lat.sort()
            pct = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] * 1000  # noqa: E731
            print(f"  normal SEND latency {name}: {len(lat)} delivered, {lost} lost, "
                  f"p50 {pct(0.5):.2f} ms, p99 {pct(0.99):.2f} ms, max {lat[-1] * 1000:.1f} ms")
        print("  hostile actions: " + ", ".join(f"{f.__name__.removeprefix('hostile_')} {counts[i]}"
                                                for i, f in enumerate(HOSTILE))
              + f", failed/refused {counts[len(HOSTILE)]}")
        print(f"  node RSS: {base_rss // 1024} MiB at start, peak (VmHWM) {vm_hwm(node.pid) // 1024} MiB")
    finally:
        node.terminate() if os.environ.get("ABUSE_TERM") else node.kill()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--binary", default=str(ROOT / ".build" / "release" / "singyeong"))
    ap.add_argument("--pause", action="store_true", help="only the largest-frame pause measurement")
    ap.add_argument("--seconds", type=float, default=180)
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--rate", type=int, default=200, help="normal SENDs per second")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--max-frame", type=int, default=16 * 1024 * 1024)
    ap.add_argument("--repeat", type=int, default=5, help="--pause: rounds over all the frames")
    args = ap.parse_args()
    if args.pause:
        pause_benchmark(args.binary, args.max_frame, args.repeat)
    else:
        mixed_run(args.binary, args.seconds, args.workers, args.rate, args.seed)


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    main()
