"""
What every L{ISource} promises, for every kind of L{SOURCE_KINDS}, each
built from its checked C{[[sources]]} table as the hub builds it
(L{make_source}) and pointed at a local server of the real wire format
(tests/fakes: Jetstream, Mastodon, X, RSS/Atom) or at a file (replay),
on the real reactor over loopback.

C{name} and C{kind} are the table's; C{status()} is a JSON-ready dict with
at least the keys the interface names, before, during and after running;
once started, the source puts L{Post}s of its own name on the queue, each
with its uid, text and time, the last of a read with a position
(C{cursor}, all but the demo), counts them in C{status()} and waits when
the queue is full; stopping fires, reports C{stopped} and puts nothing
more on the queue; started again from the last position it gave, it puts
the new posts there and none from before that position (the post at it
may come again: delivery is at least once, the store ignores a uid it has).
"""

from __future__ import annotations

import json

import pytest_twisted
from twisted.internet.defer import maybeDeferred
from twisted.internet.task import deferLater
from twisted.web.server import Site
from zope.interface.verify import verifyObject

from monitor.collect import make_source
from monitor.collect.base import CONNECTED, STOPPED
from monitor.collect.kinds import SOURCE_KINDS
from monitor.config import parse_config
from monitor.interfaces import ISource
from monitor.metrics import Metrics
from monitor.model import Enriched, Post, Rejected
from monitor.queue.memory import MemoryQueue
from tests.fakes.jetstream import FakeJetstream
from tests.fakes.mastodon import FakeMastodon
from tests.fakes.rss import FakeFeeds
from tests.fakes.store import CursorStore
from tests.fakes.x import FakeX

WAIT = 10  # seconds any one step may take
N = 4  # posts each source is given
STATUS_KEYS = {"name", "kind", "state", "last_error", "last_post_at", "posts", "malformed"}
BOB = "did:plc:bob00000000000000000000"


async def eventually(reactor, check, seconds=WAIT):
    for _ in range(int(seconds / 0.02)):
        if check():
            return
        await deferLater(reactor, 0.02, lambda: None)
    raise AssertionError(f"not true within {seconds}s")


class World:
    """A source kind's table and the server (or file) it reads."""

    #: Whether each post carries a position the source resumes from.
    positioned = True

    def __init__(self, reactor, tmp_path):
        self.reactor = reactor
        self.tmp_path = tmp_path
        self.ports = []

    def listen(self, site):
        port = self.reactor.listenTCP(0, site, interface="127.0.0.1")
        self.ports.append(port)
        return f"127.0.0.1:{port.getHost().port}"

    async def ready(self, source):
        """Called once the source runs; then C{publish} gives it N posts."""

    def publish(self):
        pass

    def more(self):
        """Give the source N posts it has not seen; False where it reads nothing new (a replay without follow)."""
        return False

    async def close(self):
        for port in self.ports:
            await port.stopListening()


class Replay(World):
    def table(self):
        path = self.tmp_path / "posts.jsonl"
        path.write_text("".join(json.dumps({"id": i, "text": f"acme post {i} ✓", "author": "a",
                                            "created_at": 1.7e9 + i}) + "\n" for i in range(N)))  # fmt: skip
        return {"kind": "replay", "name": "archive", "path": str(path)}


class Demo(World):
    positioned = False

    def table(self):
        return {"kind": "demo", "name": "demo", "rate": 50.0, "seed": 7}


class Bluesky(World):
    def table(self):
        self.fake = FakeJetstream(self.reactor, start_us=int(self.reactor.seconds() * 1_000_000))
        base = self.listen(self.fake.site())
        return {"kind": "bluesky", "name": "bsky", "url": f"ws://{base}/subscribe", "appview_url": f"http://{base}",
                "rewind": 0.0}  # fmt: skip

    async def ready(self, source):
        await eventually(self.reactor, lambda: source.state == CONNECTED)

    def publish(self, first=0):
        for i in range(first, first + N):
            self.fake.post(BOB, f"3k{i:03d}", f"post {i} about acme 🚀")

    def more(self):
        self.publish(first=100)
        return True

    async def close(self):
        self.fake.disconnect_all()
        await super().close()


class Mastodon(World):
    def table(self):
        self.fake = FakeMastodon(self.reactor)
        self.fake.base_url = "http://" + self.listen(self.fake.site())
        for i in range(N):
            self.fake.status(f"<p>#acme is down? {i} 😩</p>", tags=["acme"])
        return {"kind": "mastodon", "name": "masto", "instance": self.fake.base_url, "timelines": ["#acme"],
                "poll_interval": 1.0}  # fmt: skip

    def more(self):
        for i in range(N):
            self.fake.status(f"<p>#acme new {i}</p>", tags=["acme"])
        return True

    async def close(self):
        self.fake.drop_streams()
        await super().close()


class RSS(World):
    def table(self):
        self.fake = FakeFeeds(self.reactor)
        base = self.listen(Site(self.fake))
        self.fake.set_feed("/a.rss", items=[{"title": f"Acme {i} 🚀", "guid": str(i)} for i in range(N)])
        return {"kind": "rss", "name": "news", "url": f"http://{base}/a.rss", "poll_interval": 1.0}

    def more(self):
        for i in range(N):
            self.fake.add_item("/a.rss", title=f"Acme new {i}", guid=f"new-{i}")
        return True


class XSearch(World):
    mode = "search"

    def table(self):
        self.fake = FakeX(self.reactor, keepalive=0.05)
        base = self.listen(Site(self.fake))
        if self.mode == "search":
            for i in range(N):
                self.fake.publish(f"acme {i} 🚀")
        return {"kind": "x", "name": "x", "bearer_token": "test-token", "base_url": f"http://{base}",
                "mode": self.mode, "poll_interval": 1.0, "max_results": 10}  # fmt: skip

    def more(self):
        for i in range(N):
            self.fake.publish(f"acme new {i}")
        return True

    async def close(self):
        self.fake.stop()
        await super().close()


class XStream(XSearch):
    mode = "stream"

    async def ready(self, source):
        await self.fake.when_requests("stream", 1).addTimeout(WAIT, self.reactor)
        await eventually(self.reactor, lambda: source.state == CONNECTED)

    def publish(self):
        for i in range(N):
            self.fake.publish(f"acme {i} 🚀")


WORLDS = {"replay": Replay, "demo": Demo, "bluesky": Bluesky, "mastodon": Mastodon, "rss": RSS,
          "x-search": XSearch, "x-stream": XStream}  # fmt: skip


class Running:
    """One source built from its table, its queue and store."""

    def __init__(self, world, cursor=None):
        self.world = world
        self.spec = world.table() if cursor is None else world.spec
        world.spec = self.spec
        config = parse_config({"topics": [{"name": "Acme", "terms": ["acme"]}], "sources": [self.spec]}, environ={})
        (self.table,) = config.sources
        self.queue = MemoryQueue(10_000, reactor=world.reactor)
        self.store = CursorStore(cursor)
        self.source = make_source(self.table, self.queue, self.store, Metrics(), config.topics, world.reactor)
        self.items = []

    def take(self):
        """The posts taken from the queue so far (besides them: dead letters and late profiles)."""
        if self.queue.size():
            self.queue.get(100_000).addCallback(self.items.extend)
        assert all(isinstance(i, (Post, Rejected, Enriched)) for i in self.items)
        return [i for i in self.items if isinstance(i, Post)]

    async def collect(self, n=N):
        self.source.startService()
        await self.world.ready(self.source)
        self.world.publish()
        await eventually(self.world.reactor, lambda: len(self.take()) >= n)
        return self.take()


@pytest_twisted.async_yield_fixture(params=list(WORLDS))
async def running(request, reactor, tmp_path):
    world = WORLDS[request.param](reactor, tmp_path)
    r = Running(world)
    yield r
    if r.source.running:
        await maybeDeferred(r.source.stopService)
    await world.close()


@pytest_twisted.async_yield_fixture(params=[name for name, world in WORLDS.items() if world.positioned])
async def positioned(request, reactor, tmp_path):
    """L{running} over the kinds that keep a position (the demo invents its posts: it has none)."""
    world = WORLDS[request.param](reactor, tmp_path)
    r = Running(world)
    yield r
    if r.source.running:
        await maybeDeferred(r.source.stopService)
    await world.close()


def test_every_kind_is_here():
    """Every kind of the table, and each of its variants, has a world above."""
    kinds = {name.split("-")[0] for name in WORLDS}
    assert kinds == set(SOURCE_KINDS)


def check_status(status, running):
    assert set(status) >= STATUS_KEYS
    assert status["name"] == running.table["name"] and status["kind"] == running.table["kind"]
    assert isinstance(status["state"], str) and isinstance(status["posts"], int)
    assert isinstance(status["malformed"], int)
    json.dumps(status)


@pytest_twisted.ensureDeferred
async def test_provides_the_interface_with_its_tables_name_and_kind(running):
    """verifyObject; name and kind are the table's; status() has the interface's keys before start."""
    source = running.source
    assert verifyObject(ISource, source)
    assert (source.name, source.kind) == (running.table["name"], running.table["kind"])
    status = source.status()
    check_status(status, running)
    assert status["posts"] == 0 and status["last_post_at"] is None


@pytest_twisted.ensureDeferred
async def test_puts_its_posts_on_the_queue_and_counts_them(running):
    """Started, it puts Posts of its own name on the queue, with uid, text, time and position; status counts them."""
    posts = await running.collect()
    assert {p.source for p in posts} == {running.table["name"]}
    assert len({p.uid for p in posts}) == len(posts)
    assert all(p.text and isinstance(p.created_at, float) and p.received_at for p in posts)
    # A position comes with the last post of each read (the pipeline commits the latest one it saw).
    assert all(p.cursor is None or isinstance(p.cursor, str) for p in posts)
    if running.world.positioned:
        assert posts[-1].cursor
    status = running.source.status()
    check_status(status, running)
    assert status["posts"] >= len(posts) and status["last_post_at"] is not None and status["last_error"] is None


@pytest_twisted.ensureDeferred
async def test_stops_and_puts_nothing_more(running, reactor):
    """stopService fires, the state is stopped, and nothing more reaches the queue."""
    await running.collect()
    await maybeDeferred(running.source.stopService).addTimeout(WAIT, reactor)
    assert running.source.state == STOPPED
    check_status(running.source.status(), running)
    count = len(running.take()) + running.queue.size()
    running.world.publish()
    await deferLater(reactor, 0.3, lambda: None)
    assert len(running.take()) == count


@pytest_twisted.ensureDeferred
async def test_waits_for_a_full_queue(running, reactor):
    """With a queue of one, the source waits for room instead of dropping posts or growing a buffer."""
    running.queue = running.source.queue = MemoryQueue(1, reactor=reactor)
    running.source.startService()
    await running.world.ready(running.source)
    running.world.publish()
    await eventually(reactor, lambda: running.queue.size() == 1)
    await deferLater(reactor, 0.2, lambda: None)
    assert running.queue.size() == 1 and running.queue.waiting_puts() <= 1
    got = []
    while len(got) < N:
        batch = await running.queue.get(10).addTimeout(WAIT, reactor)
        got.extend(batch)
    assert len({p.uid for p in got}) == len(got) >= N


@pytest_twisted.ensureDeferred
async def test_started_again_from_its_position_it_gives_only_what_is_new(positioned, reactor):
    """Started from the last position it gave, it gives the new posts and none from before that position."""
    running = positioned
    old = await running.collect()
    at = [p for p in old if p.cursor][-1]
    cursor = at.cursor
    await maybeDeferred(running.source.stopService)
    again = Running(running.world, cursor=cursor)
    again.source.startService()
    try:
        await running.world.ready(again.source)
        more = running.world.more()
        if more:
            await eventually(reactor, lambda: len(again.take()) >= N)
        await deferLater(reactor, 0.3, lambda: None)
        new = again.take()
        # At least once: the post at the position may come again (the store ignores a uid it has).
        again_given = {p.uid for p in new} & {p.uid for p in old}
        assert again_given <= {at.uid}
        assert len(new) - len(again_given) == (N if more else 0)
    finally:
        await maybeDeferred(again.source.stopService)
