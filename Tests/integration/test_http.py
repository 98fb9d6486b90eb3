"""HTTP/1.1 on the gateway port: REST routes, keep-alive, pipelining and
rejection of malformed or oversized requests."""

from __future__ import annotations

import time

import pytest

from sy_helpers import RawConn, assert_still_serving, http_get

NOT_FOUND = {"code": 404, "error": "not found"}


def test_api_version(port):
    r = http_get(port, "/api/version")
    assert r.status == 200
    assert r.header("content-type") == "application/json; charset=utf-8"
    body = r.json()
    assert set(body) == {"api", "singyeong"}
    assert body["api"] == "v1"
    assert isinstance(body["singyeong"], str) and body["singyeong"]


def test_root_redirects_to_gateway(port):
    r = http_get(port, "/")
    assert r.status == 302
    assert r.header("location") == "/gateway/websocket"


@pytest.mark.parametrize("method,path", [("GET", "/nope"), ("POST", "/api/v2/x"), ("PROPFIND", "/x")])
def test_unknown_route_is_json_404(port, method, path):
    with RawConn.open(port) as c:
        body = b"{}" if method == "POST" else b""
        c.send(f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(body)}\r\n"
               f"Connection: close\r\n\r\n".encode() + body)
        r = c.read_response()
    assert r.status == 404
    assert r.json() == NOT_FOUND


def test_head_unknown_route_has_no_body(port):
    # HEAD then GET pipelined on one keep-alive connection: if the HEAD
    # response carried a body, the second status line would not come next.
    with RawConn.open(port) as c:
        c.send(b"HEAD /nope HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
               b"GET /api/version HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        head = c.read_response(head_request=True)
        assert head.status == 404
        assert c.buf == b"" or c.buf.startswith(b"HTTP/1.1 "), f"HEAD response followed by body bytes {c.buf[:60]!r}"
        second = c.read_response()
        assert second.status == 200, f"bytes after HEAD response were not the next response: {second.raw_head!r}"
        assert second.json()["api"] == "v1"


def test_keep_alive_two_requests_one_socket(port):
    with RawConn.open(port) as c:
        c.send(b"GET /api/version HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        r1 = c.read_response()
        c.send(b"GET /nope HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        r2 = c.read_response()
    assert r1.status == 200 and r1.json()["api"] == "v1"
    assert r2.status == 404 and r2.json() == NOT_FOUND


def test_pipelined_requests_answered_in_order(port):
    with RawConn.open(port) as c:
        c.send(b"GET /nope HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
               b"GET /api/version HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
               b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        statuses = [c.read_response().status for _ in range(3)]
    assert statuses == [404, 200, 302]


def test_http10_without_keep_alive_closes(port):
    with RawConn.open(port) as c:
        c.send(b"GET /api/version HTTP/1.0\r\n\r\n")
        r = c.read_response()
        assert r.status == 200
        assert r.json()["api"] == "v1"
        assert c.wait_closed(2.0), "HTTP/1.0 request without keep-alive: connection left open"


def test_connection_close_closes(port):
    with RawConn.open(port) as c:
        c.send(b"GET /api/version HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        r = c.read_response()
        assert r.status == 200
        assert c.wait_closed(2.0), "Connection: close: connection left open"


@pytest.mark.parametrize("request_bytes", [
    b"\x01\x02\x03 garbage\r\n\r\n",
    b"GET\r\n\r\n",
    b"G E T / HTTP/1.1 extra\r\nHost: x\r\n\r\n",
], ids=["control-bytes", "method-only", "too-many-parts"])
def test_garbage_request_line_400_then_close(port, request_bytes):
    with RawConn.open(port) as c:
        c.send(request_bytes)
        r = c.read_response()
        assert r.status == 400
        body = r.json()
        assert set(body) == {"errors"}
        assert set(body["errors"]) == {"detail"}
        assert isinstance(body["errors"]["detail"], str) and body["errors"]["detail"]
        assert c.wait_closed(2.0), "connection not closed after 400"
    assert_still_serving(port)


def send_and_status(port: int, data: bytes) -> int:
    with RawConn.open(port) as c:
        try:
            c.send(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server may answer and close before reading everything
        return c.read_response().status


def test_http11_without_host_400(port):
    assert send_and_status(port, b"GET /api/version HTTP/1.1\r\n\r\n") == 400
    assert_still_serving(port)


def test_unsupported_http_version_505(port):
    assert send_and_status(port, b"GET /api/version HTTP/2.0\r\nHost: 127.0.0.1\r\n\r\n") == 505
    assert_still_serving(port)


def test_header_section_over_16k_431(port):
    big = b"X-Big: " + b"a" * (17 * 1024) + b"\r\n"
    assert send_and_status(port, b"GET /api/version HTTP/1.1\r\nHost: 127.0.0.1\r\n" + big + b"\r\n") == 431
    assert_still_serving(port)


def test_more_than_100_headers_431(port):
    headers = b"".join(b"X-H%d: v\r\n" % i for i in range(101))
    assert send_and_status(port, b"GET /api/version HTTP/1.1\r\nHost: 127.0.0.1\r\n" + headers + b"\r\n") == 431
    assert_still_serving(port)


def test_100_headers_are_fine(port):
    # Host + 99 more = 100 header lines: within the limit.
    headers = b"".join(b"X-H%d: v\r\n" % i for i in range(99))
    assert send_and_status(port, b"GET /api/version HTTP/1.1\r\nHost: 127.0.0.1\r\n" + headers + b"\r\n") == 200


def test_content_length_over_max_body_413(port):
    assert send_and_status(
        port, b"POST /api/version HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1048577\r\n\r\n") == 413
    assert_still_serving(port)


def test_max_body_size_setting(spawn):
    s = spawn("--max-body-size", "10")
    assert send_and_status(s.port, b"POST /x HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 11\r\n\r\n"
                           + b"a" * 11) == 413
    assert send_and_status(s.port, b"POST /x HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 10\r\n\r\n"
                           + b"a" * 10) == 404


def test_chunked_transfer_encoding_411(port):
    assert send_and_status(
        port, b"POST /api/version HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n"
              b"5\r\nhello\r\n0\r\n\r\n") == 411
    assert_still_serving(port)


def test_body_is_consumed_before_next_pipelined_request(port):
    # A POST with a body followed by a GET in one send(): the body bytes must
    # not be parsed as the next request.
    with RawConn.open(port) as c:
        c.send(b"POST /nope HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 24\r\n\r\n"
               b"GET /evil HTTP/1.1\r\n\r\n\r\n"
               b"GET /api/version HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        r1 = c.read_response()
        r2 = c.read_response()
    assert r1.status == 404 and r1.json() == NOT_FOUND
    assert r2.status == 200 and r2.json()["api"] == "v1"


def test_slow_request_head_times_out(spawn):
    s = spawn("--handshake-timeout", "500")
    with RawConn.open(s.port) as c:
        c.send(b"GET /api/version HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        start = time.monotonic()
        data, closed = c.recv_to_eof(3.0)
        elapsed = time.monotonic() - start
    assert closed and elapsed <= 2.0, f"partial request head not timed out (closed={closed}, after {elapsed:.2f}s)"
    assert data == b"" or data.startswith(b"HTTP/1.1 408"), f"unexpected reply to a stalled head: {data[:80]!r}"
    assert_still_serving(s.port)


def test_many_connections_in_a_row(port):
    for _ in range(50):
        r = http_get(port, "/api/version")
        assert r.status == 200
