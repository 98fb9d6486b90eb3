"""Cluster fixtures: a real `redis-server` on a free loopback port and N real
`singyeong` nodes forming a cluster through it (cluster.md §2–§3).

* `redis_server` (module scope) / `redis_factory` (function scope) start
  `redis-server --port N --save '' --appendonly no`; a missing redis-server
  FAILS the test (`make deps` installs it).
* `Cluster(redis).start(n)` starts n nodes, each with its own loopback
  address (127.0.0.2, .3, ... — all of 127/8 is local on Linux), HTTP port
  and cluster port, waits until every node has an authenticated link to
  every other node (its "peer link up"/"peer link down" log lines), and
  `close()` stops them (SIGTERM, then SIGKILL).
* Node stderr goes to files in a temporary directory; `dump_logs()` prints
  them (the test module prints them for every failing test).

A small RESP client (`redis_cmd`) reads the registry without redis-cli."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from websockets.sync.client import connect as ws_connect

import conftest
from gateway_client import GatewayClient, uid
from sy_helpers import free_port

REGISTRY_KEY = "singyeong:cluster:registry:singyeong"
NODE_KEY_PREFIX = "singyeong:cluster:node:singyeong:"
TICK_MS = 200
QUERY_TIMEOUT_MS = 1000
COOKIE = "cluster-test-cookie"
NOBODY_UID = 65534

# Clusters created in this process, for printing logs of failing tests.
ALL_CLUSTERS: list["Cluster"] = []


# --------------------------------------------------------------------------
# Redis
# --------------------------------------------------------------------------


class RedisError(Exception):
    pass


def _read_reply(f):
    line = f.readline()
    if not line:
        raise ConnectionError("redis closed the connection")
    kind, rest = line[:1], line[1:-2]
    if kind == b"+":
        return rest.decode()
    if kind == b"-":
        raise RedisError(rest.decode())
    if kind == b":":
        return int(rest)
    if kind == b"$":
        n = int(rest)
        if n < 0:
            return None
        data = f.read(n + 2)
        return data[:-2].decode()
    if kind == b"*":
        n = int(rest)
        if n < 0:
            return None
        return [_read_reply(f) for _ in range(n)]
    raise RedisError(f"unexpected reply line {line!r}")


def redis_cmd(port: int, *args, timeout: float = 2.0):
    """One command on a fresh connection; returns the decoded reply."""
    parts = [str(a).encode() for a in args]
    msg = b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts)
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(msg)
        with s.makefile("rb") as f:
            return _read_reply(f)


class RedisServer:
    """`appendonly`: keep an AOF fsynced on every write, so a restart on the
    same directory and port comes back with every acknowledged write."""

    def __init__(self, directory: Path, appendonly: bool = False):
        self.appendonly = appendonly
        self.binary = shutil.which("redis-server")
        if self.binary is None:
            pytest.fail("redis-server not found on PATH: the cluster tests need a real Redis (`make deps` installs "
                        "the redis-server package)")
        self.dir = directory
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self.log_path = directory / f"redis-{self.port}.log"

    def start(self, timeout: float = 10.0) -> "RedisServer":
        assert self.proc is None or self.proc.poll() is not None, "redis already running"
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             *(["--appendonly", "yes", "--appendfsync", "always"] if self.appendonly else ["--appendonly", "no"]),
             "--dir", str(self.dir)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"redis-server exited with {self.proc.returncode}:\n{self.log_path.read_text()[-3000:]}")
            try:
                if redis_cmd(self.port, "PING", timeout=0.5) == "PONG":
                    return self
            except (OSError, ConnectionError, RedisError):
                pass
            time.sleep(0.05)
        pytest.fail(f"redis-server not answering PING on port {self.port} after {timeout}s")

    def stop(self, sig: int = signal.SIGTERM):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)

    def cmd(self, *args):
        return redis_cmd(self.port, *args)

    def registry(self) -> dict[str, str]:
        flat = self.cmd("HGETALL", REGISTRY_KEY) or []
        return dict(zip(flat[0::2], flat[1::2]))


@pytest.fixture(scope="module")
def redis_server():
    d = Path(tempfile.mkdtemp(prefix="sy-redis-"))
    r = RedisServer(d).start()
    yield r
    r.stop()
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def redis_factory():
    """redis_factory() -> a new started RedisServer, stopped at teardown."""
    started: list[RedisServer] = []
    dirs: list[Path] = []

    def _make() -> RedisServer:
        d = Path(tempfile.mkdtemp(prefix="sy-redis-"))
        dirs.append(d)
        r = RedisServer(d).start()
        started.append(r)
        return r

    yield _make
    for r in started:
        r.stop(signal.SIGKILL)
    for d in dirs:
        shutil.rmtree(d, ignore_errors=True)


# --------------------------------------------------------------------------
# Gateway clients on a given address
# --------------------------------------------------------------------------


class HostClient(GatewayClient):
    """GatewayClient for a node listening on `host` (not only 127.0.0.1)."""

    def __init__(self, host: str, port: int, encoding: str = "json", open_timeout: float = 5.0):
        self.encoding = encoding
        self.url = f"ws://{host}:{port}/gateway/websocket?encoding={encoding}"
        self.ws = ws_connect(self.url, open_timeout=open_timeout, max_size=None, compression=None, close_timeout=2)
        self.last_raw = None
        self.hello = self.recv_frame()
        self.client_id = None


def http_post_json(host: str, port: int, path: str, body: bytes, timeout: float = 5.0) -> tuple[int, bytes]:
    head = (f"POST {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(head + body)
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    head_raw, _, rest = data.partition(b"\r\n\r\n")
    status = int(head_raw.split(b" ", 2)[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in
               (line.partition(b":") for line in head_raw.split(b"\r\n")[1:])}
    if b"content-length" in headers:
        rest = rest[:int(headers[b"content-length"])]
    return status, rest


# --------------------------------------------------------------------------
# Nodes
# --------------------------------------------------------------------------

_LINK_RE = re.compile(r"peer link (up|down)\b")
_NODE_RE = re.compile(r"\bnode=([0-9a-f]{32})\b")
_PEERS_RE = re.compile(r"\bpeers=(\d+)\b")


class Node:
    def __init__(self, cluster: "Cluster", name: str, host: str, *, cookie: str = COOKIE, user: int | None = None,
                 port: int | None = None, cluster_port: int | None = None, extra: tuple[str, ...] = ()):
        self.cluster = cluster
        self.name = name
        self.host = host
        self.cookie = cookie
        self.user = user
        self.fixed_ports = port is not None or cluster_port is not None
        self.port_retries = 0
        self.port = port or free_port(host)
        self.cluster_port = cluster_port or free_port(host)
        self.extra = extra
        self.proc: subprocess.Popen | None = None
        self.log_path: Path | None = None
        self.log_paths: list[Path] = []  # one per start (generation)
        self._cached: dict[Path, str] = {}  # logs kept in memory once the files are removed
        self.node_id: str | None = None
        self.generation = 0
        self.clients: list[GatewayClient] = []

    @property
    def advertise(self) -> str:
        return f"{self.host}:{self.cluster_port}"

    def args(self) -> list[str]:
        return [str(conftest.SINGYEONG_BIN),
                "--clustering", "true", "--cookie", self.cookie,
                "--redis-dsn", f"redis://127.0.0.1:{self.cluster.redis.port}/0",
                "--cluster-port", str(self.cluster_port), "--cluster-advertise", self.advertise,
                "--cluster-tick-ms", str(TICK_MS), "--cluster-query-timeout-ms", str(QUERY_TIMEOUT_MS),
                "--port", str(self.port), "--bind", self.host, "--metadata-queue-interval", "0",
                "--auth-failures-per-minute", "0", "--shutdown-timeout", "500", *self.extra]

    def start(self, timeout: float = 10.0) -> "Node":
        deadline = time.monotonic() + 120
        while not conftest.SINGYEONG_BIN.exists() and time.monotonic() < deadline:
            time.sleep(1.0)  # being rebuilt by someone else
        conftest.require_binary()
        self.generation += 1
        self.node_id = None
        self.log_path = self.cluster.dir / f"{self.name}-{self.generation}.stderr"
        self.log_paths.append(self.log_path)
        err = open(self.log_path, "wb")
        preexec = None
        if self.user is not None:
            uid_ = self.user

            def preexec():  # noqa: E306
                os.setgroups([])
                os.setgid(uid_)
                os.setuid(uid_)
        self.proc = subprocess.Popen(self.args(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                                     env=conftest.clean_env(), cwd="/tmp", preexec_fn=preexec)
        err.close()
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                # A port picked free can be taken before the node binds it
                # (by another test's connection): a first start tries others.
                if (self.generation == 1 and not self.fixed_ports and "Address already in use" in self.log()
                        and self.port_retries < 3):
                    self.port_retries += 1
                    self.port, self.cluster_port = free_port(self.host), free_port(self.host)
                    self.generation = 0
                    self.log_paths.pop()
                    return self.start(timeout)
                raise AssertionError(f"node {self.name} exited with {self.proc.returncode} at start:\n{self.log()}")
            if self.node_id is None:
                m = re.search(r"node=([0-9a-f]{32})\b[^\n]*\bclustering\b", self.log())
                if m:
                    self.node_id = m.group(1)
            if self.node_id and self._listening():
                return self
            time.sleep(0.05)
        raise AssertionError(f"node {self.name} not up (id {self.node_id}) after {timeout}s:\n{self.log()}")

    def _listening(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=0.2):
                return True
        except OSError:
            return False

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log(self, path: Path | None = None) -> str:
        """stderr of the current process (or of the start that wrote `path`)."""
        path = path or self.log_path
        if path is None:
            return ""
        if path in self._cached:
            return self._cached[path]
        if not path.exists():
            return ""
        return path.read_text("utf-8", "replace")

    def log_size(self) -> int:
        return len(self.log())

    def log_since(self, offset: int) -> str:
        return self.log()[offset:]

    def linked(self) -> set[str]:
        """Node ids this node has an up link to, from its log lines."""
        up: set[str] = set()
        for line in self.log().splitlines():
            m = _LINK_RE.search(line)
            n = _NODE_RE.search(line)
            if not m or not n:
                continue
            if m.group(1) == "up":
                up.add(n.group(1))
            else:
                up.discard(n.group(1))
        return up

    def last_peers(self) -> int | None:
        last = None
        for line in self.log().splitlines():
            if _LINK_RE.search(line):
                p = _PEERS_RE.search(line)
                if p:
                    last = int(p.group(1))
        return last

    def link_events(self, since: int = 0) -> list[tuple[str, str]]:
        out = []
        for line in self.log_since(since).splitlines():
            m = _LINK_RE.search(line)
            n = _NODE_RE.search(line)
            if m and n:
                out.append((m.group(1), n.group(1)))
        return out

    # ------------------------------------------------------------ clients
    def connect(self, encoding: str = "json") -> HostClient:
        c = HostClient(self.host, self.port, encoding)
        self.clients.append(c)
        return c

    def identified(self, app: str, client_id: str | None = None, encoding: str = "json", **fields) -> HostClient:
        c = self.connect(encoding)
        c.ready = c.identify(app, client_id or uid(self.name), **fields)
        return c

    def close_clients(self):
        for c in self.clients:
            c.close()
        self.clients.clear()

    # ------------------------------------------------------------ stopping
    def terminate(self, timeout: float = 5.0):
        self.close_clients()
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill9()

    def kill9(self):
        if self.alive():
            self.proc.kill()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass


class Cluster:
    def __init__(self, redis: RedisServer, first_host: int = 2):
        self.redis = redis
        self.dir = Path(tempfile.mkdtemp(prefix="sy-cluster-"))
        self.nodes: list[Node] = []
        self._next_host = first_host
        self.closed = False
        ALL_CLUSTERS.append(self)

    def add(self, name: str | None = None, start: bool = True, **kw) -> Node:
        host = f"127.0.0.{self._next_host}"
        self._next_host += 1
        node = Node(self, name or chr(ord("A") + len(self.nodes)), host, **kw)
        self.nodes.append(node)
        if start:
            node.start()
        return node

    def start(self, n: int, timeout: float = 10.0, **kw) -> list[Node]:
        nodes = [self.add(**kw) for _ in range(n)]
        self.wait_mesh(nodes, timeout)
        return nodes

    def wait_mesh(self, nodes: list[Node], timeout: float = 10.0) -> float:
        """Waits until each node's log shows links up to exactly the other
        nodes (the last link line saying peers=N-1); returns the seconds
        waited."""
        t0 = time.monotonic()
        deadline = t0 + timeout
        while True:
            ok = True
            for n in nodes:
                want = {m.node_id for m in nodes if m is not n}
                if not n.alive():
                    raise AssertionError(f"node {n.name} died:\n{self.dump()}")
                if n.linked() != want or n.last_peers() != len(nodes) - 1:
                    ok = False
                    break
            if ok:
                return time.monotonic() - t0
            if time.monotonic() > deadline:
                state = {n.name: (sorted(n.linked()), n.last_peers()) for n in nodes}
                ids = {n.name: n.node_id for n in nodes}
                raise AssertionError(f"cluster did not form within {timeout}s: ids {ids}, links {state}\n{self.dump()}")
            time.sleep(0.05)

    def dump(self, tail: int = 6000) -> str:
        out = []
        for n in self.nodes:
            for p in n.log_paths:
                out.append(f"----- node {n.name} {n.host} port={n.port} cluster_port={n.cluster_port} "
                           f"({p}; current id {n.node_id}) -----\n{n.log(p)[-tail:]}")
        return "\n".join(out)

    def release_files(self, keep: bool):
        """After close(): keeps the logs in memory; removes the log directory
        unless `keep` (a failed test: the files stay for inspection)."""
        for n in self.nodes:
            for p in n.log_paths:
                n._cached[p] = n.log(p)
        if not keep:
            shutil.rmtree(self.dir, ignore_errors=True)

    def close(self):
        for n in self.nodes:
            n.close_clients()
        for n in self.nodes:
            if n.alive():
                n.proc.send_signal(signal.SIGTERM)
        for n in self.nodes:
            if n.proc is not None:
                try:
                    n.proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    n.kill9()
        self.closed = True


def cluster_logs_for_failure(clusters: list[Cluster]) -> str:
    return "\n".join(c.dump() for c in clusters)


@pytest.fixture
def cluster_factory(redis_factory, request):
    """cluster_factory(n, **node_kw) -> Cluster with its own Redis and n linked
    nodes A, B, C...; stopped at teardown (log files kept when the test failed)."""
    made: list[Cluster] = []
    failed_before = request.session.testsfailed

    def _make(n: int = 3, **kw) -> Cluster:
        c = Cluster(redis_factory())
        made.append(c)
        c.start(n, **kw)
        return c

    yield _make
    failed = request.session.testsfailed > failed_before
    for c in made:
        c.close()
        print(c.dump(3000))
        c.release_files(keep=failed)
        if failed:
            print(f"node logs kept in {c.dir}")
