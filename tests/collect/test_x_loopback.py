"""
The X collector against the fake X API over real sockets on 127.0.0.1, on
the real reactor: the collector's own pool and Agent, chunked streaming,
dropped connections, stalls, a server that is not there.  Waits are
event-driven and bounded.
"""

import json
import socket

import pytest
import pytest_twisted
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.web.server import Site

from monitor.collect.base import BACKING_OFF, CONNECTED
from monitor.collect.x import XSource
from monitor.metrics import Metrics
from monitor.model import Topic
from monitor.queue.memory import MemoryQueue
from tests.fakes.x import FakeX
from tests.fakes.store import CursorStore

TIMEOUT = 10


def when_state(source, state, reactor):
    """Fires when the source reaches C{state} (bounded)."""
    d = Deferred()
    original = source.set_state

    def set_state(s, error=None):
        original(s, error)
        if s == state and not d.called:
            d.callback(s)

    source.set_state = set_state
    if source.state == state:
        d.callback(state)
    return d.addTimeout(TIMEOUT, reactor)


async def take(queue, n, reactor):
    """The next C{n} posts from the queue (bounded wait)."""
    out = []
    while len(out) < n:
        d = queue.get(n - len(out))
        d.addTimeout(TIMEOUT, reactor)
        out.extend(await d)
    return out


@pytest.fixture
def served(reactor):
    """A fake X listening on a loopback port; everything started is stopped after the test."""
    fake = FakeX(reactor, keepalive=0.05)
    port = reactor.listenTCP(0, Site(fake), interface="127.0.0.1")
    state = {"fake": fake, "url": f"http://127.0.0.1:{port.getHost().port}", "sources": []}
    yield state
    for source in state["sources"]:
        if source.running:
            source.stopService()
    fake.stop()
    pytest_twisted.blockon(port.stopListening())


def make(served, reactor, **kw):
    queue = MemoryQueue(kw.pop("size", 10000), reactor=reactor)
    kw.setdefault("base_url", served["url"])
    source = XSource("x", queue, CursorStore(kw.pop("cursor", None)), Metrics(), "test-token", reactor=reactor, **kw)
    served["sources"].append(source)
    return source, queue


@pytest_twisted.ensureDeferred
async def test_search_over_loopback(served, reactor):
    """Recent search over a real socket: pages, then since_id on the next poll."""
    fake = served["fake"]
    for i in range(12):
        fake.publish(f"acme {i} 🚀")
    source, queue = make(served, reactor, queries=["acme"], max_results=10, poll_interval=1)
    source.startService()
    posts = await take(queue, 12, reactor)
    assert len({p.native_id for p in posts}) == 12 and posts[-1].cursor is not None
    fake.publish("acme new")
    (p,) = await take(queue, 1, reactor)
    assert p.text == "acme new" and fake.seen("search")[-1].arg("since_id") == fake.posts[11]["id"]
    assert source.state == CONNECTED


@pytest_twisted.ensureDeferred
async def test_stream_drop_and_resume_without_loss_or_duplicates(served, reactor):
    """A stream cut mid-way reconnects at once; posts from the gap come from search; nothing twice."""
    fake = served["fake"]
    source, queue = make(served, reactor, mode="stream", topics=[Topic(name="Acme", terms=("acme",))])
    source.startService()
    await fake.when_requests("stream", 1).addTimeout(TIMEOUT, reactor)
    await when_state(source, CONNECTED, reactor)
    for i in range(3):
        fake.publish(f"acme before {i}")
    before = await take(queue, 3, reactor)
    # Cut the connection in the middle of a line, then publish while nobody listens.
    fake.stream_raw(b'{"data": {"id": "19')
    fake.drop_streams()
    fake.publish("acme during 0")
    fake.publish("acme during 1")
    await fake.when_requests("stream", 2).addTimeout(TIMEOUT, reactor)
    during = await take(queue, 2, reactor)
    await fake.when_requests("search", 1).addTimeout(TIMEOUT, reactor)
    assert fake.seen("search")[0].arg("since_id") == before[-1].native_id
    assert len(fake.streams) == 1
    fake.publish("acme after")
    after = await take(queue, 1, reactor)
    assert [p.text for p in before] == [f"acme before {i}" for i in range(3)]
    assert sorted(p.text for p in during) == ["acme during 0", "acme during 1"]
    assert [p.text for p in after] == ["acme after"]
    assert len({p.native_id for p in before + during + after}) == 6
    assert json.loads(after[-1].cursor)["last_id"] == fake.posts[-1]["id"]
    assert [e for _, _, e, _ in source.store.letters] == ["truncated line at the end of the stream"]


@pytest_twisted.ensureDeferred
async def test_stream_keepalives_then_nothing_reconnects(served, reactor):
    """Keep-alives keep the stream up; when even they stop, the stall timer reconnects."""
    fake = served["fake"]
    source, queue = make(served, reactor, mode="stream", queries=["acme"], stall_timeout=0.3)
    source.startService()
    await fake.when_requests("stream", 1).addTimeout(TIMEOUT, reactor)
    await when_state(source, CONNECTED, reactor)
    fake.keepalives = False
    await fake.when_requests("stream", 2).addTimeout(TIMEOUT, reactor)
    assert "keep-alive" in source.last_error


@pytest_twisted.ensureDeferred
async def test_server_not_there_backs_off(reactor):
    """A base_url where nothing listens: connection refused, backing off, never a crash."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    queue = MemoryQueue(10, reactor=reactor)
    source = XSource(
        "x",
        queue,
        CursorStore(),
        Metrics(),
        "t",
        base_url=f"http://127.0.0.1:{port}",
        queries=["acme"],
        reactor=reactor,
    )
    source.startService()
    try:
        await when_state(source, BACKING_OFF, reactor)
        assert "refused" in source.last_error.lower()
    finally:
        await ensureDeferred(_stop(source))


async def _stop(source):
    await source.stopService()
