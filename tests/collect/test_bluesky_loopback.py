"""
The Bluesky collector against the fake Jetstream and AppView through real
sockets on 127.0.0.1 (port 0, the real reactor, short bounded waits).
"""

import socket

import pytest_twisted
from twisted.internet.defer import ensureDeferred
from twisted.internet.task import deferLater

from monitor.collect.base import BACKING_OFF, CONNECTED
from monitor.collect.bluesky import BlueskySource
from monitor.metrics import Metrics
from monitor.queue.memory import MemoryQueue
from tests.fakes.jetstream import FakeJetstream
from tests.fakes.store import CursorStore

ALICE = "did:plc:alice000000000000000000"
BOB = "did:plc:bob00000000000000000000"


async def wait_until(reactor, check, seconds=5.0, step=0.02):
    """Poll C{check} on the real reactor until it is true, for at most C{seconds}."""
    for _ in range(int(seconds / step)):
        if check():
            return
        await deferLater(reactor, step, lambda: None)
    raise AssertionError(f"not true within {seconds}s")


class Live:
    """A fake Jetstream listening on loopback and a collector pointed at it."""

    def __init__(self, reactor, **kw):
        self.reactor = reactor
        self.fake = FakeJetstream(reactor, start_us=int(reactor.seconds() * 1_000_000))
        self.port = reactor.listenTCP(0, self.fake.site(), interface="127.0.0.1")
        base = f"127.0.0.1:{self.port.getHost().port}"
        self.queue = MemoryQueue(10000, reactor=reactor)
        self.store = CursorStore()
        kw.setdefault("url", f"ws://{base}/subscribe")
        kw.setdefault("appview_url", f"http://{base}")
        self.source = BlueskySource("bsky", self.queue, self.store, Metrics(), reactor=reactor, **kw)
        self.posts = []

    def take(self):
        if self.queue.size():
            self.queue.get(100000).addCallback(self.posts.extend)
        return self.posts

    async def close(self):
        await self.source.stopService()
        self.fake.disconnect_all()
        await self.port.stopListening()


@pytest_twisted.ensureDeferred
async def test_stream_profiles_and_resume_over_real_sockets(reactor):
    """Posts arrive over a real WebSocket with followers from the real AppView; a drop resumes without loss."""
    live = Live(reactor, profile_wait=2.0, rewind=5.0)
    live.source.startService()
    try:
        await wait_until(reactor, lambda: live.source.state == CONNECTED)
        live.fake.drop_after = 3
        for i in range(8):
            live.fake.post(ALICE if i % 2 else BOB, f"3k{i:03d}", f"post {i} about acme 🚀")
        await wait_until(reactor, lambda: len(live.take()) >= 8)
        posts = live.take()
        assert [p.text for p in posts] == [f"post {i} about acme 🚀" for i in range(8)]
        assert len({p.uid for p in posts}) == 8
        assert all(p.author.endswith(".bsky.social") and p.author_followers is not None for p in posts)
        assert len(live.fake.requests) == 2 and "cursor" in live.fake.requests[1]
        assert all(len(actors) <= 25 for actors in live.fake.appview_requests)
        assert live.source.state == CONNECTED and live.source.malformed_count == 0
    finally:
        await live.close()


@pytest_twisted.ensureDeferred
async def test_late_profiles_over_http_do_not_hold_posts(reactor):
    """An AppView slower than profile_wait: the post is queued after the bound, without followers."""
    live = Live(reactor, profile_wait=0.3)
    live.fake.appview_delay = 3.0
    live.source.startService()
    try:
        await wait_until(reactor, lambda: live.source.state == CONNECTED)
        started = reactor.seconds()
        live.fake.post(ALICE, "3k1", "hello")
        await wait_until(reactor, lambda: live.take(), seconds=2.0)
        (post,) = live.take()
        assert 0.25 <= reactor.seconds() - started < 2.0
        assert post.author == ALICE and post.author_followers is None
    finally:
        await live.close()


@pytest_twisted.ensureDeferred
async def test_appview_rate_limit_over_http(reactor):
    """A 429 from the AppView (with its own headers) pauses lookups; posts keep flowing."""
    live = Live(reactor, profile_wait=1.0)
    live.fake.appview_fail = [429]
    live.source.startService()
    try:
        await wait_until(reactor, lambda: live.source.state == CONNECTED)
        live.fake.post(ALICE, "3k1", "one")
        await wait_until(reactor, lambda: live.take())
        live.fake.post(BOB, "3k2", "two")
        await wait_until(reactor, lambda: len(live.take()) == 2, seconds=2.0)
        assert [p.author_followers for p in live.take()] == [None, None]
        assert len(live.fake.appview_requests) == 1
        assert "pausing them for 30s" in live.source.last_error
    finally:
        await live.close()


@pytest_twisted.ensureDeferred
async def test_server_that_does_not_exist(reactor):
    """Connection refused: the source backs off and says why, and stops cleanly; nothing crashes."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    source = BlueskySource(
        "bsky",
        MemoryQueue(10, reactor=reactor),
        CursorStore(),
        Metrics(),
        url=f"ws://127.0.0.1:{port}/subscribe",
        appview_url="",
        reactor=reactor,
    )
    source.startService()
    try:
        await wait_until(reactor, lambda: source.state == BACKING_OFF)
        assert "refused" in source.last_error.lower()
        assert source.status()["resume_at"] is not None
    finally:
        await ensureDeferred(_stop(source))
    assert source.state == "stopped"


async def _stop(source):
    await source.stopService()
