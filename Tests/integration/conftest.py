"""Fixtures: start the real `singyeong` binary on a free loopback port and
always kill it at teardown (its stderr is printed, which pytest shows for
failing tests).

The binary is $SINGYEONG_BIN, else <repo>/.build/debug/singyeong, where
<repo> is two levels above this directory (Tests/integration/ -> ../../)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from sy_helpers import HOST, can_connect, free_port  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[2]
SINGYEONG_BIN = Path(os.environ.get("SINGYEONG_BIN", str(REPO_ROOT / ".build" / "debug" / "singyeong")))

SETTING_NAMES = [
    "PORT", "BIND", "TLS_CERT", "TLS_KEY", "HEARTBEAT_INTERVAL", "IDLE_TIMEOUT", "HANDSHAKE_TIMEOUT",
    "MAX_FRAME_SIZE", "MAX_FRAME_VALUES", "MAX_PENDING_BYTES", "SEND_BUFFER_SIZE", "MAX_BODY_SIZE", "SHUTDOWN_TIMEOUT", "LOG_LEVEL",
    "IDENTIFY_TIMEOUT", "IDENTIFY_MAX_SIZE", "METADATA_MAX_KEYS", "METADATA_MAX_VALUE_SIZE", "METADATA_MAX_SIZE",
    "PROXY_DENY", "PROXY_MAX_BUFFERED_BYTES", "PROXY_MAX_PENDING_LOOKUPS",
]


def clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The test runner's environment without any Singyeong setting, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if k not in SETTING_NAMES}
    env.update(extra or {})
    return env


def require_binary():
    if not SINGYEONG_BIN.exists():
        pytest.fail(f"server binary not found: {SINGYEONG_BIN} (set SINGYEONG_BIN or build it first)")


class ServerProcess:
    def __init__(self, args: list[str], env: dict[str, str], port: int | None):
        require_binary()
        self.args = [str(SINGYEONG_BIN), *args]
        self.port = port
        self._stderr = tempfile.TemporaryFile()
        self._stdout = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(self.args, stdin=subprocess.DEVNULL, stdout=self._stdout,
                                     stderr=self._stderr, env=env)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stderr(self) -> str:
        self._stderr.flush()
        self._stderr.seek(0)
        return self._stderr.read().decode("utf-8", "replace")

    def stdout(self) -> str:
        self._stdout.seek(0)
        return self._stdout.read().decode("utf-8", "replace")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def wait_ready(self, port: int | None = None, timeout: float = 10.0):
        port = port or self.port
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"server exited with {self.proc.returncode} before listening; stderr:\n{self.stderr()}")
            if can_connect(port, 0.2):
                return self
            time.sleep(0.05)
        raise AssertionError(f"server not listening on {HOST}:{port} after {timeout}s; stderr:\n{self.stderr()}")

    def signal(self, sig: int):
        self.proc.send_signal(sig)

    def wait_exit(self, timeout: float) -> int | None:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass


@pytest.fixture
def spawn():
    """spawn(*flags, env={}, auto_port=True, wait=True) -> ServerProcess.

    With auto_port, `--port <free> --bind 127.0.0.1` are added and the
    fixture waits until the port accepts TCP connections."""
    started: list[ServerProcess] = []

    def _spawn(*flags: str, env: dict[str, str] | None = None, auto_port: bool = True,
               wait: bool = True) -> ServerProcess:
        args = list(flags)
        port = None
        if auto_port:
            port = free_port()
            args = ["--port", str(port), "--bind", HOST, *args]
        server = ServerProcess(args, clean_env(env), port)
        started.append(server)
        if wait and port is not None:
            server.wait_ready()
        return server

    yield _spawn
    for server in started:
        server.kill()
        print(f"--- singyeong {' '.join(server.args[1:])} (exit {server.proc.returncode}) stderr:")
        print(server.stderr()[-8000:])


@pytest.fixture
def server(spawn) -> ServerProcess:
    """A server with default settings."""
    return spawn()


@pytest.fixture
def port(server) -> int:
    return server.port


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 10.0) -> subprocess.CompletedProcess:
    """Runs the binary to completion (for invalid settings, --help)."""
    require_binary()
    return subprocess.run([str(SINGYEONG_BIN), *args], env=clean_env(env), capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


__all__ = ["run_cli", "clean_env", "SINGYEONG_BIN", "REPO_ROOT", "signal"]


@pytest.fixture
def cli():
    """cli(*args, env={}) -> CompletedProcess of a run to completion."""
    return run_cli
