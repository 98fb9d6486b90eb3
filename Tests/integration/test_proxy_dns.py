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

BLACKHOLE = "127.0.0.77"

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None,
                                reason="needs root and unshare(1) for a private /etc/resolv.conf")


@pytest.fixture
def stalled_dns_node():
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind((BLACKHOLE, 53))  # receives queries, never answers
    d = Path(tempfile.mkdtemp(prefix="sy-dns-"))
    (d / "resolv.conf").write_text(f"nameserver {BLACKHOLE}\noptions timeout:3 attempts:2\n")
    port = free_port()
    args = ["--port", str(port), "--bind", "127.0.0.1", "--metadata-queue-interval", "0", "--proxy-timeout", "700"]
    script = f'mount --bind {d}/resolv.conf /etc/resolv.conf && exec "$0" "$@"'
    err = open(d / "stderr", "wb")
    proc = subprocess.Popen(["unshare", "-m", "--propagation", "private", "sh", "-c", script, str(conftest.SINGYEONG_BIN), *args],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err, env=conftest.clean_env())
    err.close()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        assert proc.poll() is None, (d / "stderr").read_text()
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    yield port, sink
    proc.kill()
    proc.wait()
    print((d / "stderr").read_text()[-3000:])
    sink.close()
    shutil.rmtree(d, ignore_errors=True)


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
