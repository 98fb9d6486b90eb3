"""POST /api/v1/query (rest.md §2–§3)."""

from __future__ import annotations

import json

import pytest

from gateway_client import Clients, now_ms, start_server, stop_server, typed, uid
from sy_helpers import RawConn

JSON_CT = "application/json; charset=utf-8"


def post(port, body: bytes | str | None, headers: dict | None = None, method="POST", path="/api/v1/query"):
    if isinstance(body, str):
        body = body.encode()
    body = body or b""
    head = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", "Connection: close", f"Content-Length: {len(body)}"]
    for k, v in (headers if headers is not None else {"Content-Type": "application/json"}).items():
        head.append(f"{k}: {v}")
    with RawConn.open(port) as c:
        c.send(("\r\n".join(head) + "\r\n\r\n").encode() + body)
        return c.read_response()


@pytest.fixture(scope="module")
def srv():
    s = start_server("--metadata-queue-interval", "0", "--auth-failures-per-minute", "0")
    cl = Clients(s.port)
    a = uid("rest")
    cl.identified(a, "client-1", metadata=typed(lat=("integer", 7), m=("map", {"l": [1, 2.0]})))
    cl.identified(a, "client-2", encoding="msgpack", ip="10.9.8.7")
    cl.identified(a, "restricted-1", auth="pw")
    yield s, a
    cl.close_all()
    stop_server(s)


def test_query_descriptors(srv):
    s, a = srv
    r = post(s.port, json.dumps({"application": a, "ops": []}))
    assert r.status == 200 and r.header("content-type") == JSON_CT
    body = r.json()
    assert isinstance(body, list)
    by = {n["client_id"]: n for n in body}
    assert set(by) == {"client-1", "client-2"}
    n = by["client-1"]
    assert set(n) == {"app_id", "client_id", "metadata", "metadata_types", "queues", "socket_ip"}
    assert n["app_id"] == a and n["queues"] == [] and n["socket_ip"] == "127.0.0.1"
    md = n["metadata"]
    assert md["lat"] == 7 and md["m"] == {"l": [1, 2.0]} and type(md["m"]["l"][1]) is float
    assert md["restricted"] is False and md["encoding"] == "json" and md["ip"] == "127.0.0.1"
    assert md["namespace"] is None and md["receive_client_updates"] is False
    assert abs(md["last_heartbeat_time"] - now_ms()) < 60000
    assert n["metadata_types"]["lat"] == "integer" and n["metadata_types"]["m"] == "map"
    assert n["metadata_types"]["restricted"] == "boolean" and n["metadata_types"]["receive_client_updates"] == "boolean"
    assert by["client-2"]["metadata"]["encoding"] == "msgpack" and by["client-2"]["socket_ip"] == "10.9.8.7"


def test_query_ops_filter_and_selector(srv):
    s, a = srv
    r = post(s.port, json.dumps({"application": a, "ops": [{"path": "/lat", "op": "$eq", "to": {"value": 7}}]}))
    assert [n["client_id"] for n in r.json()] == ["client-1"]
    r = post(s.port, json.dumps({"application": a, "selector": {"$max": "lat"}}))
    assert [n["client_id"] for n in r.json()] == ["client-1"]


def test_query_empty(srv):
    s, _ = srv
    r = post(s.port, json.dumps({"application": "nobody-" + uid(), "ops": []}))
    assert r.status == 200 and r.json() == [] and r.header("content-type") == JSON_CT


def test_restricted_only_when_asked(srv):
    s, a = srv
    ids = {n["client_id"] for n in post(s.port, json.dumps({"application": a, "restricted": True})).json()}
    assert ids == {"client-1", "client-2", "restricted-1"}
    [rn] = [n for n in post(s.port, json.dumps({"application": a, "restricted": "true"})).json()
            if n["client_id"] == "restricted-1"]
    assert rn["socket_ip"] is None and rn["metadata"]["ip"] is None and rn["metadata"]["restricted"] is True


@pytest.mark.parametrize("query,detail", [
    ({"application": "a", "ops": [{"path": "/x", "op": "$foo", "to": {"value": 1}}]}, "ops[0]: unknown op $foo"),
    ({"application": "a", "ops": {}}, "ops: must be an array"),
])
def test_invalid_query_400(srv, query, detail):
    s, _ = srv
    r = post(s.port, json.dumps(query))
    assert r.status == 400 and r.header("content-type") == JSON_CT
    assert r.json() == {"errors": [f"invalid query: {detail}"]}


@pytest.mark.parametrize("query", [
    {"application": 5}, {"application": "a", "selector": {}}, {"application": "a", "ops": [{"path": "x", "op": "$eq",
                                                                                             "to": {"value": 1}}]},
])
def test_invalid_query_400_any_detail(srv, query):
    s, _ = srv
    r = post(s.port, json.dumps(query))
    assert r.status == 400
    errs = r.json()["errors"]
    assert isinstance(errs, list) and len(errs) == 1 and errs[0].startswith("invalid query: ") and len(errs[0]) > 15


@pytest.mark.parametrize("body", ["{not json", "{\"application\": ", "[1,", "nul"])
def test_unparsable_json(srv, body):
    s, _ = srv
    r = post(s.port, body)
    assert r.status == 400 and r.json() == {"errors": {"detail": "Bad Request"}}


def test_no_content_type_parsed_as_json(srv):
    s, a = srv
    r = post(s.port, json.dumps({"application": a, "ops": []}), headers={})
    assert r.status == 200 and {n["client_id"] for n in r.json()} == {"client-1", "client-2"}
    r = post(s.port, "{broken", headers={})
    assert r.status == 400 and r.json() == {"errors": {"detail": "Bad Request"}}


@pytest.mark.parametrize("ctype,parsed", [
    ("application/json", True), ("Application/JSON; charset=utf-8", True), ("application/vnd.api+json", True),
    ("application/json ;x=y", True), ("text/plain", False), ("application/x-www-form-urlencoded", False),
    ("application/jsonx", False), ("json", False),
])
def test_content_types(srv, ctype, parsed):
    """rest.md §2.2: JSON types (any case, parameters ignored) are parsed;
    others count as an empty body, i.e. the query `{}` (every client)."""
    s, a = srv
    nothing = {"application": a, "ops": [{"path": "/nope", "op": "$eq", "to": {"value": 1}}]}
    r = post(s.port, json.dumps(nothing), headers={"Content-Type": ctype})
    assert r.status == 200
    if parsed:
        assert r.json() == []
    else:
        assert {n["client_id"] for n in r.json()} >= {"client-1", "client-2"}


def test_get_query_is_404(srv):
    s, _ = srv
    r = post(s.port, None, method="GET", headers={})
    assert r.status == 404


@pytest.fixture(scope="module")
def auth_srv():
    s = start_server("--auth", "s3cret", "--auth-failures-per-minute", "0")
    yield s
    stop_server(s)


@pytest.mark.parametrize("header,status", [
    (None, 401), ("wrong", 401), ("Bearer s3cret", 401), ("s3cret ", None), ("S3CRET", 401), ("s3cret", 200),
    ("", 401),
])
def test_rest_authorization(auth_srv, header, status):
    headers = {"Content-Type": "application/json"}
    if header is not None:
        headers["Authorization"] = header
    r = post(auth_srv.port, json.dumps({"application": "x"}), headers=headers)
    if status is None:  # trailing whitespace is not part of an HTTP header value (RFC 9110 §5.5)
        assert r.status == 200, r.status
        return
    assert r.status == status, (header, r.status, r.body)
    if status == 401:
        assert r.json() == {"status": "error", "error": "not authorized"}
    else:
        assert r.json() == []


def test_rest_auth_404_not_checked(auth_srv):
    r = post(auth_srv.port, None, method="GET", headers={})
    assert r.status == 404
