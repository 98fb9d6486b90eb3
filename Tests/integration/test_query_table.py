"""query.md §11, every row, over the wire (QUERY_NODES on the gateway and
POST /api/v1/query), one server for the whole module."""

from __future__ import annotations

import http.client
import json

import pytest

from gateway_client import HOST, Clients, start_server, stop_server, typed

INFO = {"zone": "a", "ports": [80, 443], "nested": {"x": 1}, "1": "one"}
C_METADATA = typed(
    latency=("integer", 50), region=("string", "eu"), guilds=("list", [1, 2, 3]), tags=("list", ["a", "b"]),
    empty=("list", []), ver=("version", "1.10.0"), beta=("boolean", True), load=("float", 0.5),
    key2=("integer", 5), info=("map", INFO),
)
SEL_APP = "sel-api"


def o(path, op, value):
    return {"path": path, "op": op, "to": {"value": value}}


M, N, INV = "match", "no", "invalid"

# (row, query-or-ops, expected); a list is the ops of {"application": "api", "ops": [...]}
C_ROWS = [
    (1, [o("/latency", "$eq", 50)], M),
    (2, [o("/latency", "$eq", 50.0)], M),
    (3, [o("/latency", "$eq", "50")], N),
    (4, [o("/latency", "$ne", 40)], M),
    (5, [o("/latency", "$ne", 50)], N),
    (6, [o("/latency", "$ne", "50")], M),
    (7, [o("/latency", "$gt", 10)], M),
    (8, [o("/latency", "$gt", 50)], N),
    (9, [o("/latency", "$gte", 50)], M),
    (10, [o("/latency", "$lt", 100.5)], M),
    (11, [o("/latency", "$lte", 49)], N),
    (12, [o("/latency", "$lt", "10")], N),
    (13, [o("/latency", "$gt", None)], N),
    (14, [o("/latency", "$lt", True)], N),
    (15, [o("/region", "$eq", "eu")], M),
    (16, [o("/region", "$eq", "EU")], N),
    (17, [o("/region", "$gt", "de")], M),
    (18, [o("/region", "$gt", 5)], N),
    (19, [o("/region", "$in", ["eu", "us"])], M),
    (20, [o("/region", "$in", ["us"])], N),
    (21, [o("/region", "$in", {"eu": 1})], INV),
    (22, [o("/region", "$nin", ["us"])], M),
    (23, [o("/region", "$nin", ["eu"])], N),
    (24, [o("/guilds", "$contains", 2)], M),
    (25, [o("/guilds", "$contains", 2.0)], M),
    (26, [o("/guilds", "$contains", "2")], N),
    (27, [o("/guilds", "$contains", 4)], N),
    (28, [o("/guilds", "$ncontains", 4)], M),
    (29, [o("/region", "$contains", "e")], N),
    (30, [o("/region", "$ncontains", "e")], M),
    (31, [o("/guilds", "$eq", [1, 2, 3])], M),
    (32, [o("/guilds", "$eq", [3, 2, 1])], N),
    (33, [o("/guilds/0", "$eq", 1)], M),
    (34, [o("/guilds/2", "$gte", 3)], M),
    (35, [o("/guilds/3", "$eq", 1)], N),
    (36, [o("/guilds/01", "$eq", 2)], N),
    (37, [o("/empty", "$contains", 1)], N),
    (38, [o("/empty", "$eq", [])], M),
    (39, [o("/tags", "$in", [["a", "b"]])], M),
    (40, [o("/ver", "$eq", "1.10.0")], M),
    (41, [o("/ver", "$gt", "1.9.0")], M),
    (42, [o("/ver", "$lt", "1.2.0")], N),
    (43, [o("/ver", "$gte", "1.10.0+build.7")], M),
    (44, [o("/ver", "$lt", "1.10.0-rc.1")], N),
    (45, [o("/beta", "$eq", True)], M),
    (46, [o("/beta", "$gt", False)], N),
    (47, [o("/load", "$lte", 0.5)], M),
    (48, [o("/info/zone", "$eq", "a")], M),
    (49, [o("/info/ports/1", "$eq", 443)], M),
    (50, [o("/info/ports", "$contains", 80)], M),
    (51, [o("/info/nested/x", "$gte", 1)], M),
    (52, [o("/info/1", "$eq", "one")], M),
    (53, [o("/info", "$eq", {"zone": "a", "ports": [80, 443], "nested": {"x": 1}, "1": "one"})], M),
    (54, [o("/key2", "$eq", 5)], M),
    (55, [o("/missing", "$eq", 1)], N),
    (56, [o("/missing", "$gt", 0)], N),
    (57, [o("/missing", "$ne", 1)], M),
    (58, [o("/missing", "$nin", [1])], M),
    (59, [o("/missing", "$ncontains", 1)], M),
    (60, [o("/namespace", "$eq", None)], M),
    (61, [o("/restricted", "$eq", False)], M),
    (62, [o("/encoding", "$eq", "json")], M),
    (63, [{"op": "$and", "with": [o("/latency", "$gt", 10), o("/latency", "$lt", 100)]}], M),
    (64, [{"op": "$and", "with": [o("/latency", "$gt", 10), o("/region", "$eq", "us")]}], N),
    (65, [{"op": "$and", "with": []}], M),
    (66, [{"op": "$or", "with": [o("/missing", "$eq", 1), o("/latency", "$eq", 50)]}], M),
    (67, [{"op": "$or", "with": [o("/latency", "$eq", 50), o("/missing", "$eq", 1)]}], M),
    (68, [{"op": "$or", "with": []}], N),
    (69, [{"op": "$nor", "with": [o("/region", "$eq", "us"), o("/latency", "$gt", 100)]}], M),
    (70, [{"op": "$nor", "with": [o("/region", "$eq", "eu")]}], N),
    (71, [{"op": "$nor", "with": [o("/missing", "$eq", 1)]}], M),
    (72, [{"op": "$nor", "with": []}], M),
    (73, [o("/latency", "$gt", 10), o("/region", "$eq", "eu")], M),
    (74, [{"path": "/load", "op": "$lt", "to": {"path": "/latency", "default": 0}}], M),
    (75, [{"path": "/latency", "op": "$eq", "to": {"path": "/latency", "default": 0}}], M),
    (76, [{"path": "/latency", "op": "$eq", "to": {"path": "/nope", "default": 50}}], M),
    (77, [{"path": "/latency", "op": "$eq", "to": {"path": "/nope"}}], N),
    (78, [{"path": "/latency", "op": "$eq", "to": {"type": "integer", "value": 50}}], M),
    (79, [{"latency": {"$lte": 100}}], M),
    (80, [{"latency": {"$gt": 10, "$lt": 20}}], N),
    (81, [{"latency": {"$or": [{"$eq": 10}, {"$gt": 40}]}}], M),
    (82, [{"guilds": {"$contains": 3}}], M),
    (83, [{"missing": {"$ne": 1}}], M),
    (84, [{"path": "latency", "op": "$eq", "to": {"value": 50}}], INV),
    (85, [{"path": "/latency", "op": "$exists", "to": {"value": True}}], INV),
    (86, {"application": "other", "ops": []}, N),
    (87, {"ops": []}, M),
    (88, {"application": "api"}, M),
]

R_ROWS = [
    (89, {"application": "api", "ops": []}, N),
    (90, {"application": "api", "restricted": True}, M),
    (91, {"application": "api", "restricted": "true"}, M),
    (92, {"application": "api", "restricted": 1}, N),
]


@pytest.fixture(scope="module")
def world():
    s = start_server("--metadata-queue-interval", "0", "--auth-failures-per-minute", "0")
    cl = Clients(s.port)
    try:
        c = cl.identified("api", "C", ip="10.0.0.5", metadata=C_METADATA)
        r = cl.identified("api", "R", auth="not-the-password")
        assert r.ready["d"]["restricted"] is True
        sel = {}
        for name, lat in {"A": 10, "B": 50, "C": 30, "D": None, "E": "fast"}.items():
            md = typed(region=("string", "eu"))
            if isinstance(lat, int):
                md.update(typed(latency=("integer", lat)))
            elif lat is not None:
                md.update(typed(latency=("string", lat)))
            sel[name] = cl.identified(SEL_APP, name, metadata=md)
        q = cl.identified("q-app", "Q")
        yield {"server": s, "port": s.port, "C": c, "R": r, "sel": sel, "q": q}
    finally:
        cl.close_all()
        stop_server(s)


def rest_query(port, query):
    conn = http.client.HTTPConnection(HOST, port, timeout=5)
    try:
        conn.request("POST", "/api/v1/query", body=json.dumps(query), headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read().decode() or "null")
    finally:
        conn.close()


def run(world, transport, query):
    """-> ("ids", set) or ("invalid", detail)"""
    if transport == "ws":
        f = world["q"].query_nodes(query)
        if f["op"] == 3:
            assert f["d"]["error"] == "invalid query", f
            assert isinstance(f["d"]["extra_info"], str) and f["d"]["extra_info"], f
            return "invalid", f["d"]["extra_info"]
        assert f["op"] == 4 and f["t"] == "QUERY_NODES", f
        return "ids", {(n["app_id"], n["client_id"]) for n in f["d"]["nodes"]}
    status, body = rest_query(world["port"], query)
    if status == 400:
        assert isinstance(body, dict) and isinstance(body.get("errors"), list) and len(body["errors"]) == 1, body
        assert body["errors"][0].startswith("invalid query: "), body
        return "invalid", body["errors"][0]
    assert status == 200, (status, body)
    return "ids", {(n["app_id"], n["client_id"]) for n in body}


def check(world, transport, query, expected, who):
    kind, result = run(world, transport, query)
    if expected == INV:
        assert kind == "invalid", f"expected invalid query, got {result}"
    else:
        assert kind == "ids", f"unexpected invalid query: {result}"
        assert (who in result) == (expected == M), f"expected {expected} for {who}, got {sorted(result)}"


@pytest.mark.parametrize("transport", ["ws", "rest"])
@pytest.mark.parametrize("row,q,expected", C_ROWS, ids=[f"row{r[0]}" for r in C_ROWS])
def test_client_c(world, transport, row, q, expected):
    query = {"application": "api", "ops": q} if isinstance(q, list) else q
    check(world, transport, query, expected, ("api", "C"))


@pytest.mark.parametrize("transport", ["ws", "rest"])
@pytest.mark.parametrize("row,q,expected", R_ROWS, ids=[f"row{r[0]}" for r in R_ROWS])
def test_restricted_r(world, transport, row, q, expected):
    check(world, transport, q, expected, ("api", "R"))


def test_c_metadata_stored_as_given(world):
    [n] = [n for n in world["q"].query_nodes({"application": "api"})["d"]["nodes"] if n["client_id"] == "C"]
    md = n["metadata"]
    for k, e in C_METADATA.items():
        assert md[k] == e["value"] and type(md[k]) is type(e["value"]), k
        assert n["metadata_types"][k] == e["type"]
    assert md["ip"] == "10.0.0.5" and n["socket_ip"] == "10.0.0.5"
    assert md["namespace"] is None and md["receive_client_updates"] is False and md["encoding"] == "json"


# ---------------------------------------------------------------- rows 93-102 (selectors, optional, key)


def sel_ids(world, query, transport="ws"):
    kind, result = run(world, transport, {"application": SEL_APP, **query})
    assert kind == "ids", result
    return {cid for _, cid in result}


@pytest.mark.parametrize("transport", ["ws", "rest"])
@pytest.mark.parametrize("row,sel,who", [(93, "$min", "A"), (94, "$max", "B"), (95, "$avg", "C")])
def test_selector_rows(world, transport, row, sel, who):
    assert sel_ids(world, {"selector": {sel: "latency"}}, transport) == {who}


def test_row96_selector_unknown_key_random(world):
    seen = set()
    for _ in range(40):
        got = sel_ids(world, {"selector": {"$min": "nope"}})
        assert len(got) == 1 and got <= set("ABCDE"), got
        seen |= got
    assert len(seen) >= 3, seen


def test_row97_empty_selector_no_route(world):
    q = {"ops": [o("/region", "$eq", "us")], "selector": {"$min": "latency"}}
    assert sel_ids(world, q) == set()
    world["q"].dispatch("SEND", {"target": {"application": SEL_APP, **q}, "payload": 1})
    assert world["q"].expect_invalid()["error"] == "no_route"


def test_row98_optional_fallback(world):
    q = {"ops": [o("/region", "$eq", "us")], "optional": True}
    assert sel_ids(world, q) == set("ABCDE")
    assert sel_ids(world, q, "rest") == set("ABCDE")
    world["q"].dispatch("SEND", {"target": {"application": SEL_APP, **q}, "payload": "opt"})
    world["q"].sync()
    got = [name for name, c in world["sel"].items() for _ in c.drain(0.1)]
    assert len(got) == 1, got


def test_row99_droppable_no_clients(world):
    world["q"].dispatch("SEND", {"target": {"application": "no-clients-here", "optional": True, "droppable": True,
                                            "ops": [o("/region", "$eq", "us")]}, "payload": 1})
    world["q"].sync()
    world["q"].expect_no_frame(0.2)


@pytest.mark.parametrize("row,query,who", [
    (100, {"ops": [o("/latency", "$gte", 30)], "key": "a"}, "B"),
    (101, {"ops": [], "key": "user-42"}, "E"),
])
def test_key_rows(world, row, query, who):
    for i in range(5):
        world["q"].dispatch("SEND", {"target": {"application": SEL_APP, **query}, "payload": [row, i]})
    world["q"].sync()
    for name, c in world["sel"].items():
        got = [f["d"]["payload"] for f in c.drain(0.1)]
        assert got == ([[row, i] for i in range(5)] if name == who else []), (name, got)


def test_row102_broadcast_selector(world):
    world["q"].dispatch("BROADCAST", {"target": {"application": SEL_APP, "selector": {"$min": "latency"}},
                                      "payload": "b"})
    world["q"].sync()
    for name, c in world["sel"].items():
        got = [f["d"]["payload"] for f in c.drain(0.1)]
        assert got == (["b"] if name == "A" else []), (name, got)
