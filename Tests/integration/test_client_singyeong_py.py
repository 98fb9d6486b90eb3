"""End to end with the real client library singyeong.py 1.0.1 (unchanged),
on Python 3.9 with websockets 8.1 (protocol.md §10). The library runs in
<repo>/.venv39, created here if missing, from requirements-py39.txt."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gateway_client import Clients, now_ms, start_server, stop_server

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
VENV39 = Path(os.environ.get("SINGYEONG_PY39_VENV", str(REPO / ".venv39")))
PY39 = VENV39 / "bin" / "python"
SCENARIO = HERE / "singyeong_py_scenario.py"
REQS = HERE / "requirements-py39.txt"


def find_python39() -> str | None:
    for cand in [os.environ.get("PYTHON39"), shutil.which("python3.9"),
                 *sorted(str(p) for p in Path("/root/.pyenv/versions").glob("3.9*/bin/python3.9"))]:
        if cand and Path(cand).exists():
            return cand
    return None


@pytest.fixture(scope="module")
def py39():
    ok = PY39.exists() and subprocess.run(
        [str(PY39), "-c", "import singyeong, websockets; assert singyeong.__version__ == '1.0.1'; "
                          "assert websockets.__version__ == '8.1'"], capture_output=True).returncode == 0
    if not ok:
        base = find_python39()
        if base is None:
            pytest.skip("singyeong.py needs Python 3.9 (websockets 8.1): none found; install it (e.g. pyenv "
                        "install 3.9) or set PYTHON39 to run these compatibility tests")
        subprocess.run([base, "-m", "venv", "--clear", str(VENV39)], check=True, timeout=300)
        subprocess.run([str(PY39), "-m", "pip", "install", "-q", "-r", str(REQS)], check=True, timeout=600)
    return str(PY39)


@pytest.fixture(scope="module")
def server39():
    s = start_server("--metadata-queue-interval", "100", "--auth-failures-per-minute", "0")
    yield s
    stop_server(s)


def run_scenario(py, port, *encodings):
    p = subprocess.run([py, str(SCENARIO), str(port), *encodings], capture_output=True, text=True, timeout=60)
    lines = [json.loads(line) for line in p.stdout.splitlines() if line.startswith("{")]
    assert p.returncode == 0, f"scenario failed ({p.returncode}):\n{p.stdout}\n{p.stderr[-4000:]}"
    return lines, p.stderr


@pytest.mark.parametrize("enc_a,enc_b", [("json", "json"), ("msgpack", "json"), ("json", "msgpack")])
def test_singyeong_py_end_to_end(py39, server39, enc_a, enc_b):
    start = now_ms()
    lines, stderr = run_scenario(py39, server39.port, enc_a, enc_b)
    by = lambda ev: [l for l in lines if l["event"] == ev]  # noqa: E731
    assert by("version") == [{"event": "version", "version": "1.0.1"}]
    assert by("error") == [], stderr
    ready = {l["who"] for l in by("ready")}
    assert ready == {"A", "B"}, lines
    msgs = by("message")
    assert [(m["who"], m["t"], m["nonce"], m["payload"]) for m in msgs] == [
        ("A", "SEND", "n-1", {"hello": "world", "n": [1, 2.5, None]}),
        ("A", "BROADCAST", None, ["bcast", 2]),
        ("B", "SEND", None, "pong"),
    ], lines
    for m in msgs:
        assert isinstance(m["ts"], int) and start - 5000 <= m["ts"] <= now_ms() + 5000
    assert by("inbox_sizes") == [{"event": "inbox_sizes", "A": 0, "B": 0}]
    [lat] = by("latency")
    assert lat["A"] != float("inf") and lat["A"] >= 0, "no HEARTBEAT_ACK was seen by the library"
    assert by("done"), lines
    assert "Attempting a reconnect" not in stderr, stderr


def test_singyeong_py_metadata_seen_by_server(py39, server39):
    """While the library is connected, its metadata (sent on READY with its
    own type mapping) is visible to other clients; after it exits, it is gone."""
    cl = Clients(server39.port)
    try:
        watcher = cl.identified("watcher", "w", receive_client_updates=True)
        assert watcher.recv_frame()["t"] == "CLIENT_CONNECTED"
        proc = subprocess.Popen([py39, str(SCENARIO), str(server39.port)], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        try:
            events = [watcher.recv_frame(10), watcher.recv_frame(10)]
            assert sorted((e["t"], e["d"]["payload"]["app"]) for e in events) == [
                ("CLIENT_CONNECTED", "py-app-a"), ("CLIENT_CONNECTED", "py-app-b")]
            deadline = time.monotonic() + 5
            node = None
            while time.monotonic() < deadline:
                nodes = watcher.query_nodes({"application": "py-app-a",
                                             "ops": [{"path": "/lat", "op": "$eq", "to": {"value": 5}}]})
                if nodes["d"]["nodes"]:
                    node = nodes["d"]["nodes"][0]
                    break
                time.sleep(0.05)
            assert node is not None, "singyeong.py metadata never became visible"
            assert node["metadata"]["ver"] == "1.2.3" and node["metadata_types"]["ver"] == "version"
            assert node["metadata"]["tags"] == ["x", "y"] and node["metadata"]["load"] == 0.25
            assert node["metadata"]["encoding"] == "json" and node["metadata"]["restricted"] is False
            out, err = proc.communicate(timeout=30)
            assert proc.returncode == 0, err
        finally:
            if proc.poll() is None:
                proc.kill()
        gone = sorted((watcher.recv_frame(5)["t"], ) for _ in range(2))
        assert gone == [("CLIENT_DISCONNECTED",), ("CLIENT_DISCONNECTED",)]
        assert watcher.query_nodes({"application": "py-app-a"})["d"]["nodes"] == []
    finally:
        cl.close_all()
