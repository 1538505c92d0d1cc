"""
Two hubs on one real redis-server: what hub A stores reaches the live
WebSocket clients of hub B once (and A's own clients once, not echoed
back); heartbeats list both hubs with their leases; a slow Redis costs
dropped live messages, never memory.
"""

import json

import pytest_twisted
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.task import deferLater
from twisted.web.resource import Resource
from twisted.web.server import Site

from monitor.cluster import RedisCluster, SoloCluster
from monitor.cluster.feed import StoredFeed, decode_batch, encode_batch
from monitor.queue.redis import parse_redis_url
from monitor.web.push import PushHub
from tests.cluster.test_leases import Recorded, eventually
from tests.web.test_channel import Users, dial
from tests.web.test_push import make_post

WAIT = 5.0


def cluster(redis_server, name, reactor, prefix, ttl=3.0):
    return RedisCluster(parse_redis_url(redis_server.url), name, reactor, ttl=ttl, prefix=prefix)


async def live_hub(reactor, cluster):
    """A hub's live channel on a real port, fed by its pipeline and by the cluster."""
    push = PushHub(reactor, users=Users(), queue_limit=50, interval=0.01, stall_timeout=1.0, ping_interval=0)
    cluster.add_listener(push)
    root = Resource()
    root.putChild(b"ws", push.resource)
    push.startService()
    port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(Site(root))
    return push, port


async def subscribed_client(reactor, port):
    client, status = await dial(reactor, port.getHost().port)
    assert status == 101
    await client.wait_for(lambda es: any(e["type"] == "hello" for e in es)).addTimeout(WAIT, reactor)
    client.send_json({"type": "subscribe", "kinds": ["post"]})
    await client.wait_for(lambda es: any(e["type"] == "subscribed" for e in es)).addTimeout(WAIT, reactor)
    return client


def stored(push, cluster, posts):
    """What the pipeline does after a batch is stored: every sink gets it."""
    push.posts_stored(posts)
    cluster.posts_stored(posts)


def native_ids(client):
    return [e["data"]["native_id"] for e in client.envelopes if e["type"] == "post"]


@pytest_twisted.ensureDeferred
async def test_a_post_stored_by_hub_a_reaches_hub_b_clients_once(reactor, redis_server, prefix):
    """A's stored post reaches a WebSocket client of B once, and A's own client once (no echo)."""
    a, b = cluster(redis_server, "hub-a", reactor, prefix), cluster(redis_server, "hub-b", reactor, prefix)
    a.startService()
    b.startService()
    push_a, port_a = await live_hub(reactor, a)
    push_b, port_b = await live_hub(reactor, b)
    clients = []
    try:
        await a.feed.when_subscribed().addTimeout(WAIT, reactor)
        await b.feed.when_subscribed().addTimeout(WAIT, reactor)
        on_a, on_b = await subscribed_client(reactor, port_a), await subscribed_client(reactor, port_b)
        clients += [on_a, on_b]
        hostile = make_post(1)
        hostile.text = '<script>alert("x")</script> acme'
        stored(push_a, a, [hostile])
        got = await on_b.wait_for(lambda es: "1" in native_ids(on_b)).addTimeout(WAIT, reactor)
        post = next(e["data"] for e in got if e["type"] == "post")
        assert post["text"] == hostile.text  # as stored: escaping is the page's job
        assert post["topics"] == ["Acme"] and post["sentiment"]["label"] == "negative"
        # Then a post B stores, which reaches A: by then anything doubled
        # or echoed from the first would have arrived too.
        stored(push_b, b, [make_post(2)])
        await on_a.wait_for(lambda es: "2" in native_ids(on_a)).addTimeout(WAIT, reactor)
        await on_b.wait_for(lambda es: "2" in native_ids(on_b)).addTimeout(WAIT, reactor)
        stored(push_a, a, [make_post(3)])
        await on_b.wait_for(lambda es: "3" in native_ids(on_b)).addTimeout(WAIT, reactor)
        await on_a.wait_for(lambda es: "3" in native_ids(on_a)).addTimeout(WAIT, reactor)
        assert native_ids(on_b) == ["1", "2", "3"]
        assert native_ids(on_a) == ["1", "2", "3"]
        assert a.feed.received == 1 and b.feed.received == 2
    finally:
        for c in clients:
            c.transport.loseConnection()
            await c.closed.addTimeout(WAIT, reactor)
        for push, port in ((push_a, port_a), (push_b, port_b)):
            push.stopService()
            await port.stopListening()
        await a.stopService()
        await b.stopService()


@pytest_twisted.ensureDeferred
async def test_heartbeats_list_the_live_hubs_and_their_leases(reactor, redis_server, prefix):
    """Each hub's heartbeat says its name, pid, leases and rate; a stopped hub leaves the list at once."""
    a, b = cluster(redis_server, "hub-a", reactor, prefix, ttl=0.6), cluster(redis_server, "hub-b", reactor, prefix)
    service = Recorded()
    leased = a.leased("collector:inbox", service)
    a.startService()
    b.startService()
    try:
        leased.startService()
        await eventually(reactor, lambda: leased.holding)
        a.posts_stored([make_post(i) for i in range(30)])
        await a.beat()
        hubs = await b.hubs()
        assert [h["name"] for h in hubs] == ["hub-a", "hub-b"]
        assert [h["this"] for h in hubs] == [False, True]
        beat = hubs[0]
        assert beat["leases"] == ["collector:inbox"] and hubs[1]["leases"] == []
        assert beat["posts_per_second"] > 0
        assert beat["pid"] > 0 and beat["host"] and beat["started"].endswith("Z") and beat["last_seen"].endswith("Z")
        assert await b.holders() == {"collector:inbox": "hub-a"}
        await leased.stopService()
        await a.beat()
        assert await b.holders() == {}
    finally:
        await a.stopService()
    assert [h["name"] for h in await b.hubs()] == ["hub-b"]
    await b.stopService()


@pytest_twisted.ensureDeferred
async def test_a_dead_hubs_heartbeat_expires(reactor, redis_server, prefix):
    """A hub that stops beating (killed) drops out of the list after the ttl."""
    a, b = cluster(redis_server, "hub-a", reactor, prefix, ttl=0.5), cluster(redis_server, "hub-b", reactor, prefix)
    a.startService()
    b.startService()
    try:
        await a.beat()
        await b.beat()
        assert len(await b.hubs()) == 2
        a._loop.stop()  # killed: no more heartbeats, nothing cleaned up
        deadline = reactor.seconds() + WAIT
        while len(await b.hubs()) != 1:
            assert reactor.seconds() < deadline
            await deferLater(reactor, 0.05)
        assert redis_server.cli("ZSCORE", f"{prefix}:hubs", "hub-a") == ""
    finally:
        await a.stopService()
        await b.stopService()


def test_solo_cluster_runs_everything_and_lists_itself():
    """With the memory queue the hub is alone: a leased service is itself; the hubs are this one."""
    from twisted.internet.task import Clock

    clock = Clock()
    solo = SoloCluster("hub-x", clock)
    service = Recorded()
    assert solo.leased("collector:inbox", service) is service
    solo.posts_stored([make_post(i) for i in range(10)])
    clock.advance(2)
    hubs = []
    solo.hubs().addCallback(hubs.extend)
    assert [(h["name"], h["this"], h["leases"], h["posts_per_second"]) for h in hubs] == [
        ("hub-x", True, ["collector:inbox"], 5.0)
    ]


class Hung:
    """A Redis that takes every command and answers none."""

    def __init__(self):
        self.sent = []

    def execute_command(self, *args):
        self.sent.append(args)
        return Deferred()


def test_a_slow_redis_drops_live_batches_instead_of_growing():
    """With PUBLISHes unanswered, at most max_in_flight are outstanding; the rest are counted as dropped."""
    redis = Hung()
    feed = StoredFeed(redis, {"path": "/nonexistent"}, "c", "hub-a", reactor=None, max_in_flight=4, chunk=10)
    feed.running = True  # publishing only: no subscription needed
    for i in range(100):
        feed.posts_stored([make_post(n) for n in range(i * 25, i * 25 + 25)])  # 3 messages each
    assert len(redis.sent) == 4 and feed.in_flight == 4
    assert feed.dropped == 100 * 25 - (10 + 10 + 5 + 10)  # whole messages: 10, 10, 5 and 10 went out
    hub, posts = decode_batch(redis.sent[0][2])
    assert hub == "hub-a" and [p.native_id for p in posts] == [str(n) for n in range(10)]


def test_unreadable_and_own_messages_are_ignored():
    """A message that is not a batch is counted and ignored; this hub's own batches are not handed on."""
    feed = StoredFeed(Hung(), {"path": "/x"}, "c", "hub-a", reactor=None)
    got = []

    class Sink:
        def posts_stored(self, posts):
            got.extend(posts)

    from zope.interface import directlyProvides

    from monitor.interfaces import ISink

    sink = Sink()
    directlyProvides(sink, ISink)
    feed.add_listener(sink)
    for bad in ("not json", "[]", json.dumps({"hub": 1, "posts": []}), json.dumps({"hub": "b", "posts": [{"x": 1}]})):
        feed.on_message(bad)
    assert feed.unreadable == 4 and got == []
    feed.on_message(encode_batch("hub-a", [make_post(1)]))
    assert got == []
    feed.on_message(encode_batch("hub-b", [make_post(1)]))
    assert [p.native_id for p in got] == ["1"] and got[0].analysis.sentiment == "negative"


@pytest_twisted.ensureDeferred
async def test_the_hubs_list_gives_up_on_an_absent_redis(reactor, tmp_path, prefix):
    """With Redis away, hubs() fails within a bounded time (the API answers 503) instead of hanging."""
    from twisted.internet.defer import TimeoutError

    away = RedisCluster(
        {"path": str(tmp_path / "no.sock"), "db": 0, "password": None}, "hub-a", reactor, ttl=1.5, prefix=prefix
    )
    away.startService()
    try:
        started = reactor.seconds()
        try:
            await away.hubs()
        except TimeoutError:
            pass
        else:
            raise AssertionError("hubs() answered without Redis")
        assert reactor.seconds() - started < 3
    finally:
        await away.stopService()


@pytest_twisted.ensureDeferred
async def test_change_notices_reach_the_other_hubs_not_their_sender(reactor, redis_server, prefix):
    """B's notice reaches A's callbacks for its subject only; A's own notices and unreadable ones are not handed on."""
    a, b = cluster(redis_server, "hub-a", reactor, prefix), cluster(redis_server, "hub-b", reactor, prefix)
    rules, other = [], []
    a.on_change("rules", rules.append)
    a.on_change("topics", other.append)
    a.startService()
    b.startService()
    try:
        await a.feed.when_subscribed().addTimeout(WAIT, reactor)
        await b.feed.when_subscribed().addTimeout(WAIT, reactor)
        a.notify("rules", n=0)  # its own: not handed back
        await b.redis.execute_command("PUBLISH", f"{prefix}:changed", "not json")
        b.notify("rules", n=1)
        await eventually(reactor, lambda: rules)
        # A batch of posts on the same subscription still reaches the feed.
        b.posts_stored([make_post(1)])
        await eventually(reactor, lambda: a.feed.received == 1)
        assert rules == [{"hub": "hub-b", "what": "rules", "n": 1}] and other == []
    finally:
        await a.stopService()
        await b.stopService()


def test_a_solo_hub_has_nobody_to_notify():
    """Alone, a notice goes nowhere and no callback is ever called."""
    from twisted.internet.task import Clock

    solo = SoloCluster("hub-a", Clock())
    got = []
    solo.on_change("rules", got.append)
    solo.notify("rules")
    assert got == []
