"""The process: signals (graceful drain, second signal), settings from
flags/environment/config file, validation and --help."""

from __future__ import annotations

import errno
import json
import re
import signal
import socket
import subprocess
import time

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from sy_helpers import HOST, OP_PING, can_connect, free_port, open_ws, ws_frame

DEFAULTS = {
    "PORT": "4000", "BIND": "::", "TLS_CERT": None, "TLS_KEY": None, "HEARTBEAT_INTERVAL": "45000",
    "IDLE_TIMEOUT": "60000", "HANDSHAKE_TIMEOUT": "10000", "MAX_FRAME_SIZE": "16777216",
    "MAX_PENDING_BYTES": "33554432", "MAX_BODY_SIZE": "1048576", "SHUTDOWN_TIMEOUT": "5000", "LOG_LEVEL": "info",
}


def ws_connect(port: int):
    return connect(f"ws://127.0.0.1:{port}/gateway/websocket", open_timeout=5, close_timeout=3, ping_interval=None)


def assert_refused(port: int):
    s = socket.socket()
    s.settimeout(2)
    try:
        err = s.connect_ex((HOST, port))
    finally:
        s.close()
    assert err == errno.ECONNREFUSED, f"new connection after the shutdown signal: connect -> {errno.errorcode.get(err, err)}"


def stuck_client(port: int, budget: float = 2.0, limit: int = 24 << 20):
    """A raw WebSocket that never reads: it floods pings (each answered with a
    pong the server must queue) until the server's output to it cannot drain,
    so a close frame sent to it cannot be flushed."""
    conn, _, _ = open_ws(port, rcvbuf=4096)
    conn.sock.setblocking(False)
    frame = ws_frame(OP_PING, b"p" * 125, mask_key=b"\x01\x02\x03\x04")
    burst = frame * 512
    sent = 0
    deadline = time.monotonic() + budget
    pending = b""
    while time.monotonic() < deadline and sent < limit:
        data = pending or burst
        try:
            n = conn.sock.send(data)
        except BlockingIOError:
            time.sleep(0.01)
            continue
        sent += n
        pending = data[n:]
    return conn, sent


# ---------------------------------------------------------------- signals

@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_closes_websockets_1001_and_exits_0(spawn, sig):
    s = spawn("--shutdown-timeout", "3000")
    with ws_connect(s.port) as ws:
        assert json.loads(ws.recv(timeout=3))["op"] == 0
        sent_at = time.monotonic()
        s.signal(sig)
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=5)
        assert ws.protocol.close_rcvd is not None, "connection dropped without a close frame"
        assert ws.protocol.close_rcvd.code == 1001
        assert_refused(s.port)
    rc = s.wait_exit(max(0.1, 5.0 - (time.monotonic() - sent_at)))
    assert rc == 0, f"exit status {rc} (None = still running {5.0}s after the signal)"


@pytest.mark.parametrize("encoding", ["json", "msgpack"])
def test_sigterm_sends_goodbye_to_identified_clients(spawn, encoding):
    """Identified clients get GOODBYE (op 7, so shinkei reconnects) and then
    close 1001 (so singyeong.py, which reconnects on any code but 1000, does too)."""
    import msgpack
    s = spawn("--shutdown-timeout", "3000")
    url = f"ws://127.0.0.1:{s.port}/gateway/websocket?encoding={encoding}"
    dec = (lambda raw: json.loads(raw)) if encoding == "json" else (lambda raw: msgpack.unpackb(raw, raw=False))
    enc = (lambda obj: json.dumps(obj)) if encoding == "json" else (lambda obj: msgpack.packb(obj))
    with connect(url, open_timeout=5, close_timeout=3, ping_interval=None) as ws:
        assert dec(ws.recv(timeout=3))["op"] == 0
        ws.send(enc({"op": 1, "d": {"client_id": "c1", "application_id": "shutdown-app"}}))
        assert dec(ws.recv(timeout=3))["op"] == 2
        s.signal(signal.SIGTERM)
        bye = dec(ws.recv(timeout=3))
        assert bye["op"] == 7 and bye["d"] == {"reason": "server shutting down"} and bye["t"] is None, bye
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=3)
        assert ws.protocol.close_rcvd is not None and ws.protocol.close_rcvd.code == 1001
    assert s.wait_exit(3.0) == 0


def test_sigterm_without_connections_exits_fast(spawn):
    s = spawn()
    s.signal(signal.SIGTERM)
    rc = s.wait_exit(1.0)
    assert rc == 0, f"exit status {rc} (None = still running after 1 s)"
    assert s.stdout() == "", "logs must go to stderr, not stdout"
    assert "listening" in s.stderr() or s.stderr().strip(), "nothing logged on stderr"


def test_drain_stops_at_shutdown_timeout(spawn):
    s = spawn("--shutdown-timeout", "1000", "--max-pending-bytes", str(1 << 30))
    conn, sent = stuck_client(s.port)
    with conn:
        start = time.monotonic()
        s.signal(signal.SIGTERM)
        rc = s.wait_exit(3.0)
        elapsed = time.monotonic() - start
    assert rc == 0, f"exit status {rc} (None = still running 3 s after SIGTERM with SHUTDOWN_TIMEOUT=1000)"
    assert elapsed <= 3.0


def test_second_sigterm_exits_at_once(spawn):
    s = spawn("--shutdown-timeout", "10000", "--max-pending-bytes", str(1 << 30))
    conn, sent = stuck_client(s.port)
    with conn:
        s.signal(signal.SIGTERM)
        time.sleep(0.5)
        assert s.alive(), (f"server exited ({s.proc.returncode}) within 0.5 s of SIGTERM although a client "
                           f"had unflushed output ({sent} bytes of pings sent, none read) and SHUTDOWN_TIMEOUT=10000")
        assert_refused(s.port)
        start = time.monotonic()
        s.signal(signal.SIGTERM)
        rc = s.wait_exit(1.5)
        elapsed = time.monotonic() - start
    assert rc is not None, "second SIGTERM while draining did not make the process exit"
    assert elapsed <= 1.5


# ---------------------------------------------------------------- settings

def test_precedence_flag_over_env_over_file(spawn, tmp_path):
    a, b, c = free_port(), free_port(), free_port()
    while len({a, b, c}) < 3:
        b, c = free_port(), free_port()
    conf = tmp_path / "singyeong.conf"
    conf.write_text(f"# test config\nPORT={a}\nBIND=127.0.0.1\n")

    s = spawn("--config", str(conf), "--port", str(c), env={"PORT": str(b)}, auto_port=False)
    s.wait_ready(c)
    assert not can_connect(a) and not can_connect(b), "flag --port did not win over env and file"
    s.kill()

    s = spawn("--config", str(conf), env={"PORT": str(b)}, auto_port=False)
    s.wait_ready(b)
    assert not can_connect(a), "env PORT did not win over the config file"
    s.kill()

    s = spawn("--config", str(conf), auto_port=False)
    s.wait_ready(a)
    assert not can_connect(b) and not can_connect(c)


def test_precedence_visible_in_hello(spawn, tmp_path):
    conf = tmp_path / "hb.conf"
    conf.write_text('HEARTBEAT_INTERVAL="31000"\n')

    def hello_interval(s):
        with ws_connect(s.port) as ws:
            return json.loads(ws.recv(timeout=3))["d"]["heartbeat_interval"]

    assert hello_interval(spawn("--config", str(conf))) == 31000
    assert hello_interval(spawn("--config", str(conf), env={"HEARTBEAT_INTERVAL": "32000"})) == 32000
    assert hello_interval(spawn("--config", str(conf), "--heartbeat-interval", "33000",
                                env={"HEARTBEAT_INTERVAL": "32000"})) == 33000


def test_env_only_settings(spawn):
    port = free_port()
    s = spawn(env={"PORT": str(port), "BIND": HOST, "HEARTBEAT_INTERVAL": "20000"}, auto_port=False)
    s.wait_ready(port)
    with ws_connect(port) as ws:
        assert json.loads(ws.recv(timeout=3))["d"] == {"heartbeat_interval": 20000}


def run_invalid(cli, *args, env=None):
    start = time.monotonic()
    try:
        r = cli(*args, env=env, timeout=10)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{args} {env}: process did not exit within 10 s (an invalid setting was accepted)")
    assert r.returncode != 0, f"{args} {env}: exit status 0 for an invalid setting"
    assert time.monotonic() - start < 5
    return r


@pytest.mark.parametrize("args,env,name", [
    (["--port", "70000"], None, "PORT"),
    (["--port", "-1"], None, "PORT"),
    ([], {"PORT": "abc"}, "PORT"),
    (["--idle-timeout", "5"], None, "IDLE_TIMEOUT"),
    (["--heartbeat-interval", "ten"], None, "HEARTBEAT_INTERVAL"),
    (["--max-frame-size", "0"], None, "MAX_FRAME_SIZE"),
    ([], {"LOG_LEVEL": "loud"}, "LOG_LEVEL"),
    ([], {"SHUTDOWN_TIMEOUT": "1e3"}, "SHUTDOWN_TIMEOUT"),
    (["--queue-store", "disk"], None, "QUEUE_STORE"),
    (["--clustering", "true", "--cookie", "c" * 32, "--queue-store", "memory"], None, "QUEUE_STORE=memory"),
], ids=["port-70000", "port-negative", "env-port-abc", "idle-5", "heartbeat-ten", "frame-0", "loglevel", "shutdown-1e3",
        "queue-store-disk", "queue-store-memory-clustering"])
def test_invalid_setting_exits_nonzero_naming_it(cli, args, env, name):
    if "--port" not in args and not (env and "PORT" in env):
        args = ["--port", str(free_port()), *args]
    r = run_invalid(cli, "--bind", HOST, *args, env=env)
    assert name in r.stderr, f"stderr does not name {name}: {r.stderr!r}"


def test_config_file_unknown_key(cli, tmp_path):
    conf = tmp_path / "bad.conf"
    conf.write_text("PORT=4000\nNO_SUCH_SETTING=1\n")
    r = run_invalid(cli, "--config", str(conf), "--port", str(free_port()), "--bind", HOST)
    assert "NO_SUCH_SETTING" in r.stderr, r.stderr


def test_config_file_invalid_value(cli, tmp_path):
    conf = tmp_path / "bad.conf"
    conf.write_text("PORT=abc\n")
    r = run_invalid(cli, "--config", str(conf), "--bind", HOST)
    assert "PORT" in r.stderr, r.stderr


def test_config_file_missing(cli, tmp_path):
    r = run_invalid(cli, "--config", str(tmp_path / "nope.conf"), "--port", str(free_port()), "--bind", HOST)
    assert "nope.conf" in r.stderr, r.stderr


def test_help_lists_every_setting(cli):
    r = cli("--help")
    assert r.returncode == 0
    text = r.stdout + r.stderr
    flat = re.sub(r"\s+", " ", text)
    for name, default in DEFAULTS.items():
        assert re.search(rf"\b{name}\b", text), f"--help does not mention {name}"
        assert f"--{name.lower().replace('_', '-')}" in text, f"--help does not show the flag for {name}"
        if default is not None:
            assert re.search(rf"(?<![\w:]){re.escape(default)}(?![\w:])", flat), f"--help does not show {name}'s default {default}"


def test_readme_configuration_table_matches_help(cli):
    """The README's one settings table lists exactly the settings --help prints."""
    from pathlib import Path
    text = cli("--help").stdout
    flags = set(re.findall(r"--([a-z][a-z0-9-]+)", text)) - {"config", "help", "version"}
    helped = {f.upper().replace("-", "_") for f in flags}
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"^\| `([A-Z_]+)` \|", section, re.M))
    assert len(helped) >= 27 and documented == helped, (sorted(documented - helped), sorted(helped - documented))


# ---------------------------------------------------------------- slow consumers

def test_slow_consumer_is_closed_and_others_keep_working(spawn):
    """A peer that never reads while its output grows past MAX_PENDING_BYTES
    is disconnected with a logged reason; other clients are unaffected."""
    s = spawn("--max-pending-bytes", "65536", "--max-frame-size", "1000")
    other = ws_connect(s.port)
    other.recv(timeout=5)  # HELLO
    conn, _, _ = open_ws(s.port, rcvbuf=4096)
    frame = ws_frame(OP_PING, b"p" * 125, mask_key=b"\x01\x02\x03\x04")
    sent, closed = 0, False
    conn.sock.settimeout(0.2)
    deadline = time.monotonic() + 5
    with conn:
        # Flood pings and never read the pongs; the server's queue for us
        # grows until it passes the bound and the server drops us.
        while time.monotonic() < deadline and not closed:
            try:
                sent += conn.sock.send(frame * 64)
            except socket.timeout:
                continue
            except (ConnectionResetError, BrokenPipeError):
                closed = True
        if not closed:
            conn.sock.settimeout(5)
            try:
                while conn.sock.recv(1 << 16):
                    pass
                closed = True
            except (ConnectionResetError, BrokenPipeError):
                closed = True
            except socket.timeout:
                pass
    assert closed, f"slow consumer was not disconnected after sending {sent} bytes of pings"
    deadline = time.monotonic() + 3
    while "slow consumer" not in s.stderr() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "slow consumer" in s.stderr(), "no log line naming the slow consumer"
    other.ping(b"still here").wait(timeout=3)
    other.close()


def test_slow_consumer_closed_by_its_own_replies_mid_frame(spawn):
    """The close decided while the server is still parsing that client's
    frames (its own HEARTBEAT_ACKs push it over MAX_PENDING_BYTES), with
    frames split across reads so they sit in the connection's input buffer:
    the server must survive and keep serving others."""
    s = spawn("--max-pending-bytes", "65536", "--max-frame-size", "1000")
    conn, _, _ = open_ws(s.port, rcvbuf=4096)
    identify = json.dumps({"op": 1, "d": {"client_id": "slow", "application_id": "slow-app"}}).encode()
    conn.sock.sendall(ws_frame(1, identify, mask_key=b"\x01\x02\x03\x04"))
    beat = ws_frame(1, json.dumps({"op": 5, "d": {"client_id": "slow"}}).encode(), mask_key=b"\x05\x06\x07\x08")
    stream = beat * 80000  # ~6 MB of acks: more than the kernel buffers hold
    conn.sock.settimeout(0.2)
    sent = 0
    deadline = time.monotonic() + 8
    try:
        while sent < len(stream) and time.monotonic() < deadline:
            try:
                sent += conn.sock.send(stream[sent:sent + 777])  # odd chunks: frames straddle reads
            except socket.timeout:
                continue
    except (ConnectionResetError, BrokenPipeError):
        pass
    finally:
        conn.sock.close()
    assert s.alive(), f"server died:\n{s.stderr()}"
    wait_deadline = time.monotonic() + 3
    while "slow consumer" not in s.stderr() and time.monotonic() < wait_deadline:
        time.sleep(0.05)
    assert "slow consumer" in s.stderr(), "the flooding client was never closed as a slow consumer"
    with ws_connect(s.port) as other:
        other.recv(timeout=3)
        other.ping(b"alive").wait(timeout=3)
