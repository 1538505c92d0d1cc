"""
The RSS collector against the fake feed server over real sockets on
127.0.0.1, on the real reactor: gzip, conditional requests, a 301 to
another path, and a server that is not there.
"""

import socket

import pytest
import pytest_twisted
from twisted.web.server import Site

from monitor.collect.base import BACKING_OFF, CONNECTED
from monitor.collect.rss import RSSSource
from monitor.metrics import Metrics
from monitor.queue.memory import MemoryQueue
from tests.fakes.rss import FakeFeeds
from tests.fakes.store import CursorStore
from tests.collect.test_x_loopback import TIMEOUT, take, when_state


@pytest.fixture
def served(reactor):
    """Fake feeds on a loopback port; sources started by the test are stopped after it."""
    fake = FakeFeeds(reactor)
    port = reactor.listenTCP(0, Site(fake), interface="127.0.0.1")
    state = {"fake": fake, "url": f"http://127.0.0.1:{port.getHost().port}", "sources": []}
    yield state
    for source in state["sources"]:
        if source.running:
            pytest_twisted.blockon(source.stopService() or _none())
    pytest_twisted.blockon(port.stopListening())


async def _none():
    return None


def make(served, reactor, paths, **kw):
    queue = MemoryQueue(10000, reactor=reactor)
    source = RSSSource(
        "news", queue, CursorStore(), Metrics(), feeds=[served["url"] + p for p in paths], reactor=reactor, **kw
    )
    served["sources"].append(source)
    return source, queue


@pytest_twisted.ensureDeferred
async def test_gzip_conditional_and_moved(served, reactor):
    """A gzipped feed is read; the next poll is a 304; a 301 moves the feed to its new path."""
    fake = served["fake"]
    fake.gzip = True
    fake.set_feed(
        "/a.rss", items=[{"title": f"Acme {i} 🚀", "guid": str(i), "description": "<p>hi</p>"} for i in range(30)]
    )
    fake.set_feed("/b.atom", kind="atom", items=[{"title": "Globex", "id": "urn:1", "summary": "<b>x</b>"}])
    fake.move("/b.atom", "/c.atom")
    source, queue = make(served, reactor, ["/a.rss", "/b.atom"], poll_interval=1)
    source.startService()
    posts = await take(queue, 31, reactor)
    assert {p.text for p in posts} >= {"Acme 0 🚀 — hi", "Globex — x"}
    assert fake.seen("/a.rss")[0].headers["accept-encoding"] == "gzip"
    await fake.when_requests("/a.rss", 2).addTimeout(TIMEOUT, reactor)
    assert fake.seen("/a.rss")[1].headers["if-none-match"] == '"v31"'
    await fake.when_requests("/c.atom", 2).addTimeout(TIMEOUT, reactor)
    assert len(fake.seen("/b.atom")) == 1 and source.state == CONNECTED
    assert queue.size() == 0


@pytest_twisted.ensureDeferred
async def test_feed_server_not_there(reactor):
    """A feed URL where nothing listens: backing off with the error, never a crash."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    queue = MemoryQueue(10, reactor=reactor)
    source = RSSSource("news", queue, CursorStore(), Metrics(), url=f"http://127.0.0.1:{port}/feed", reactor=reactor)
    source.startService()
    try:
        await when_state(source, BACKING_OFF, reactor)
        assert "refused" in source.last_error.lower()
    finally:
        await source.stopService()
