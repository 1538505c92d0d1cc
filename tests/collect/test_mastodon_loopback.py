"""
The Mastodon collector against the fake instance through real sockets on
127.0.0.1 (port 0, the real reactor, short bounded waits).
"""

import socket

import pytest_twisted

from monitor.collect.base import BACKING_OFF, CONNECTED
from monitor.collect.mastodon import MastodonSource
from monitor.metrics import Metrics
from monitor.queue.memory import MemoryQueue
from tests.fakes.mastodon import FakeMastodon
from tests.collect.test_bluesky_loopback import wait_until
from tests.fakes.store import CursorStore

TAG = '<a href="https://m.test/tags/acme" class="mention hashtag" rel="tag">#<span>acme</span></a>'


class Live:
    """A fake instance listening on loopback and a collector pointed at it."""

    def __init__(self, reactor, timelines=("#acme",), fake_token=None, **kw):
        self.reactor = reactor
        self.fake = FakeMastodon(reactor, token=fake_token)
        self.port = reactor.listenTCP(0, self.fake.site(), interface="127.0.0.1")
        self.fake.base_url = f"http://127.0.0.1:{self.port.getHost().port}"
        self.queue = MemoryQueue(10000, reactor=reactor)
        self.source = MastodonSource(
            "masto", self.queue, CursorStore(), Metrics(), self.fake.base_url, list(timelines), reactor=reactor, **kw
        )
        self.posts = []

    def take(self):
        if self.queue.size():
            self.queue.get(100000).addCallback(self.posts.extend)
        return self.posts

    def acme(self, n, **kw):
        return [self.fake.status(f"<p>{TAG} is down? {i} 😩</p>", tags=["acme"], **kw) for i in range(n)]

    async def close(self):
        await self.source.stopService()
        self.fake.drop_streams()
        await self.port.stopListening()


@pytest_twisted.ensureDeferred
async def test_polling_over_real_http(reactor):
    """Polling pages with min_id over real HTTP, reads the rate-limit headers, and keeps up with new statuses."""
    live = Live(reactor, limit=3, poll_interval=0.2)
    old = live.acme(4)
    live.source.startService()
    try:
        await wait_until(reactor, lambda: len(live.take()) == 3)
        new = live.acme(5)
        await wait_until(reactor, lambda: len(live.take()) == 8)
        assert [p.native_id for p in live.take()] == [s["uri"] for s in old[1:] + new]
        assert live.source.state == CONNECTED and live.source.rate_limit_remaining < 300
        assert live.take()[-1].text == "#acme is down? 4 😩"
    finally:
        await live.close()


@pytest_twisted.ensureDeferred
async def test_streaming_over_real_sse_with_drop_and_stall(reactor):
    """Statuses stream live over SSE; a dropped and a stalled stream reconnect and catch up without loss."""
    live = Live(reactor, fake_token="tok", token="tok", stall_timeout=1.0, poll_interval=60.0)
    live.fake.heartbeat = 0.2
    live.source.startService()
    try:
        await wait_until(reactor, lambda: len(live.fake.streams) == 1 and live.source.state == CONNECTED)
        first = live.acme(2)
        await wait_until(reactor, lambda: len(live.take()) == 2, seconds=1.0)  # far sooner than a poll
        live.fake.drop_streams()
        missed = live.acme(2, push=False)
        await wait_until(reactor, lambda: len(live.take()) == 4)
        await wait_until(reactor, lambda: len(live.fake.streams) == 1)
        live.fake.hang = True  # heartbeats stop too
        more = live.acme(1)
        await wait_until(reactor, lambda: "stalled" in (live.source.last_error or ""), seconds=3.0)
        live.fake.hang = False
        await wait_until(reactor, lambda: len(live.take()) == 5)
        uris = [p.native_id for p in live.take()]
        assert uris == [s["uri"] for s in first + missed + more]
    finally:
        await live.close()


@pytest_twisted.ensureDeferred
async def test_refused_stream_falls_back_to_polling_over_real_http(reactor):
    """A token the instance refuses for streaming (401): the timeline is polled instead."""
    live = Live(reactor, fake_token="theirs", token="mine", poll_interval=0.2)
    live.source.startService()
    try:
        await wait_until(reactor, lambda: live.source.status()["mode"] == "polling")
        s = live.acme(1)[0]
        await wait_until(reactor, lambda: [p.native_id for p in live.take()] == [s["uri"]])
        assert "401" in live.source.last_error
    finally:
        await live.close()


@pytest_twisted.ensureDeferred
async def test_instance_that_does_not_exist(reactor):
    """Connection refused: backing off with the reason, stopping cleanly."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    source = MastodonSource(
        "masto",
        MemoryQueue(10, reactor=reactor),
        CursorStore(),
        Metrics(),
        f"http://127.0.0.1:{port}",
        ["#acme"],
        reactor=reactor,
    )
    source.startService()
    try:
        await wait_until(reactor, lambda: source.state == BACKING_OFF)
        assert "refused" in source.last_error.lower()
    finally:
        await source.stopService()
