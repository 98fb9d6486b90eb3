"""A hostile (or broken) peer on the cluster port: after an authenticated
(protocol v3) handshake it sends frames whose MessagePack body is empty or undecodable.
Each is a protocol error for that link: logged and closed, while the node
keeps serving its clients and other links (cluster.md §3)."""

from __future__ import annotations

import hashlib
import hmac
import os
import socket
import struct
import time

import msgpack
import pytest

from cluster_fixtures import COOKIE, cluster_factory, redis_factory  # noqa: F401 (fixtures)
from gateway_client import uid
from sy_helpers import wait_for

PROTOCOL_VERSION = 3
HELLO, AUTH, PING, PONG, QUERY, DELIVER, EVENT, APPLICATIONS, ROUTE, PROXY, TAGS = 1, 2, 3, 4, 10, 12, 13, 16, 18, 20, 22
QUEUE_REQUEST, QUEUE_REPLY, QUEUE_MESSAGE = 27, 28, 29


class RawPeer:
    """Speaks the peer-link framing over plain TCP: `[u32 length][u8 type]
    [u64 request id][body]`, and the HELLO/AUTH handshake with COOKIE."""

    def __init__(self, host: str, port: int, cookie: str = COOKIE):
        self.sock = socket.create_connection((host, port), timeout=5)
        self.buffer = b""
        self.node_id = os.urandom(16).hex()
        self.nonce = os.urandom(32).hex()
        self.cookie = cookie

    def send(self, ftype: int, body: bytes, request_id: int = 0):
        self.sock.sendall(struct.pack(">IBQ", 9 + len(body), ftype, request_id) + body)

    def recv_frame(self) -> tuple[int, int, bytes] | None:
        """The next frame, or None when the node closed the connection."""
        while True:
            if len(self.buffer) >= 4:
                (length,) = struct.unpack(">I", self.buffer[:4])
                if len(self.buffer) >= 4 + length:
                    ftype, rid = struct.unpack(">BQ", self.buffer[4:13])
                    body, self.buffer = self.buffer[13:4 + length], self.buffer[4 + length:]
                    return ftype, rid, body
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                return None
            if not chunk:
                return None
            self.buffer += chunk

    def proof(self, role: str, sender_id: str, sender_nonce: str, receiver_id: str, receiver_nonce: str) -> str:
        """PeerAuthentication.proof: HMAC-SHA256 over length-prefixed fields
        (no TLS here, so no channel binding)."""
        message = b"singyeong-peer-v%d" % PROTOCOL_VERSION
        for field in (role, sender_id, sender_nonce, receiver_id, receiver_nonce, ""):
            raw = field.encode()
            message += b"|%d:" % len(raw) + raw
        return hmac.new(self.cookie.encode(), message, hashlib.sha256).hexdigest()

    def handshake(self):
        """v3: HELLO, the node's HELLO, our proof first, then the node's."""
        self.send(HELLO, msgpack.packb({"v": PROTOCOL_VERSION, "node": self.node_id, "nonce": self.nonce}))
        frame = self.recv_frame()
        assert frame is not None and frame[0] == HELLO, frame
        node_hello = msgpack.unpackb(frame[2])
        self.send(AUTH, msgpack.packb({"mac": self.proof("dialer", self.node_id, self.nonce,
                                                          node_hello["node"], node_hello["nonce"])}))
        frame = self.recv_frame()
        assert frame is not None and frame[0] == AUTH, frame
        expected = self.proof("acceptor", node_hello["node"], node_hello["nonce"], self.node_id, self.nonce)
        assert msgpack.unpackb(frame[2])["mac"] == expected, "node's proof does not check out"
        # Link up: the node announces its applications first.
        frame = self.recv_frame()
        assert frame is not None and frame[0] == APPLICATIONS, frame
        return node_hello["node"]

    def closed_within(self, seconds: float) -> bool:
        """Whether the node closes the link within `seconds` (answering pings meanwhile)."""
        self.sock.settimeout(seconds)
        deadline = time.monotonic() + seconds
        try:
            while time.monotonic() < deadline:
                frame = self.recv_frame()
                if frame is None:
                    return True
                if frame[0] == PING:
                    self.send(PONG, b"", frame[1])
        except socket.timeout:
            return False
        return False

    def close(self):
        self.sock.close()



BAD_BODIES = [
    pytest.param(APPLICATIONS, b"", "empty applications frame body", id="applications-empty"),
    pytest.param(APPLICATIONS, b"\xc1", "undecodable applications frame", id="applications-undecodable"),
    pytest.param(PING, b"", "empty ping frame body", id="ping-empty"),
    pytest.param(QUERY, b"", "empty query frame body", id="query-empty"),
    pytest.param(DELIVER, b"", "empty deliver frame body", id="deliver-empty"),
    pytest.param(EVENT, b"", "empty event frame body", id="event-empty"),
    pytest.param(ROUTE, b"", "empty route frame body", id="route-empty"),
    pytest.param(TAGS, b"", "empty tags frame body", id="tags-empty"),
    # A proxy frame's MessagePack header is empty (the raw tail is not).
    pytest.param(PROXY, struct.pack(">I", 0) + b"tail", "empty proxy frame body", id="proxy-empty-header"),
    pytest.param(QUERY, msgpack.packb({"q": 1}) + b"\x00", "undecodable query frame", id="query-trailing-bytes"),
    pytest.param(QUEUE_REQUEST, b"", "empty queueRequest frame body", id="queue-request-empty"),
    pytest.param(QUEUE_REPLY, b"\xc1", "undecodable queueReply frame", id="queue-reply-undecodable"),
    pytest.param(QUEUE_MESSAGE, b"", "empty queueMessage frame body", id="queue-message-empty"),
]


@pytest.mark.parametrize("ftype,body,reason", BAD_BODIES)
def test_empty_or_undecodable_body_closes_the_link(cluster_factory, ftype, body, reason):
    cluster = cluster_factory(0)
    node = cluster.add()
    client = node.identified("hostile-peer-app", uid("c"))
    peer = RawPeer(node.host, node.cluster_port)
    try:
        peer.handshake()
        # A well-formed frame first: it fills the node's reused tape storage
        # with a root node that an unchecked empty body would read again.
        peer.send(APPLICATIONS, msgpack.packb({"add": ["x"], "remove": [], "ack": True}), 5)
        peer.send(ftype, body, 6)
        assert peer.closed_within(3), f"node kept the link open after a {reason!r} frame\n{cluster.dump()}"
    finally:
        peer.close()
    assert wait_for(lambda: reason in node.log(), 3), f"no log line with {reason!r}\n{cluster.dump()}"
    assert "peer link closed" in node.log()
    assert node.alive()
    # The node still serves its client and accepts a well-behaved peer.
    client.heartbeat()
    good = RawPeer(node.host, node.cluster_port)
    try:
        good.handshake()
        good.send(PING, msgpack.packb({"n": 0}), 1)
        frame = good.recv_frame()
        while frame is not None and frame[0] != PONG:
            frame = good.recv_frame()
        assert frame is not None and frame[1] == 1
    finally:
        good.close()


def test_malformed_queue_operations_get_an_error_and_the_link_stays(cluster_factory):
    """Queue frames that decode but are not an operation (issue 14): the
    peer gets a `queueReply` with an error, the node logs it, and the link,
    the node and its queues keep working; a well-formed operation from the
    same peer is served."""
    cluster = cluster_factory(0)
    node = cluster.add()
    peer = RawPeer(node.host, node.cluster_port)
    q = uid("q")
    try:
        peer.handshake()
        bad = [
            {"o": "z", "q": q},
            {"o": "q", "q": q},  # no target, no payload
            {"o": "q", "q": "", "enc": 0, "target": "{}", "payload": "1"},  # empty name
            {"o": "r", "q": q, "h": 1, "s": 1, "a": "app", "c": "c", "enc": 0, "m": [["k", "nosuchtype", 1]]},
            {"o": "a", "q": q, "id": 5},
        ]
        for i, body in enumerate(bad, start=10):
            peer.send(QUEUE_REQUEST, msgpack.packb(body), i)
        replies = {}
        while len(replies) < len(bad):
            frame = peer.recv_frame()
            assert frame is not None, f"node closed the link\n{cluster.dump()}"
            if frame[0] == PING:
                peer.send(PONG, b"", frame[1])
            elif frame[0] == QUEUE_REPLY:
                replies[frame[1]] = msgpack.unpackb(frame[2])
        assert all(r == {"err": "malformed queue request"} for r in replies.values()), replies
        # A message for a consumer that does not exist here, and a malformed one: ignored.
        peer.send(QUEUE_MESSAGE, msgpack.packb({"o": "d", "q": q, "h": 999, "s": 1, "id": "x", "enc": 0, "payload": "1"}))
        peer.send(QUEUE_MESSAGE, msgpack.packb({"o": "d"}))
        # A well-formed QUEUE is stored and confirmed by the reply.
        peer.send(QUEUE_REQUEST, msgpack.packb({"o": "q", "q": q, "enc": 0, "target": '{"application":"nobody"}',
                                               "payload": '{"n":1}'}), 99)
        frame = peer.recv_frame()
        while frame is not None and frame[0] != QUEUE_REPLY:
            frame = peer.recv_frame()
        assert frame is not None and frame[1] == 99 and msgpack.unpackb(frame[2]) == {}, frame
    finally:
        peer.close()
    assert wait_for(lambda: "malformed queue request from a peer" in node.log(), 3)
    assert wait_for(lambda: "malformed queue message from a peer" in node.log(), 3)
    assert node.alive()
    c = node.identified("nobody", uid("c"))
    c.dispatch("QUEUE_REQUEST", {"queue": q})
    f = c.recv_frame()
    assert f["t"] == "QUEUE" and f["d"]["payload"]["payload"] == {"n": 1}, f


def test_queue_request_repeats_leave_the_metadata_out(cluster_factory):
    """A waiting consumer's request is sent again every GC interval; once
    the owner said it keeps the metadata (`km`), repeats leave it out, and
    a repeat for a consumer the owner does not have is answered `nm` (send
    it with the metadata) without creating anything. The kept metadata is
    what targets are evaluated against: a repeat does not wipe it."""
    cluster = cluster_factory(0)
    node = cluster.add()
    peer = RawPeer(node.host, node.cluster_port)
    q = uid("q")

    def reply_to(body, seq):
        peer.send(QUEUE_REQUEST, msgpack.packb(body), seq)
        while True:
            frame = peer.recv_frame()
            assert frame is not None, f"node closed the link\n{cluster.dump()}"
            if frame[0] == PING:
                peer.send(PONG, b"", frame[1])
            elif frame[0] == QUEUE_REPLY:
                assert frame[1] == seq, frame
                return msgpack.unpackb(frame[2])

    request = {"o": "r", "q": q, "h": 1, "s": 1, "a": "app", "c": "c", "enc": 0}
    try:
        peer.handshake()
        assert reply_to(request, 10) == {"nm": True}  # unknown consumer: nothing made
        assert reply_to({**request, "m": [["role", "string", "x"]]}, 11) == {"km": True}
        assert reply_to(request, 12) == {"km": True}  # the repeat keeps its place
        target = '{"application":"app","ops":[{"path":"/role","op":"$eq","to":{"value":"x"}}]}'
        assert reply_to({"o": "q", "q": q, "enc": 0, "target": target, "payload": '{"n":1}'}, 13) == {}
        frame = peer.recv_frame()
        while frame is not None and frame[0] != QUEUE_MESSAGE:
            if frame[0] == PING:
                peer.send(PONG, b"", frame[1])
            frame = peer.recv_frame()
        assert frame is not None, f"no delivery\n{cluster.dump()}"
        delivery = msgpack.unpackb(frame[2])
        assert delivery["o"] == "d" and delivery["h"] == 1 and delivery["s"] == 1 and delivery["payload"] == '{"n":1}', delivery
    finally:
        peer.close()
    assert node.alive()
