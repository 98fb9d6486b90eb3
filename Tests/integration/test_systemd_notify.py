"""The sd_notify datagrams the node sends to $NOTIFY_SOCKET (what systemd's
Type=notify unit waits for): READY=1 with STATUS=, WATCHDOG=1 at half of
$WATCHDOG_USEC, RELOADING=1 / READY=1 around SIGHUP, STOPPING=1 on SIGTERM;
when clustering, READY=1 after registering in Redis — or after 10 s without
Redis, while /readyz stays 503."""

from __future__ import annotations

import signal
import socket
import tempfile
import time
from pathlib import Path

import pytest

import conftest
from cluster_fixtures import redis_factory  # noqa: F401 (fixture)
from sy_helpers import RawConn, free_port


class NotifySocket:
    def __init__(self):
        self.dir = Path(tempfile.mkdtemp(prefix="sy-notify-"))
        self.path = str(self.dir / "notify.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.got: list[tuple[float, str]] = []

    def wait_for(self, key: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        for _, msg in self.got:
            if key in msg.split("\n"):
                return msg
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                data = self.sock.recv(4096).decode()
            except socket.timeout:
                break
            self.got.append((time.monotonic(), data))
            if key in data.split("\n"):
                return data
        raise AssertionError(f"no {key} within {timeout}s; got {[m for _, m in self.got]}")

    def close(self):
        self.sock.close()


@pytest.fixture
def notify():
    n = NotifySocket()
    yield n
    n.close()


def start(notify: NotifySocket, *flags: str, watchdog_usec: int | None = None):
    port = free_port()
    env = {"NOTIFY_SOCKET": notify.path}
    if watchdog_usec:
        env["WATCHDOG_USEC"] = str(watchdog_usec)
    s = conftest.ServerProcess(["--port", str(port), "--bind", "127.0.0.1", *flags], conftest.clean_env(env), port)
    s.wait_ready()
    return s


def readyz(port) -> int:
    with RawConn.open(port) as c:
        c.send(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        return c.read_response().status


def test_single_node_lifecycle(notify):
    s = start(notify, watchdog_usec=300_000)
    try:
        ready = notify.wait_for("READY=1", 3)
        assert any(line.startswith("STATUS=") and "clients" in line for line in ready.split("\n")), ready
        notify.wait_for("WATCHDOG=1", 1)
        t0 = time.monotonic()
        n = len(notify.got)
        while time.monotonic() - t0 < 0.8:
            try:
                notify.wait_for("__none__", 0.1)
            except AssertionError:
                pass
        pings = [m for t, m in notify.got[n:] if "WATCHDOG=1" in m.split("\n")]
        assert len(pings) >= 3, pings  # every 150 ms
        notify.got.clear()
        s.proc.send_signal(signal.SIGHUP)
        reloading = notify.wait_for("RELOADING=1", 2)
        assert any(line.startswith("MONOTONIC_USEC=") for line in reloading.split("\n")), reloading
        notify.wait_for("READY=1", 2)
        s.proc.send_signal(signal.SIGTERM)
        notify.wait_for("STOPPING=1", 2)
        assert s.proc.wait(5) == 0
    finally:
        s.kill()


def test_clustered_ready_after_registration(notify, redis_factory):
    redis = redis_factory()
    s = start(notify, "--clustering", "true", "--cookie", "notify-test-cookie-0123", "--redis-dsn", f"redis://127.0.0.1:{redis.port}/0",
              "--cluster-port", str(free_port()), "--cluster-advertise", "127.0.0.1:1", "--cluster-tick-ms", "200")
    try:
        notify.wait_for("READY=1", 3)
        assert readyz(s.port) == 200
        assert len(redis.registry()) == 1, "not registered"
    finally:
        s.kill()


def test_clustered_ready_without_redis_after_grace(notify):
    dead = free_port()  # nothing listens there
    s = start(notify, "--clustering", "true", "--cookie", "notify-test-cookie-0123", "--redis-dsn", f"redis://127.0.0.1:{dead}/0",
              "--cluster-port", str(free_port()), "--cluster-advertise", "127.0.0.1:1", "--cluster-tick-ms", "200")
    try:
        t0 = time.monotonic()
        with pytest.raises(AssertionError):
            notify.wait_for("READY=1", 8)
        assert readyz(s.port) == 503
        ready = notify.wait_for("READY=1", 4)
        assert 9 < time.monotonic() - t0 < 12.5
        assert "Redis unreachable" in ready, ready
        assert readyz(s.port) == 503  # still not registered
        assert "reporting ready to systemd anyway" in s.stderr()
    finally:
        s.kill()
