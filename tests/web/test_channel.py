"""
The live channel over real sockets: who may connect, and what a client
that stops reading costs (nothing but its own messages).
"""

import pytest_twisted
from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint, connectProtocol
from twisted.web.resource import Resource
from twisted.web.server import Site

from monitor.web.push import PushHub
from monitor.web.users import Session
from tests.web.test_push import make_post
from tests.web.wsclient import RawClient


class Users:
    """Stands in for the store of sessions: one valid cookie."""

    async def session(self, token):
        return Session("k", 1, "ann", "viewer", "c") if token == "good" else None


@pytest_twisted.async_yield_fixture
async def channel(reactor):
    hub = PushHub(reactor, users=Users(), queue_limit=50, interval=0.01, stall_timeout=1.0, ping_interval=0)
    root = Resource()
    root.putChild(b"ws", hub.resource)
    hub.startService()
    port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(Site(root))
    yield hub, port.getHost().port
    hub.stopService()
    await port.stopListening()


async def dial(reactor, port, origin="same", cookie="monitor_session=good"):
    host = f"127.0.0.1:{port}"
    client = RawClient(host, f"http://{host}" if origin == "same" else origin, cookie)
    await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port), client)
    status = await client.handshake.addTimeout(5, reactor)
    return client, status


@pytest_twisted.ensureDeferred
async def test_session_and_origin_are_required(reactor, channel):
    """No cookie, a bad cookie, another origin, or no origin: the handshake is refused."""
    hub, port = channel
    for kwargs, expected in (
        ({"cookie": None}, 401),
        ({"cookie": "monitor_session=bad"}, 401),
        ({"origin": "http://evil.example"}, 403),
        ({"origin": None}, 403),
    ):
        client, status = await dial(reactor, port, **kwargs)
        assert status == expected, kwargs
        await client.closed.addTimeout(5, reactor)
    client, status = await dial(reactor, port)
    assert status == 101
    client.transport.loseConnection()
    await client.closed.addTimeout(5, reactor)


@pytest_twisted.ensureDeferred
async def test_subscriber_receives_posts(reactor, channel):
    """A subscribed client gets the hello, its subscription and then matching posts."""
    hub, port = channel
    client, status = await dial(reactor, port)
    await client.wait_for(lambda es: any(e["type"] == "hello" for e in es)).addTimeout(5, reactor)
    client.send_json({"type": "subscribe", "kinds": ["post"], "topics": ["Acme"]})
    await client.wait_for(lambda es: any(e["type"] == "subscribed" for e in es)).addTimeout(5, reactor)
    hub.posts_stored([make_post(1), make_post(2, topic="Globex")])
    got = await client.wait_for(lambda es: any(e["type"] == "post" for e in es)).addTimeout(5, reactor)
    assert [e["data"]["native_id"] for e in got if e["type"] == "post"] == ["1"]
    client.transport.loseConnection()
    await client.closed.addTimeout(5, reactor)


@pytest_twisted.ensureDeferred
async def test_client_that_stops_reading_is_cut_off(reactor, channel):
    """A client that never reads loses messages, then is disconnected; a reading client gets everything."""
    hub, port = channel
    stalled, _ = await dial(reactor, port)
    reader, _ = await dial(reactor, port)
    for c in (stalled, reader):
        await c.wait_for(lambda es: any(e["type"] == "hello" for e in es)).addTimeout(5, reactor)
        c.send_json({"type": "subscribe", "kinds": ["post"]})
        await c.wait_for(lambda es: any(e["type"] == "subscribed" for e in es)).addTimeout(5, reactor)
    cut_off = Deferred()
    hub.disconnected = cut_off.callback
    stalled.transport.pauseProducing()
    big = "x" * 20000
    sent = 0
    # Publish until the stalled client's socket buffers are full and its
    # queue overflows (the reader is paused now and then too, but only for
    # as long as its transport takes to drain, so it loses nothing).

    async def publish(text=big):
        """20 more posts, and wait until the reader has them all."""
        nonlocal sent
        posts = [make_post(n) for n in range(sent, sent + 20)]
        for p in posts:
            p.text = text if text is not None else p.text
        hub.posts_stored(posts)
        sent += 20
        await reader.wait_for(lambda es, n=sent: sum(e["type"] == "post" for e in es) >= n).addTimeout(10, reactor)

    while hub.dropped_total == 0 and sent < 20000:
        await publish()
    assert any(c.paused for c in hub.clients), "the stalled client was never paused"
    # Keep publishing: the stalled client's queue stays bounded and counts losses.
    for _ in range(10):
        await publish(text=None)
        assert all(len(c.pending) <= hub.queue_limit for c in hub.clients)
    assert hub.dropped_total > 0
    assert not any(e["type"] == "lost" for e in reader.envelopes)
    # Keep writing: once its socket buffers are full for good (on a loaded
    # machine the kernel may take a while to stop accepting), it is paused
    # for longer than stall_timeout and cut off.
    for _ in range(200):
        if cut_off.called:
            break
        await publish()
        await deferLater(reactor, 0.05, lambda: None)
    why = await cut_off.addTimeout(5, reactor)
    assert why == "stalled"
    # It only notices once it reads again.
    stalled.transport.resumeProducing()
    await stalled.closed.addTimeout(5, reactor)
    assert len(hub.clients) == 1
    reader.transport.loseConnection()
    await reader.closed.addTimeout(5, reactor)
