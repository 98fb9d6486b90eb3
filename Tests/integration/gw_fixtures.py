"""Fixtures shared by the gateway conformance modules (import with *)."""

from __future__ import annotations

import pytest

from gateway_client import Clients, start_server, stop_server


@pytest.fixture
def start():
    """start(*flags) -> ServerProcess (function scope, killed at teardown)."""
    started = []

    def _start(*flags):
        s = start_server(*flags)
        started.append(s)
        return s

    yield _start
    for s in started:
        stop_server(s)


@pytest.fixture(scope="module")
def mod_server():
    """One default server per module, metadata applied at once."""
    s = start_server("--metadata-queue-interval", "0", "--auth-failures-per-minute", "0")
    yield s
    stop_server(s)


@pytest.fixture
def clients(mod_server):
    c = Clients(mod_server.port)
    yield c
    c.close_all()


def clients_for(port):
    return Clients(port)
