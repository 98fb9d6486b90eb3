#!/usr/bin/env python3
"""Chaos run for a Singyeong cluster that counts every message (issue 12, point 3).

Not part of `make test`. Runs N real nodes (own loopback address each:
127.0.0.2, .3, ...) and one real Redis on this machine, keeps steady SEND and
BROADCAST traffic with unique nonces between clients on all nodes, and
injects one random fault at a time (seeded RNG), a few seconds apart:

  kill9      kill -9 of a node, restart after a hold time (new node id, same ports)
  sigterm    SIGTERM of a node (lame-duck shutdown, must exit 0), restart after
             the hold time
  freeze     SIGSTOP of a node, SIGCONT after the hold time
  partition  iptables DROP rules isolating one node's cluster port from the
             others (as test_partition_ab_c_and_heal: every node runs as its
             own uid so its outbound dials can be matched with -m owner),
             removed after the hold time (always, in a finally block; rules
             carry the comment tag singyeong-chaos-<pid>)
  redis_down     Redis stopped for the hold time, then started empty
  redis_restart  Redis killed and started again right away (empty)
  redis_freeze   SIGSTOP of Redis, SIGCONT after the hold time
  redis_down+kill9 / +freeze / +partition (opt-in, `--faults overlap`):
                 Redis down during the whole of a node fault

Receivers reconnect every --churn seconds (one at a time), after their node
died and after GOODBYE. Link state, recovery times, RSS and crashes are
watched throughout; see RELIABILITY.md for a sample run.

After each fault is healed it measures how long until every node again has
links to all the others (their "peer link up/down" log lines, Node.linked())
and the registry lists exactly the live nodes.

Every message has one expected delivery per intended recipient: a SEND
targets exactly one receiver by its unique `cid` metadata, a BROADCAST the
receivers of one group (one receiver of the group on every node). A
(message, recipient) pair is *healthy* when, over [send - margin, send +
settle], the sender's and the receiver's nodes were up, not frozen, not
partitioned from each other, and linked (a node fault lasts from its
injection until the mesh is complete again), and the receiver's client was
connected and identified. Redis faults do not make a pair unhealthy; pairs
whose receiver connected during a Redis outage are shown on their own line
(a known bug: such a client may be unreachable) and excluded from the
healthy figures unless --strict-redis.

Exit status 1 when a healthy pair lost or duplicated a message, a message
reached a client it did not target, or a node exited on its own; 2 on a
setup error.

    sudo .venv/bin/python scripts/chaos.py --duration 90 --seed 1 [--nodes 3]

Needs root (iptables, per-node uids), redis-server and iptables on PATH, and
the binary from $SINGYEONG_BIN (default .build/release/singyeong, else
.build/debug/singyeong).
"""

from __future__ import annotations

import argparse
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "Tests" / "integration"))

if "SINGYEONG_BIN" in os.environ:
    # Nodes start with another working directory: a relative path must not reach them.
    os.environ["SINGYEONG_BIN"] = str(Path(os.environ["SINGYEONG_BIN"]).resolve())
else:
    for cand in (REPO / ".build" / "release" / "singyeong", REPO / ".build" / "debug" / "singyeong"):
        if cand.exists():
            os.environ["SINGYEONG_BIN"] = str(cand)
            break

import conftest  # noqa: E402  (reads SINGYEONG_BIN)
from cluster_fixtures import Cluster, RedisServer  # noqa: E402
from gateway_client import typed  # noqa: E402
from websockets.exceptions import ConnectionClosed  # noqa: E402

RX_APP = "chaos-rx"
TX_APP = "chaos-tx"
UID_BASE = 64000  # node i runs as uid/gid UID_BASE + i (numeric, no passwd entry needed)
FAULT_KINDS = ["kill9", "sigterm", "freeze", "partition", "redis_down", "redis_restart", "redis_freeze"]
# opt-in: Redis down for the whole of a node fault (kill9/freeze/partition), back only after it healed
OVERLAP_KINDS = ["redis_down+kill9", "redis_down+freeze", "redis_down+partition"]
NODE_FAULTS = {"kill9", "sigterm", "freeze", "partition", "crash"}


def mono() -> float:
    return time.monotonic()


# --------------------------------------------------------------------------
# bookkeeping
# --------------------------------------------------------------------------


@dataclass
class Msg:
    nonce: str
    kind: str  # SEND / BROADCAST
    t: float  # monotonic send time
    src: int  # sender's node index
    expected: list[int]  # receiver cids


@dataclass
class Fault:
    kind: str
    node: int | None  # victim node (None for Redis faults)
    start: float
    hold: float = 0.0
    healed: float | None = None  # when the fault was undone
    end: float | None = None  # mesh + registry complete again (None: never)
    broke_s: float | None = None  # seconds from injection until the mesh was seen incomplete
    mesh_s: float | None = None  # seconds from heal to full mesh
    registry_s: float | None = None  # seconds from heal to a correct registry
    note: str = ""


class Ledger:
    def __init__(self):
        self.lock = threading.Lock()
        self.msgs: dict[str, Msg] = {}
        self.deliveries: Counter = Counter()  # (nonce, cid) -> count
        self.first_delivery: dict[tuple[str, int], float] = {}
        self.unexpected: list[tuple[str, int]] = []
        self.no_route: set[str] = set()
        self.other_errors: list[dict] = []
        self.goodbyes = 0

    def sent(self, m: Msg):
        with self.lock:
            self.msgs[m.nonce] = m

    def delivered(self, nonce, cid: int, t: float):
        with self.lock:
            m = self.msgs.get(nonce)
            if m is None or cid not in m.expected:
                self.unexpected.append((nonce, cid))
                return
            self.deliveries[(nonce, cid)] += 1
            self.first_delivery.setdefault((nonce, cid), t)


class Timeline:
    """Intervals during which something held, for the healthy-pair test."""

    def __init__(self):
        self.lock = threading.Lock()
        self.faults: list[Fault] = []
        self.redis_outages: list[list[float | None]] = []  # [start, end]

    def add(self, f: Fault):
        with self.lock:
            self.faults.append(f)


# --------------------------------------------------------------------------
# clients
# --------------------------------------------------------------------------


class ClientLoop(threading.Thread):
    """One gateway connection kept alive (reconnecting) against one node."""

    def __init__(self, run: "Chaos", node_idx: int, client_id: str, app: str, metadata: dict):
        super().__init__(daemon=True, name=client_id)
        self.run_ = run
        self.node_idx = node_idx
        self.client_id = client_id
        self.app = app
        self.metadata = metadata
        self.ws = None
        self.conn_lock = threading.Lock()
        self.intervals: list[list] = []  # [ready_time, close_time or None, connected_during_redis_outage]
        self.reconnects = 0
        self.churn_request = threading.Event()

    @property
    def node(self):
        return self.run_.nodes[self.node_idx]

    def connect(self) -> bool:
        from cluster_fixtures import HostClient
        n = self.node
        try:
            c = HostClient(n.host, n.port, open_timeout=2.0)
        except Exception:
            return False
        try:
            c.identify(self.app, self.client_id, metadata=self.metadata)
        except Exception:
            c.close()
            return False
        with self.conn_lock:
            self.ws = c
        self.intervals.append([mono(), None, self.run_.redis_down_now()])
        self.last_hb = mono()
        return True

    def closed(self):
        if self.intervals and self.intervals[-1][1] is None:
            self.intervals[-1][1] = mono()
        with self.conn_lock:
            c, self.ws = self.ws, None
        if c is not None:
            c.close()

    def connected_over(self, lo: float, hi: float) -> tuple[bool, bool]:
        """(one connection covered [lo, hi], that connection was made during a Redis outage)."""
        for start, end, during_outage in self.intervals:
            if start <= lo and (end is None or end >= hi):
                return True, during_outage
        return False, False

    def handle(self, f: dict):
        pass

    def tick(self):
        pass

    def run(self):
        stop = self.run_.stop_clients
        while not stop.is_set():
            if not self.connect():
                time.sleep(0.1)
                continue
            try:
                while not stop.is_set():
                    if self.churn_request.is_set():
                        self.churn_request.clear()
                        break
                    if mono() - self.last_hb > 10:
                        self.ws.send({"op": 5, "d": {"client_id": self.client_id}})
                        self.last_hb = mono()
                    self.tick()
                    try:
                        raw = self.ws.ws.recv(timeout=self.recv_timeout())
                    except TimeoutError:
                        continue
                    f = self.ws.decode(raw)
                    if f.get("op") == 7:
                        with self.run_.ledger.lock:
                            self.run_.ledger.goodbyes += 1
                        break
                    self.handle(f)
            except (ConnectionClosed, OSError, RuntimeError, ValueError, AssertionError):
                pass
            self.closed()
            if not stop.is_set():
                self.reconnects += 1
                time.sleep(0.05)
        self.closed()

    def recv_timeout(self) -> float:
        return 0.5


def rx_app(args, grp: int) -> str:
    """Receivers' application: one per group (each node holds one client of
    it, so a reconnect or restart makes a node lose and regain the
    application: its announcement to the peers is exercised), or one shared."""
    return f"{RX_APP}-g{grp}" if args.apps == "per-group" else RX_APP


class Receiver(ClientLoop):
    def __init__(self, run, node_idx, cid: int, grp: int):
        super().__init__(run, node_idx, f"rx{cid}", rx_app(run.args, grp),
                         typed(cid=("integer", cid), grp=("integer", grp)))
        self.cid = cid
        self.grp = grp

    def handle(self, f):
        if f.get("op") == 4 and f.get("t") in ("SEND", "BROADCAST") and isinstance(f.get("d"), dict):
            self.run_.ledger.delivered(f["d"].get("nonce"), self.cid, mono())


class Sender(ClientLoop):
    def __init__(self, run, node_idx: int, rate: float, seed: int):
        super().__init__(run, node_idx, f"tx{node_idx}", TX_APP, {})
        self.period = 1.0 / rate
        self.rng = random.Random(seed)
        self.seq = 0
        self.next_at = mono()

    def recv_timeout(self):
        return max(0.0, min(0.5, self.next_at - mono()))

    def tick(self):
        if mono() < self.next_at or not self.run_.traffic_on.is_set():
            if not self.run_.traffic_on.is_set():
                self.next_at = mono() + self.period
            return
        self.next_at += self.period
        if self.next_at < mono() - 1:  # fell behind (a frozen node): do not burst
            self.next_at = mono() + self.period
        run = self.run_
        self.seq += 1
        nonce = f"s{run.args.seed}-n{self.node_idx}-{self.seq}"
        if self.rng.random() < run.args.broadcast_ratio:
            grp = self.rng.randrange(run.args.receivers)
            kind = "BROADCAST"
            target = {"application": rx_app(run.args, grp),
                      "ops": [{"path": "/grp", "op": "$eq", "to": {"value": grp}}]}
            expected = [r.cid for r in run.receivers if r.grp == grp]
        else:
            r = self.rng.choice(run.receivers)
            kind = "SEND"
            target = {"application": rx_app(run.args, r.grp),
                      "ops": [{"path": "/cid", "op": "$eq", "to": {"value": r.cid}}]}
            expected = [r.cid]
        m = Msg(nonce, kind, mono(), self.node_idx, expected)
        run.ledger.sent(m)  # recorded before the write (a delivery can come back before send() returns)
        try:
            self.ws.send({"op": 4, "t": kind, "d": {"target": target, "nonce": nonce, "payload": {"seq": self.seq}}})
        except BaseException:
            with run.ledger.lock:  # never handed to the socket: not a message
                run.ledger.msgs.pop(nonce, None)
            raise

    def handle(self, f):
        if f.get("op") == 3:
            d = f.get("d") or {}
            nonce = ((d.get("extra_info") or {}).get("d") or {}).get("nonce")
            with self.run_.ledger.lock:
                if d.get("error") == "no_route" and nonce is not None:
                    self.run_.ledger.no_route.add(nonce)
                else:
                    self.run_.ledger.other_errors.append(d)


# --------------------------------------------------------------------------
# the run
# --------------------------------------------------------------------------


def iptables(*args) -> subprocess.CompletedProcess:
    return subprocess.run(["iptables", "-w", "5", *args], capture_output=True, text=True, timeout=15)


def rss_kb(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


class Chaos:
    def __init__(self, args):
        self.args = args
        self.rng = random.Random(args.seed)
        self.ledger = Ledger()
        self.timeline = Timeline()
        self.stop_clients = threading.Event()
        self.traffic_on = threading.Event()
        self.stop_monitor = threading.Event()
        self.expected_down: set[int] = set()  # nodes we killed and have not restarted yet
        self.crashes: list[tuple[int, float, int, str]] = []  # node, time, exit code, log tail
        self.rss: dict[tuple[int, int], list[tuple[float, int]]] = defaultdict(list)  # (node, gen) -> samples
        self.iptables_tag = f"singyeong-chaos-{os.getpid()}"
        self.installed_rules: list[list[str]] = []
        self.redis_outage_since: float | None = None
        self.unexpected_link_downs: list[str] = []
        self.t0 = mono()
        self.wall0 = time.time()

    # ------------------------------------------------------------ setup
    def start(self):
        self.tmp = Path(tempfile.mkdtemp(prefix="sy-chaos-"))
        self.redis = RedisServer(self.tmp).start()
        self.cluster = Cluster(self.redis)
        self.nodes = []
        for i in range(self.args.nodes):
            self.nodes.append(self.cluster.add(user=UID_BASE + i))
        self.cluster.wait_mesh(self.nodes, timeout=15)
        self.receivers = [Receiver(self, i, i * self.args.receivers + j, j)
                          for i in range(self.args.nodes) for j in range(self.args.receivers)]
        self.senders = [Sender(self, i, self.args.rate, self.args.seed * 1000 + i) for i in range(self.args.nodes)]
        for c in self.receivers + self.senders:
            c.start()
        deadline = mono() + 10
        while mono() < deadline and not all(c.intervals for c in self.receivers + self.senders):
            time.sleep(0.05)
        if not all(c.intervals for c in self.receivers + self.senders):
            raise RuntimeError("clients could not connect")
        self.monitor = threading.Thread(target=self.monitor_loop, daemon=True, name="monitor")
        self.monitor.start()

    def redis_down_now(self) -> bool:
        return self.redis_outage_since is not None

    # ------------------------------------------------------------ monitoring
    def monitor_loop(self):
        while not self.stop_monitor.is_set():
            now = mono()
            for i, n in enumerate(self.nodes):
                if n.proc is None:
                    continue
                code = n.proc.poll()
                if code is None:
                    r = rss_kb(n.proc.pid)
                    if r is not None:
                        self.rss[(i, n.generation)].append((now, r))
                elif i not in self.expected_down:
                    self.expected_down.add(i)
                    self.crashes.append((i, now, code, n.log()[-4000:]))
                    print(f"[{self.rel(now):7.2f}] !!! node {n.name} exited on its own with {code}", flush=True)
                    self.timeline.add(Fault("crash", i, now, note=f"exit {code}"))
            self.stop_monitor.wait(0.5)

    def rel(self, t: float) -> float:
        return t - self.t0

    def full_mesh(self) -> bool:
        for n in self.nodes:
            if not n.alive() or n.node_id is None:
                return False
        ids = {n.node_id for n in self.nodes}
        for n in self.nodes:
            if n.linked() != ids - {n.node_id} or n.last_peers() != len(self.nodes) - 1:
                return False
        return True

    def registry_ok(self) -> bool:
        try:
            return self.redis.registry() == {n.node_id: n.advertise for n in self.nodes}
        except Exception:
            return False

    def wait_recovery(self, f: Fault):
        t_heal = f.healed
        limit = t_heal + self.args.recovery_limit
        while mono() < limit:
            now = mono()
            if f.mesh_s is None and self.full_mesh():
                f.mesh_s = now - t_heal
            if f.registry_s is None and self.registry_ok():
                f.registry_s = now - t_heal
            if f.mesh_s is not None and f.registry_s is not None:
                break
            time.sleep(0.05)
        if f.mesh_s is not None:
            f.end = t_heal + f.mesh_s
        if f.mesh_s is None or f.registry_s is None:
            f.note += " NOT RECOVERED"

    # ------------------------------------------------------------ faults
    def hold(self, f: Fault, seconds: float):
        """Sleeps while watching whether the mesh broke (the fault took effect)."""
        end = mono() + seconds
        while True:
            if f.broke_s is None and not self.full_mesh():
                f.broke_s = mono() - f.start
            left = end - mono()
            if left <= 0:
                return
            time.sleep(min(0.05, left))

    def partition_rules(self, i: int) -> list[list[str]]:
        x = self.nodes[i]
        rules = [["OUTPUT", "-p", "tcp", "-d", x.host, "--dport", str(x.cluster_port)],
                 ["OUTPUT", "-p", "tcp", "-s", x.host, "--sport", str(x.cluster_port)]]
        for j, o in enumerate(self.nodes):
            if j != i:
                rules.append(["OUTPUT", "-p", "tcp", "-m", "owner", "--uid-owner", str(UID_BASE + i), "-d", o.host,
                              "--dport", str(o.cluster_port)])
        return [r + ["-m", "comment", "--comment", self.iptables_tag, "-j", "DROP"] for r in rules]

    def remove_rules(self):
        errors = []
        for rule in list(self.installed_rules):
            res = iptables("-D", *rule)
            if res.returncode != 0:
                errors.append(f"iptables -D {' '.join(rule)}: {res.stderr.strip()}")
            self.installed_rules.remove(rule)
        leftover = iptables("-S", "OUTPUT").stdout
        if self.iptables_tag in leftover:
            errors.append(f"rules tagged {self.iptables_tag} still present:\n{leftover}")
        if errors:
            raise RuntimeError("; ".join(errors))

    def inject(self, kind: str, victim: int, hold: float) -> Fault:
        base = kind.split("+")[-1]
        f = Fault(kind, victim if base in NODE_FAULTS else None, mono(), hold)
        self.timeline.add(f)
        who = f"node {self.nodes[victim].name}" if f.node is not None else "redis"
        print(f"[{self.rel(f.start):7.2f}] fault {kind:<20} {who:<7} hold {hold:4.2f}s", flush=True)
        wrapped = "+" in kind
        try:
            if wrapped:
                self.redis_outage_since = mono()
                self.redis.stop(signal.SIGKILL)
            kind = base
            if kind == "kill9":
                n = self.nodes[victim]
                self.expected_down.add(victim)
                n.kill9()
                self.hold(f, hold)
                n.start()
                self.expected_down.discard(victim)
            elif kind == "sigterm":
                # Graceful: the node leaves as a lame duck (peers stop choosing
                # its clients before it sends them GOODBYE), then restarts.
                n = self.nodes[victim]
                self.expected_down.add(victim)
                n.proc.send_signal(signal.SIGTERM)
                code = n.proc.wait(timeout=15)
                if code != 0:
                    f.note += f" EXIT CODE {code} AFTER SIGTERM"
                self.hold(f, hold)
                n.start()
                self.expected_down.discard(victim)
            elif kind == "freeze":
                p = self.nodes[victim].proc
                p.send_signal(signal.SIGSTOP)
                try:
                    self.hold(f, hold)
                finally:
                    p.send_signal(signal.SIGCONT)
            elif kind == "partition":
                try:
                    for rule in self.partition_rules(victim):
                        res = iptables("-I", *rule)
                        if res.returncode != 0:
                            raise RuntimeError(f"iptables -I {' '.join(rule)}: {res.stderr.strip()}")
                        self.installed_rules.append(rule)
                    self.hold(f, hold)
                finally:
                    self.remove_rules()
            elif kind in ("redis_down", "redis_restart"):
                self.redis_outage_since = mono()
                self.redis.stop(signal.SIGKILL)
                self.hold(f, hold)
                self.redis.start()
            elif kind == "redis_freeze":
                self.redis_outage_since = mono()
                self.redis.proc.send_signal(signal.SIGSTOP)
                try:
                    self.hold(f, hold)
                finally:
                    self.redis.proc.send_signal(signal.SIGCONT)
        except BaseException as e:  # noqa: BLE001  (pytest.fail raises a BaseException)
            if isinstance(e, KeyboardInterrupt):
                raise
            f.note += f" error: {e!r}"
            print(f"          fault {kind} failed: {e!r}", flush=True)
        finally:
            kind = f.kind
            if wrapped:
                self.redis.start()
        f.healed = mono()
        if f.node is None and f.broke_s is not None:
            f.note += " LINKS DROPPED DURING A REDIS FAULT"
        self.wait_recovery(f)
        if "redis" in kind:
            # clients connecting until the registry is complete again count as joining in the outage
            self.redis_outage_since = None
            self.timeline.redis_outages.append([f.start, mono()])
        print(f"          healed; mesh broken after {fmt_s(f.broke_s)}; complete again {fmt_s(f.mesh_s)} after the heal, "
              f"registry {fmt_s(f.registry_s)}{f.note}",
              flush=True)
        return f

    def chaos_loop(self):
        end = self.t0 + self.args.duration
        time.sleep(self.args.warmup)
        kinds = [k for k in FAULT_KINDS + OVERLAP_KINDS if k in self.args.faults]
        while True:
            self.restart_crashed()
            gap = self.rng.uniform(self.args.gap_min, self.args.gap_max)
            kind = self.rng.choice(kinds)
            victim = self.rng.randrange(len(self.nodes))
            hold = self.rng.uniform(0.0, 0.4) if kind == "redis_restart" else self.rng.uniform(0.3, self.args.hold_max)
            if mono() + gap + hold + 3 > end:
                break
            time.sleep(gap)
            self.inject(kind, victim, hold)
        while mono() < end:
            time.sleep(0.1)

    def restart_crashed(self):
        """A node that exited on its own is started again (the crash is reported)."""
        for f in list(self.timeline.faults):
            if f.kind == "crash" and f.healed is None:
                n = self.nodes[f.node]
                try:
                    n.start()
                    self.expected_down.discard(f.node)
                except BaseException as e:  # noqa: BLE001
                    if isinstance(e, KeyboardInterrupt):
                        raise
                    f.note += f" restart failed: {e!r}"
                f.healed = mono()
                self.wait_recovery(f)

    def churn_loop(self):
        """Every --churn seconds one random receiver closes and reconnects."""
        rng = random.Random(self.args.seed * 7 + 3)
        while not self.stop_clients.wait(self.args.churn):
            if self.traffic_on.is_set():
                rng.choice(self.receivers).churn_request.set()

    # ------------------------------------------------------------ run
    def go(self) -> int:
        try:
            try:
                self.start()
            except BaseException as e:  # noqa: BLE001
                if isinstance(e, KeyboardInterrupt):
                    raise
                print(f"setup failed: {e}", file=sys.stderr)
                self.stop_clients.set()
                self.stop_monitor.set()
                if getattr(self, "cluster", None) is not None:
                    print(self.cluster.dump(3000), file=sys.stderr)
                    self.cluster.close()
                if getattr(self, "redis", None) is not None:
                    self.redis.stop()
                return 2
            if self.args.churn > 0:
                threading.Thread(target=self.churn_loop, daemon=True, name="churn").start()
            print(f"cluster up: {len(self.nodes)} nodes "
                  f"{', '.join(f'{n.name}={n.host}' for n in self.nodes)}, redis :{self.redis.port}, "
                  f"{len(self.receivers)} receivers, {len(self.senders)} senders at {self.args.rate}/s each, "
                  f"binary {conftest.SINGYEONG_BIN}, logs {self.cluster.dir}", flush=True)
            self.t0 = mono()
            self.wall0 = time.time()
            self.traffic_on.set()
            self.chaos_loop()
            self.traffic_on.clear()
            self.t_traffic_end = mono()
            time.sleep(self.args.settle + 2.0)  # in-flight deliveries
        finally:
            try:
                self.remove_rules()
            except Exception as e:  # noqa: BLE001
                print(f"!!! {e}", flush=True)
            for n in getattr(self, "nodes", []):
                if n.proc is not None and n.proc.poll() is None:
                    n.proc.send_signal(signal.SIGCONT)
            if getattr(self, "redis", None) is not None and self.redis.proc is not None \
                    and self.redis.proc.poll() is None:
                self.redis.proc.send_signal(signal.SIGCONT)
        self.stop_monitor.set()
        self.stop_clients.set()
        for c in self.receivers + self.senders:
            c.join(timeout=3)
        self.collect_link_downs()
        rc = self.report()
        self.cluster.close()
        self.cluster.release_files(keep=rc != 0 or self.args.keep_logs)
        self.redis.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)
        if rc != 0 or self.args.keep_logs:
            print(f"node logs kept in {self.cluster.dir}")
        return rc

    # ------------------------------------------------------------ analysis
    def collect_link_downs(self):
        """'peer link down' lines on a node while no node fault was in effect."""
        windows = []
        for f in self.timeline.faults:
            if f.node is not None:
                lo = self.wall(f.start) - 1.5
                hi = self.wall(f.end if f.end is not None else mono()) + 1.5
                windows.append((lo, hi))
        for n in self.nodes:
            for p in n.log_paths:
                for line in n.log(p).splitlines():
                    if "peer link down" not in line:
                        continue
                    ts = parse_ts(line)
                    if ts is None or any(lo <= ts <= hi for lo, hi in windows):
                        continue
                    self.unexpected_link_downs.append(f"{n.name}: {line}")

    def wall(self, t: float) -> float:
        return self.wall0 + (t - self.t0)

    def pair_class(self, m: Msg, cid: int, rx: Receiver) -> tuple[str, int | None]:
        """(class, index of the fault that made the pair unhealthy; -1: the receiver was reconnecting)."""
        lo, hi = m.t - self.args.margin, m.t + self.args.settle
        if self.args.check_the_checker:
            return "healthy", None
        ok, during_outage = rx.connected_over(lo, hi)
        if not ok:  # attributed to the reconnect even when a fault overlapped too
            return "unhealthy", -1
        for k, f in enumerate(self.timeline.faults):
            if f.node is None:
                continue
            f_end = f.end if f.end is not None else float("inf")
            if f_end < lo or f.start > hi:
                continue
            if f.kind.endswith("partition"):
                if (m.src == f.node) != (rx.node_idx == f.node):
                    return "unhealthy", k
            elif f.node in (m.src, rx.node_idx):
                return "unhealthy", k
        if during_outage and not self.args.strict_redis:
            return "redis-joined", None
        return "healthy", None

    def report(self) -> int:
        L = self.ledger
        rx_by_cid = {r.cid: r for r in self.receivers}
        stats = {c: Counter() for c in ("all", "healthy", "redis-joined", "unhealthy")}
        bad: list[tuple[str, Msg, int, int]] = []
        latencies = []
        msgs_by_class = {c: set() for c in stats}
        per_cause: dict[int, Counter] = defaultdict(Counter)  # fault index (-1: rx reconnecting) -> counts
        for m in L.msgs.values():
            for cid in m.expected:
                cls, cause = self.pair_class(m, cid, rx_by_cid[cid])
                n = L.deliveries.get((m.nonce, cid), 0)
                if cause is not None:
                    pc = per_cause[cause]
                    pc["pairs"] += 1
                    pc["lost"] += n == 0
                    pc["dup"] += n > 1
                    pc["no_route"] += n == 0 and m.nonce in L.no_route
                for c in ("all", cls):
                    s = stats[c]
                    s["pairs"] += 1
                    s["delivered"] += n > 0
                    s["lost"] += n == 0
                    s["duplicated"] += n > 1
                    s["extra copies"] += max(0, n - 1)
                    s["no_route"] += n == 0 and m.nonce in L.no_route
                    s[m.kind] += 1
                    msgs_by_class[c].add(m.nonce)
                if cls == "healthy":
                    if n != 1:
                        bad.append(("lost" if n == 0 else f"delivered {n}x", m, cid, n))
                    else:
                        latencies.append(L.first_delivery[(m.nonce, cid)] - m.t)
        faults = self.timeline.faults
        by_kind = Counter(f.kind for f in faults)
        a = self.args
        print()
        print("=" * 78)
        print(f"chaos run: seed {a.seed}, duration {a.duration:.0f}s, {a.nodes} nodes, "
              f"{len(self.receivers)} receivers, {a.rate:g} msg/s per sender, binary {conftest.SINGYEONG_BIN.name} "
              f"({conftest.SINGYEONG_BIN.parent.name})")
        print(f"faults injected: {len(faults)}  ({', '.join(f'{k} {v}' for k, v in sorted(by_kind.items()))})")
        sends = sum(1 for m in L.msgs.values() if m.kind == "SEND")
        bcasts = len(L.msgs) - sends
        print(f"messages sent: {len(L.msgs)}  (SEND {sends}, BROADCAST {bcasts}); "
              f"expected deliveries (message, recipient pairs): {stats['all']['pairs']}")
        print()
        print(f"{'pairs':<24}{'expected':>10}{'delivered':>11}{'lost':>8}{'(no_route)':>12}{'duplicated':>12}")
        labels = {"all": "overall", "healthy": "healthy pairs",
                  "redis-joined": "rx joined in Redis outage", "unhealthy": "not healthy"}
        for c in ("all", "healthy", "redis-joined", "unhealthy"):
            s = stats[c]
            if c == "redis-joined" and not s["pairs"]:
                continue
            print(f"{labels[c]:<24}{s['pairs']:>10}{s['delivered']:>11}{s['lost']:>8}{s['no_route']:>12}"
                  f"{s['duplicated']:>12}")
        print(f"messages with a healthy pair: {len(msgs_by_class['healthy'])}; deliveries to a client not "
              f"targeted: {len(L.unexpected)}; other op 3 errors: {len(L.other_errors)}; GOODBYEs: {L.goodbyes}; "
              f"client reconnects: {sum(c.reconnects for c in self.receivers + self.senders)}")
        if latencies:
            latencies.sort()
            print(f"healthy delivery latency: p50 {latencies[len(latencies) // 2] * 1000:.1f} ms, "
                  f"p99 {latencies[int(len(latencies) * 0.99)] * 1000:.1f} ms, max {latencies[-1] * 1000:.1f} ms")
        print()
        print("faults (time from start; 'broken' = mesh seen incomplete after injection; recovery = from heal to "
              "full mesh / correct registry):")
        for k, f in enumerate(faults):
            who = self.nodes[f.node].name if f.node is not None else "redis"
            print(f"  {self.rel(f.start):7.2f}s {f.kind:<20} {who:<5} hold {f.hold:4.2f}s  broken {fmt_s(f.broke_s):>6}  "
                  f"mesh {fmt_s(f.mesh_s):>7}  registry {fmt_s(f.registry_s):>7}  "
                  f"unhealthy pairs {pc_fmt(per_cause.get(k))}{f.note}")
        print(f"  receiver reconnecting (churn, GOODBYE, its node's restart): unhealthy pairs {pc_fmt(per_cause.get(-1))}")
        rec = [f.mesh_s for f in faults if f.mesh_s is not None]
        reg = [f.registry_s for f in faults if f.registry_s is not None]
        unrecovered = [f for f in faults if f.kind != "crash" and (f.mesh_s is None or f.registry_s is None)]
        over = [f for f in faults if f.mesh_s is not None and f.mesh_s > a.recovery_bound]
        print(f"recovery: max mesh {fmt_s(max(rec) if rec else None)}, max registry "
              f"{fmt_s(max(reg) if reg else None)} (bound {a.recovery_bound:g}s; over bound: {len(over)}, "
              f"not recovered within {a.recovery_limit:g}s: {len(unrecovered)})")
        print()
        print("RSS per node process (kB): first sample / steady (median of the 2nd quarter) / max / last")
        rss_growth = []
        for (i, gen), samples in sorted(self.rss.items()):
            if len(samples) < 4:
                continue
            vals = [v for _, v in samples]
            span = samples[-1][0] - samples[0][0]
            q = vals[len(vals) // 4: max(len(vals) // 2, len(vals) // 4 + 1)]
            steady = int(statistics.median(q))
            growth = vals[-1] - steady
            flag = ""
            if span >= 30 and growth > max(8 * 1024, steady * 0.2):
                flag = "  <-- grew"
                rss_growth.append((i, gen))
            print(f"  {self.nodes[i].name} gen {gen} ({span:5.1f}s): {vals[0]:>7} / {steady:>7} / {max(vals):>7} / "
                  f"{vals[-1]:>7}{flag}")
        print()
        if self.unexpected_link_downs:
            print(f"'peer link down' outside node-fault windows: {len(self.unexpected_link_downs)}")
            for line in self.unexpected_link_downs[:10]:
                print(f"  {line}")
        if self.crashes:
            print(f"NODE CRASHES: {len(self.crashes)}")
            for i, t, code, tail in self.crashes:
                print(f"  node {self.nodes[i].name} at {self.rel(t):.2f}s exit {code}; log tail:\n{indent(tail[-2000:])}")
        if L.unexpected:
            print(f"deliveries to clients not targeted: {L.unexpected[:10]}")
        if L.other_errors:
            print(f"other op 3 errors: {L.other_errors[:5]}")
        if bad:
            print(f"HEALTHY PAIRS LOST OR DUPLICATED: {len(bad)} (first 10 with context)")
            for what, m, cid, n in bad[:10]:
                rx = rx_by_cid[cid]
                near = [f for f in faults if f.start - 5 <= m.t <= (f.end or f.healed or mono()) + 5]
                print(f"  {m.kind} {m.nonce} {self.nodes[m.src].name} -> rx{cid}@{self.nodes[rx.node_idx].name} "
                      f"at {self.rel(m.t):.2f}s: {what}; faults nearby: "
                      + ", ".join(f"{f.kind}({self.nodes[f.node].name if f.node is not None else 'redis'}) "
                                  f"{self.rel(f.start):.2f}-{self.rel(f.end or f.healed or mono()):.2f}s"
                                  for f in near))
            self.print_log_context(bad[:3])
        failed = bool(bad or self.crashes or L.unexpected)
        verdict = "FAIL" if failed else "PASS"
        print(f"verdict: {verdict} (healthy lost {stats['healthy']['lost']}, healthy duplicated "
              f"{stats['healthy']['duplicated']}, crashes {len(self.crashes)}, misrouted {len(L.unexpected)}; "
              f"RSS growth flags {len(rss_growth)}, recovery over bound {len(over)}, "
              f"unrecovered {len(unrecovered)})")
        print("=" * 78)
        return 1 if failed else 0

    def print_log_context(self, bad):
        for _, m, cid, _ in bad:
            rx = self.rx_node(cid)
            lo, hi = self.wall(m.t) - 2, self.wall(m.t) + 3
            for idx in sorted({m.src, rx}):
                n = self.nodes[idx]
                lines = []
                for p in n.log_paths:
                    for line in n.log(p).splitlines():
                        ts = parse_ts(line)
                        if ts is not None and lo <= ts <= hi:
                            lines.append(line)
                print(f"  --- node {n.name} log around {m.nonce} ({len(lines)} lines, last 15):")
                print(indent("\n".join(lines[-15:])))

    def rx_node(self, cid: int) -> int:
        return next(r.node_idx for r in self.receivers if r.cid == cid)


_TS_RE = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)([+-]\d{4})")


def parse_ts(line: str) -> float | None:
    m = _TS_RE.match(line)
    if not m:
        return None
    try:
        return datetime.strptime(m.group(1) + m.group(2), "%Y-%m-%dT%H:%M:%S%z").timestamp()
    except ValueError:
        return None


def pc_fmt(c: Counter | None) -> str:
    c = c or Counter()
    return f"{c['pairs']:>4} (lost {c['lost']:>3} of which no_route {c['no_route']:>3}, dup {c['dup']})"


def fmt_s(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}s"


def indent(text: str, pre: str = "      ") -> str:
    return "\n".join(pre + line for line in text.splitlines())


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--duration", type=float, default=120.0, help="seconds of traffic (default 120)")
    p.add_argument("--nodes", type=int, default=3, help="3-5 (default 3)")
    p.add_argument("--receivers", type=int, default=3, help="receiver clients per node (default 3)")
    p.add_argument("--rate", type=float, default=20.0, help="messages/s per sender, one sender per node (default 20)")
    p.add_argument("--broadcast-ratio", type=float, default=0.2)
    p.add_argument("--faults", default=",".join(FAULT_KINDS), help=f"comma list out of {','.join(FAULT_KINDS)} (default: all of these), "
                   f"and the opt-in {','.join(OVERLAP_KINDS)} ('overlap' = all three)")
    p.add_argument("--gap-min", type=float, default=1.0, help="quiet seconds after a recovery, min (default 1)")
    p.add_argument("--gap-max", type=float, default=3.0)
    p.add_argument("--hold-max", type=float, default=4.0, help="longest fault hold, s (default 4)")
    p.add_argument("--warmup", type=float, default=3.0, help="seconds of traffic before the first fault")
    p.add_argument("--margin", type=float, default=0.5, help="healthy window starts this long before a send")
    p.add_argument("--settle", type=float, default=2.5, help="healthy window lasts this long after a send")
    p.add_argument("--recovery-bound", type=float, default=5.0, help="stated bound for full mesh after a heal")
    p.add_argument("--recovery-limit", type=float, default=20.0, help="give up waiting for recovery after this")
    p.add_argument("--churn", type=float, default=2.0,
                   help="every this many seconds one receiver reconnects (0: never; default 2)")
    p.add_argument("--apps", choices=["per-group", "shared"], default="per-group",
                   help="receivers' application ids: one per broadcast group (default) or one for all")
    p.add_argument("--strict-redis", action="store_true",
                   help="count receivers that connected during a Redis outage as healthy")
    p.add_argument("--keep-logs", action="store_true")
    p.add_argument("--check-the-checker", action="store_true",
                   help="count every pair as healthy: the run must then FAIL with evidence (tests this script)")
    args = p.parse_args()
    args.faults = [k.strip() for k in args.faults.split(",") if k.strip()]
    if "overlap" in args.faults:
        args.faults = [k for k in args.faults if k != "overlap"] + OVERLAP_KINDS
    if not 2 <= args.nodes <= 9 or any(k not in FAULT_KINDS + OVERLAP_KINDS for k in args.faults):
        p.error("bad --nodes or --faults")
    if os.geteuid() != 0:
        print("chaos.py needs root (iptables rules, nodes under their own uids)", file=sys.stderr)
        return 2
    for tool in ("iptables", "redis-server"):
        if shutil.which(tool) is None:
            print(f"{tool} not found on PATH", file=sys.stderr)
            return 2
    if not conftest.SINGYEONG_BIN.exists():
        print(f"binary not found: {conftest.SINGYEONG_BIN}", file=sys.stderr)
        return 2
    run = Chaos(args)
    try:
        return run.go()
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
