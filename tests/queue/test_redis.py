"""
What only a queue shared by several hubs does, on a real redis-server:
one consumer group, posts a dead hub had read taken over after
C{claim_after}, a restarted hub finishing what it had in hand, and a Redis
killed and restarted losing nothing.
"""

import tomllib
import uuid

import pytest
import pytest_twisted
from twisted.internet.defer import DeferredList, ensureDeferred

from monitor.config import ConfigError, parse_config
from monitor.queue import make_queue
from monitor.queue.redis import RedisQueue, parse_redis_url
from tests.queue.conftest import redis_queue
from tests.queue.test_contract import WAIT, post
from tests.servers import RedisServer


async def take(q, n, reactor, ack=True):
    got = []
    while len(got) < n:
        batch = await q.get(n - len(got)).addTimeout(WAIT, reactor)
        got.extend(batch)
        if ack:
            await q.ack(batch)
    return got


@pytest_twisted.ensureDeferred
async def test_posts_a_dead_hub_had_read_are_taken_over(redis_server, reactor):
    """What one hub read and never acknowledged goes to another after claim_after, and only then."""
    stream = f"test:{uuid.uuid4().hex}"
    dead = redis_queue(redis_server, reactor, stream=stream, consumer="dead", claim_after=0.5)
    dead.startService()
    for i in range(5):
        await dead.put(post(i))
    lost = await take(dead, 5, reactor, ack=False)
    assert len(lost) == 5
    await dead.stopService()  # dies holding them
    started = reactor.seconds()
    live = redis_queue(redis_server, reactor, stream=stream, consumer="live", claim_after=0.5)
    live.startService()
    try:
        got = await take(live, 5, reactor)
        assert sorted(p.native_id for p in got) == ["0", "1", "2", "3", "4"]
        assert reactor.seconds() - started >= 0.4  # not before they were idle for claim_after
        assert redis_server.cli("XLEN", stream) == "0"  # acknowledged entries are deleted
        assert redis_server.cli("XPENDING", stream, "monitor").split()[0] == "0"
    finally:
        await live.stopService()


@pytest_twisted.ensureDeferred
async def test_a_restarted_hub_finishes_what_it_had_in_hand_first(redis_server, reactor):
    """Under the same consumer name, the unacknowledged posts come back at once, before new ones."""
    stream = f"test:{uuid.uuid4().hex}"
    q = redis_queue(redis_server, reactor, stream=stream, consumer="hub-a", claim_after=60)
    q.startService()
    for i in range(3):
        await q.put(post(i))
    await take(q, 3, reactor, ack=False)
    await q.put(post(3))
    await q.stopService()
    again = redis_queue(redis_server, reactor, stream=stream, consumer="hub-a", claim_after=60)
    again.startService()
    try:
        first = await again.get(10).addTimeout(WAIT, reactor)
        assert [p.native_id for p in first] == ["0", "1", "2"]
        await again.ack(first)
        rest = await take(again, 1, reactor)
        assert [p.native_id for p in rest] == ["3"]
    finally:
        await again.stopService()


@pytest_twisted.ensureDeferred
async def test_hubs_share_the_stream_each_post_to_one(redis_server, reactor):
    """Two hubs reading one stream through the group: every post reaches exactly one of them."""
    stream = f"test:{uuid.uuid4().hex}"
    a = redis_queue(redis_server, reactor, stream=stream, consumer="a")
    b = redis_queue(redis_server, reactor, stream=stream, consumer="b")
    for q in (a, b):
        q.startService()
    try:
        for i in range(300):
            await a.put(post(i))
        seen = {"a": [], "b": []}

        async def consume(q, name):
            while len(seen["a"]) + len(seen["b"]) < 300:
                try:
                    batch = await q.get(7).addTimeout(0.5, reactor)
                except Exception:
                    continue
                seen[name].extend(p.native_id for p in batch)
                await q.ack(batch)

        await DeferredList([ensureDeferred(consume(q, n)) for q, n in ((a, "a"), (b, "b"))])
        both = seen["a"] + seen["b"]
        assert sorted(both, key=int) == [str(i) for i in range(300)]
        assert len(set(both)) == 300
    finally:
        for q in (a, b):
            await q.stopService()


@pytest_twisted.ensureDeferred
async def test_redis_killed_and_restarted_loses_nothing(reactor):
    """SIGKILL of Redis with posts in the stream: reads wait, puts wait, and after the restart every post comes out once."""
    server = RedisServer().start()
    q = RedisQueue(server.url, stream="monitor:posts", block=0.2, reactor=reactor)
    q.startService()
    try:
        for i in range(50):
            await q.put(post(i))
        first = await take(q, 10, reactor)
        server.kill()
        waiting_put = q.put(post(50))
        waiting_get = q.get(100)
        server.start()
        await waiting_put.addTimeout(15, reactor)
        got = first + await waiting_get.addTimeout(15, reactor)
        await q.ack(got[10:])
        got += await take(q, 51 - len(got), reactor)
        assert sorted((p.native_id for p in got), key=int) == [str(i) for i in range(51)]
    finally:
        await q.stopService()
        server.close()


def test_urls():
    """redis:// and unix:// URLs, with password and database; anything else says what is wrong."""
    assert parse_redis_url("redis://:s3cret@db.example:6380/2") == {
        "host": "db.example", "port": 6380, "db": 2, "password": "s3cret"}  # fmt: skip
    assert parse_redis_url("unix:///run/redis.sock?db=1")["path"] == "/run/redis.sock"
    for bad in ("http://x", "redis://", "redis://h/abc", "unix://"):
        with pytest.raises(ValueError):
            parse_redis_url(bad)


def load(text):
    return parse_config(tomllib.loads(text), text=text, environ={})


def test_config_builds_the_redis_queue(reactor):
    """[queue] kind = "redis" with its keys makes a RedisQueue; a bad URL names queue.url."""
    config = load('[queue]\nkind = "redis"\nurl = "redis://127.0.0.1:6390/1"\nstream = "s"\n'
                              'max_length = 500\nclaim_after = "2m"\n[hub]\nname = "hub-1"\n')  # fmt: skip
    q = make_queue(config.queue, reactor, hub_name=config.hub["name"])
    assert isinstance(q, RedisQueue)
    assert (q.stream, q.max_length, q.claim_after, q.consumer) == ("s", 500, 120.0, "hub-1")
    with pytest.raises(ConfigError) as e:
        load('[queue]\nkind = "redis"\nurl = "mysql://x"\n')
    assert "queue.url" in str(e.value)
