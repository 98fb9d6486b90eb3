"""A proxied request whose upstream name never resolves (a DNS server that
drops every query) must not stall the node: other requests are answered
meanwhile and the request fails with `:timeout` at PROXY_TIMEOUT, not after
the resolver's own retries. Debian's libcurl resolves on a helper thread;
without CURLOPT_QUICK_EXIT, ending such a transfer joined that thread on the
event loop.

The node runs in its own mount namespace (`unshare -m`, root) with an
/etc/resolv.conf naming a local black-hole resolver; the network is shared,
so the test reaches it on loopback as usual."""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

import conftest
from gateway_client import Clients, uid
from sy_helpers import free_port
from test_proxy import call, proxy


pytestmark = pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None,
                                reason="needs root and unshare(1) for a private /etc/resolv.conf")


class PrivateDNSNode:
    """A node in its own mount namespace whose /etc/resolv.conf names a
    black-hole resolver on port 53 of a random 127/8 address (`sink`
    receives its queries and never answers; runs of other worktrees may hold
    another) and, with `hosts`, whose /etc/hosts is that text."""

    def __init__(self, *flags: str, hosts: str | None = None):
        self.sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        for _ in range(20):
            blackhole = f"127.{random.randint(64, 250)}.{random.randint(0, 255)}.{random.randint(1, 254)}"
            try:
                self.sink.bind((blackhole, 53))
                break
            except OSError:
                continue
        self.dir = Path(tempfile.mkdtemp(prefix="sy-dns-"))
        (self.dir / "resolv.conf").write_text(f"nameserver {blackhole}\noptions timeout:3 attempts:2\n")
        script = f'mount --bind {self.dir}/resolv.conf /etc/resolv.conf'
        if hosts is not None:
            (self.dir / "hosts").write_text(hosts)
            script += f' && mount --bind {self.dir}/hosts /etc/hosts'
        script += ' && exec "$0" "$@"'
        self.port = free_port()
        args = ["--port", str(self.port), "--bind", "127.0.0.1", "--metadata-queue-interval", "0", *flags]
        err = open(self.dir / "stderr", "wb")
        self.proc = subprocess.Popen(["unshare", "-m", "--propagation", "private", "sh", "-c", script,
                                      str(conftest.SINGYEONG_BIN), *args],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err, env=conftest.clean_env())
        err.close()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.stderr()
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)

    def stderr(self) -> str:
        return (self.dir / "stderr").read_text()

    def close(self):
        self.proc.kill()
        self.proc.wait()
        print(self.stderr()[-3000:])
        self.sink.close()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def stalled_dns_node():
    node = PrivateDNSNode("--proxy-timeout", "700")
    yield node.port, node.sink
    node.close()


def test_unresolvable_upstream_does_not_stall_the_loop(stalled_dns_node):
    port, sink = stalled_dns_node
    cl = Clients(port)
    app = uid("dns")
    try:
        cl.identified(app, "c", ip="never-resolves.example:80")
        result = {}

        def run():
            t0 = time.monotonic()
            result["r"] = proxy(port, app, timeout=15)
            result["t"] = time.monotonic() - t0

        t = threading.Thread(target=run)
        t.start()
        sink.settimeout(5)
        sink.recvfrom(512)  # the lookup has started
        # The loop keeps serving while the lookup hangs.
        for _ in range(5):
            t0 = time.monotonic()
            assert call(port, b"", method="GET", path="/healthz").status == 200
            assert time.monotonic() - t0 < 0.3
            time.sleep(0.05)
        t.join(15)
        r = result["r"]
        assert r.status == 400 and r.json() == {"errors": [":timeout"]}, r.body
        assert result["t"] < 2.0, result["t"]  # PROXY_TIMEOUT (0.7 s), not the resolver's 3 s × 2 attempts
        # Ending that transfer did not block the loop either.
        t0 = time.monotonic()
        assert call(port, b"", method="GET", path="/healthz").status == 200
        assert time.monotonic() - t0 < 0.3
    finally:
        cl.close_all()
