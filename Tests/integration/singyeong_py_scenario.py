"""Runs with the .venv39 interpreter: two singyeong.py 1.0.1 clients against
a server on localhost:<port>; prints one JSON object per line.

usage: singyeong_py_scenario.py PORT [ENCODING_A] [ENCODING_B]"""

import asyncio
import json
import sys

import singyeong
from singyeong import Client, Equal, GreaterThanEqual, Minimum, Target, VersionType

PORT = int(sys.argv[1])
ENC_A = sys.argv[2] if len(sys.argv) > 2 else "json"
ENC_B = sys.argv[3] if len(sys.argv) > 3 else "json"


def out(**kw):
    print(json.dumps(kw), flush=True)


class Recorder(Client):
    def __init__(self, name, dsn, loop):
        super().__init__(dsn, loop=loop)
        self.name = name
        self.inbox = asyncio.Queue()

    async def on_ready(self):
        out(event="ready", who=self.name, client_id=str(self.ws.client_id))

    async def on_raw_packet(self, message):
        await self.inbox.put(message)
        out(event="message", who=self.name, t=message.event_name, nonce=message.nonce, payload=message.payload,
            ts=message.timestamp)

    def on_error(self, exc):
        out(event="error", who=self.name, error=repr(exc))


async def main(loop):
    out(event="version", version=singyeong.__version__)
    a = Recorder("A", f"singyeong://py-app-a@localhost:{PORT}?encoding={ENC_A}", loop)
    b = Recorder("B", f"singyeong://py-app-b@localhost:{PORT}?encoding={ENC_B}", loop)
    tasks = [loop.create_task(a.connect()), loop.create_task(b.connect())]
    await asyncio.wait_for(asyncio.gather(a.wait_until_ready(), b.wait_until_ready()), 10)
    await a.update_metadata({"lat": 5, "name": "alpha", "ver": VersionType("1.2.3"), "tags": ["x", "y"],
                             "load": 0.25})
    await b.update_metadata({"lat": 9})
    await asyncio.sleep(0.3)  # the server flushes metadata every METADATA_QUEUE_INTERVAL

    # B -> A: SEND selected by metadata ops and a selector
    await b.send(Target(application="py-app-a", operators=[Equal("/lat", 5), Equal("/name", "alpha")],
                        selector=Minimum("lat")),
                 {"hello": "world", "n": [1, 2.5, None]}, nonce="n-1")
    m = await asyncio.wait_for(a.inbox.get(), 5)
    # B -> A: BROADCAST with a version comparison
    await b.broadcast(Target(application="py-app-a", operators=[GreaterThanEqual("/ver", VersionType("1.0.0"))]),
                      ["bcast", 2])
    m = await asyncio.wait_for(a.inbox.get(), 5)
    # A -> B: SEND without nonce, dict target
    await a.send({"application": "py-app-b", "ops": [{"path": "/lat", "op": "$gt",
                                                      "to": {"type": "integer", "value": 5}}]}, "pong")
    m = await asyncio.wait_for(b.inbox.get(), 5)
    # a query that matches nothing and is droppable: nothing arrives
    await a.send(Target(application="py-app-b", operators=[Equal("/lat", 1)], droppable=True), "dropped")
    await asyncio.sleep(0.3)
    out(event="inbox_sizes", A=a.inbox.qsize(), B=b.inbox.qsize())
    out(event="latency", A=a.latency, B=b.latency)
    await a._close()
    await b._close()
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    out(event="done")


if __name__ == "__main__":
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        loop.run_until_complete(asyncio.wait_for(main(loop), 30))
    finally:
        loop.close()
