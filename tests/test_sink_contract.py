"""
What every L{ISink} promises, on every provider and test double: the live
channel (L{PushHub}), the alert engine, the cluster alone and on Redis,
the Redis feed of stored posts, and the pipeline tests' recording sink.

C{posts_stored} is called on the reactor with a batch of stored posts and
must not block: it returns nothing to wait for, raises for no batch of
stored posts (empty, unscored, several topics, far-away text), leaves the
posts as they were (every sink gets the same objects), is harmless before
the sink starts and after it stops (the bus may still deliver while the hub
stops), and passes the posts on to what it serves: the browsers, the
rules, the heartbeat's rate, the other hubs.
"""

from __future__ import annotations

import pytest_twisted
from twisted.internet.defer import maybeDeferred
from twisted.internet.task import Clock, deferLater
from zope.interface import implementer
from zope.interface.verify import verifyObject

from monitor.cluster import RedisCluster, SoloCluster
from monitor.interfaces import ISink
from monitor.model import Analysis
from monitor.queue.redis import parse_redis_url
from monitor.web.push import Filters, PushHub
from tests.alerts.helpers import T0, make_engine, post
from tests.cluster.conftest import prefix  # noqa: F401  (a fixture)
from tests.queue.conftest import redis_server  # noqa: F401  (a fixture)
from tests.test_pipeline import Sink as RecordingSink
from tests.web.test_push import Recorder

WAIT = 5  # seconds any one step may take on a real reactor

CRISIS = {"name": "crisis", "type": "keyword", "labels": ["crisis"], "cooldown": "10m"}


def batch(n=5, first=0):
    """Stored posts as the pipeline hands them on: analysed, matched to a topic, crisis-labelled."""
    return [post(first + i, T0 + first + i, labels=("crisis",), text=f"acme breach {first + i}") for i in range(n)]


def odd_batch():
    """Stored posts at the edges of what the store keeps."""
    unscored = post(100, T0 + 100, text="acme: texte dans une langue sans modèle")
    unscored.analysis = Analysis(0.0, 0.0, 1.0, 0.0, None, (), "unscored")
    several = post(101, T0 + 101, topic=("Acme", "Globex"), labels=("complaint", "question"), sentiment="negative")
    far = post(102, T0 + 102, text="acme 😡 " * 300 + "\u202e<script>x</script>", lat=-33.9, lon=151.2,
               url="https://social.example/@x/102", followers=10**9, verified=True)  # fmt: skip
    return [unscored, several, far]


@implementer(ISink)
class Counter:
    """A listener of another hub: what reached it."""

    def __init__(self):
        self.posts = []

    def posts_stored(self, posts):
        self.posts.extend(posts)


class Provider:
    """A sink, how to start and stop it, and how many posts reached what it serves."""

    async def start(self):
        await maybeDeferred(self.sink.startService)

    async def stop(self):
        if self.sink.running:
            await maybeDeferred(self.sink.stopService)

    async def close(self):
        await self.stop()


class Push(Provider):
    def __init__(self, reactor, request):
        self.clock = Clock()
        self.sink = PushHub(self.clock, queue_limit=10_000)
        self.client = Recorder(self.sink)
        self.sink.add(self.client)
        self.client.filters = Filters(kinds=["post"])

    async def reached(self, expect=0):
        self.clock.advance(1)
        return len([e for e in self.client.envelopes() if e["type"] == "post"])


class Alerts(Provider):
    def __init__(self, reactor, request):
        self.clock = Clock()
        self.clock.advance(T0)
        self.sink = make_engine(self.clock, [CRISIS], start=False)

    async def reached(self, expect=0):
        self.clock.advance(0)
        return sum(n for (n,) in self.sink.store.store.rows("SELECT posts FROM alert_incidents"))


class Solo(Provider):
    def __init__(self, reactor, request):
        self.clock = Clock()
        self.sink = SoloCluster("hub-x", self.clock)

    async def start(self):
        await super().start()
        await self.sink.hubs()  # the rate counts from here

    async def reached(self, expect=0):
        self.clock.advance(1)
        (me,) = await self.sink.hubs()
        return round(me["posts_per_second"])


class Redis(Provider):
    """This hub and another on one redis-server: what this hub stored reaches the other's listeners."""

    def __init__(self, reactor, request):
        self.reactor = reactor
        where = parse_redis_url(request.getfixturevalue("redis_server").url)
        name = request.getfixturevalue("prefix")
        self.cluster = RedisCluster(where, "hub-x", reactor, ttl=0.9, prefix=name)
        self.other = RedisCluster(where, "hub-y", reactor, ttl=0.9, prefix=name)
        self.heard = Counter()
        self.other.add_listener(self.heard)
        self.other.startService()
        self.sink = self.cluster

    async def start(self):
        await super().start()
        await self.cluster.feed.when_subscribed().addTimeout(WAIT, self.reactor)
        await self.other.feed.when_subscribed().addTimeout(WAIT, self.reactor)

    async def reached(self, expect=0):
        # Pub/sub has no answer to wait for: until the posts expected are
        # there, and a little longer for any that should not be.
        for _ in range(int(WAIT / 0.02)):
            if len(self.heard.posts) >= expect:
                break
            await deferLater(self.reactor, 0.02, lambda: None)
        await deferLater(self.reactor, 0.1, lambda: None)
        return len(self.heard.posts)

    async def close(self):
        await super().close()
        await maybeDeferred(self.other.stopService)


class Feed(Redis):
    """The feed alone (what L{RedisCluster} hands a stored batch to)."""

    def __init__(self, reactor, request):
        super().__init__(reactor, request)
        self.sink = self.cluster.feed

    async def start(self):
        await maybeDeferred(self.cluster.startService)
        await self.cluster.feed.when_subscribed().addTimeout(WAIT, self.reactor)
        await self.other.feed.when_subscribed().addTimeout(WAIT, self.reactor)

    async def stop(self):
        if self.cluster.running:
            await maybeDeferred(self.cluster.stopService)


class Double(Provider):
    """The pipeline tests' recording sink (not a service)."""

    def __init__(self, reactor, request):
        self.sink = RecordingSink()

    async def start(self):
        pass

    async def stop(self):
        pass

    async def reached(self, expect=0):
        return len(self.sink.seen)


KINDS = {"push": Push, "alerts": Alerts, "solo": Solo, "redis": Redis, "feed": Feed, "double": Double}


@pytest_twisted.async_yield_fixture(params=list(KINDS))
async def provider(request, reactor):
    """A sink of one provider, not yet started; closed after the test."""
    p = KINDS[request.param](reactor, request)
    yield p
    await p.close()


@pytest_twisted.ensureDeferred
async def test_provides_the_interface(provider):
    """verifyObject: posts_stored is there with its signature."""
    assert verifyObject(ISink, provider.sink)


@pytest_twisted.ensureDeferred
async def test_stored_posts_reach_what_it_serves_and_nothing_waits(provider):
    """Each post of each batch reaches the sink's audience; posts_stored returns nothing to wait for."""
    await provider.start()
    assert provider.sink.posts_stored(batch(5)) is None
    assert provider.sink.posts_stored(batch(3, first=5)) is None
    assert await provider.reached(8) == 8


@pytest_twisted.ensureDeferred
async def test_an_empty_batch_is_nothing(provider):
    """An empty batch is taken quietly and reaches nobody."""
    await provider.start()
    assert provider.sink.posts_stored([]) is None
    assert await provider.reached() == 0


@pytest_twisted.ensureDeferred
async def test_posts_at_the_edges_are_taken_and_left_as_they_were(provider):
    """Unscored posts, several topics, long odd text: taken, and not changed (the other sinks get the same objects)."""
    await provider.start()
    posts = odd_batch() + batch(2, first=200)
    before = [p.to_dict() for p in posts]
    assert provider.sink.posts_stored(posts) is None
    await provider.reached(len(posts))
    assert [p.to_dict() for p in posts] == before


@pytest_twisted.ensureDeferred
async def test_harmless_before_start_and_after_stop(provider):
    """A batch before the sink starts or after it stops raises nothing (the bus may deliver while the hub stops)."""
    assert provider.sink.posts_stored(batch(2)) is None
    await provider.start()
    await provider.stop()
    assert provider.sink.posts_stored(batch(2, first=2)) is None


def test_every_sink_of_the_hub_is_here():
    """Every class in monitor/ declared to provide ISink has a provider above (a new sink joins the suite)."""
    import re

    from tests.conftest import ROOT

    declared = set()
    for path in (ROOT / "monitor").rglob("*.py"):
        declared.update(re.findall(r"@implementer\([^)]*\bISink\b[^)]*\)\s*class (\w+)", path.read_text()))
    covered = {"PushHub", "AlertEngine", "SoloCluster", "RedisCluster", "StoredFeed"}
    assert declared == covered
