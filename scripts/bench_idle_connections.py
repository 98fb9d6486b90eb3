#!/usr/bin/env python3
"""Idle-connection memory and accept rate of a release build.

Starts the binary, opens N WebSocket connections (each completes the upgrade
and reads HELLO), leaves them idle, and reads the server's RSS from
/proc/PID/status before and after. Prints RSS per idle connection and the
rate at which upgrades completed. Plain TCP and TLS are measured separately.

    python3 scripts/bench_idle_connections.py --binary .build/release/singyeong
"""
import argparse, base64, os, resource, selectors, signal, socket, ssl, subprocess, sys, tempfile, threading, time

REQUEST = (b"GET /gateway/websocket?encoding=json HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
           b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")


def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def cpu_seconds(pid):
    """User + system CPU time the process has used so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start(binary, port, env_extra):
    env = dict(os.environ, PORT=str(port), BIND="127.0.0.1", LOG_LEVEL="warning",
               IDLE_TIMEOUT="3600000", **env_extra)
    proc = subprocess.Popen([binary], env=env, stderr=subprocess.PIPE)
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("server did not start: " + proc.stderr.read().decode())


def complete(buf):
    """True once the 101 head and one complete (small) HELLO frame are in buf."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return False
    if not buf.startswith(b"HTTP/1.1 101"):
        raise RuntimeError("upgrade refused: " + buf[:100].decode(errors="replace"))
    frame = buf[end + 4:]
    return len(frame) >= 2 and len(frame) >= 2 + (frame[1] & 0x7F)


def open_plain(port, n, window=512):
    """Opens n upgraded connections, `window` in flight at a time."""
    sel = selectors.DefaultSelector()
    done, started, pending = [], 0, {}
    t0 = time.perf_counter()
    while len(done) < n:
        while started < n and len(pending) < window:
            s = socket.socket(); s.setblocking(False)
            s.connect_ex(("127.0.0.1", port))
            pending[s] = b""
            sel.register(s, selectors.EVENT_WRITE)
            started += 1
        for key, ev in sel.select(timeout=5):
            s = key.fileobj
            if ev & selectors.EVENT_WRITE:
                s.send(REQUEST)
                sel.modify(s, selectors.EVENT_READ)
                continue
            data = s.recv(4096)
            if not data:
                raise RuntimeError("server closed a connection during the benchmark")
            pending[s] += data
            if complete(pending[s]):
                sel.unregister(s); del pending[s]; done.append(s)
    return done, time.perf_counter() - t0


def open_tls(port, n, cafile, threads=8):
    ctx = ssl.create_default_context(cafile=cafile)
    done, lock, errors = [], threading.Lock(), []

    def worker(count):
        try:
            for _ in range(count):
                raw = socket.create_connection(("127.0.0.1", port))
                s = ctx.wrap_socket(raw, server_hostname="localhost")
                s.sendall(REQUEST)
                buf = b""
                while not complete(buf):
                    chunk = s.recv(4096)
                    if not chunk:
                        raise RuntimeError("closed")
                    buf += chunk
                with lock:
                    done.append(s)
        except Exception as e:  # reported below
            errors.append(e)

    t0 = time.perf_counter()
    ts = [threading.Thread(target=worker, args=(n // threads + (1 if i < n % threads else 0),)) for i in range(threads)]
    for t in ts: t.start()
    for t in ts: t.join()
    if errors:
        raise errors[0]
    return done, time.perf_counter() - t0


def measure(binary, label, n, tls_dir=None):
    port = free_port()
    env = {}
    if tls_dir:
        env = {"TLS_CERT": os.path.join(tls_dir, "cert.pem"), "TLS_KEY": os.path.join(tls_dir, "key.pem")}
    proc = start(binary, port, env)
    try:
        # Warm up: one connection's worth of lazily allocated state.
        warm, _ = (open_tls(port, 1, env["TLS_CERT"], threads=1) if tls_dir else open_plain(port, 1))
        time.sleep(0.5)
        before = rss_kib(proc.pid)
        cpu_before = cpu_seconds(proc.pid)
        conns, elapsed = (open_tls(port, n, env["TLS_CERT"]) if tls_dir else open_plain(port, n))
        time.sleep(2)
        after = rss_kib(proc.pid)
        cpu = cpu_seconds(proc.pid) - cpu_before
        per = (after - before) * 1024 / n
        print(f"{label}: {n} idle connections, RSS {before} KiB -> {after} KiB, "
              f"{per:.0f} bytes per connection; {n / elapsed:.0f} upgrades/s ({elapsed:.2f} s, bound by this "
              f"Python client); server CPU {cpu * 1e6 / n:.0f} us per upgrade = {n / max(cpu, 1e-9):.0f} upgrades "
              f"per server CPU-second", flush=True)
        for s in conns + warm:
            s.close()
        return per, n / elapsed
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=15)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default=".build/release/singyeong")
    ap.add_argument("--plain", type=int, default=15000)
    ap.add_argument("--tls", type=int, default=5000)
    a = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if a.plain:
        measure(a.binary, "plain", a.plain)
    if a.tls:
        with tempfile.TemporaryDirectory() as d:
            subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                            "-keyout", f"{d}/key.pem", "-out", f"{d}/cert.pem", "-days", "1", "-subj", "/CN=localhost",
                            "-addext", "subjectAltName=DNS:localhost"], check=True, capture_output=True)
            measure(a.binary, "tls", a.tls, tls_dir=d)


if __name__ == "__main__":
    main()
