"""
Leases on a real redis-server: one holder at a time, a takeover once the
holder stops renewing, the wrapped service stopped when its lease is lost,
and a real collector (a replay) that moves to the hub that survives.
"""

import json

import pytest_twisted
from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater

from monitor.cluster.leases import Lease, LeasedService
from monitor.collect.replay import ReplaySource
from monitor.metrics import Metrics
from monitor.queue.memory import MemoryQueue
from monitor.queue.redis import parse_redis_url, redis_connection

#: Longest a test waits for something that should take a fraction of it.
WAIT = 5.0


@pytest_twisted.async_yield_fixture
async def redis(redis_server):
    connection = redis_connection(parse_redis_url(redis_server.url))
    yield connection
    await connection.disconnect()


async def eventually(reactor, predicate, seconds=WAIT, step=0.02):
    """Wait (bounded) until predicate() is true; fail saying so otherwise."""
    deadline = reactor.seconds() + seconds
    while not predicate():
        if reactor.seconds() > deadline:
            raise AssertionError(f"not within {seconds}s")
        await deferLater(reactor, step)


class Recorded(Service):
    """A service that records its starts and stops."""

    def __init__(self):
        self.events = []

    def startService(self):
        super().startService()
        self.events.append("start")

    def stopService(self):
        super().stopService()
        self.events.append("stop")


@pytest_twisted.ensureDeferred
async def test_two_hubs_one_lease_one_holder(redis, redis_server, prefix):
    """Of two hubs asking for one lease, one gets it; the other gets it only once it is given up."""
    a = Lease(redis, f"{prefix}:lease:x", "hub-a", ttl=10)
    b = Lease(redis, f"{prefix}:lease:x", "hub-b", ttl=10)
    assert await a.acquire() is True
    assert await b.acquire() is False
    assert await b.renew() is False  # renewing what is not yours does nothing
    assert await b.release() is False  # and so does giving it up
    assert await a.holder_now() == "hub-a"
    assert await a.acquire() is True  # ours already: kept
    assert 0 < int(redis_server.cli("PTTL", f"{prefix}:lease:x")) <= 10_000
    assert await a.release() is True
    assert await b.acquire() is True
    assert await a.acquire() is False
    assert await b.holder_now() == "hub-b"


@pytest_twisted.ensureDeferred
async def test_a_lease_not_renewed_is_taken_over_within_its_ttl(reactor, redis, prefix):
    """A holder that stops renewing (died) loses the lease after ttl; the other takes it then, not before."""
    key = f"{prefix}:lease:x"
    dead = Lease(redis, key, "hub-a", ttl=0.5)
    live = Lease(redis, key, "hub-b", ttl=0.5)
    assert await dead.acquire()
    started = reactor.seconds()
    assert not await live.acquire()
    while not await live.acquire():
        assert reactor.seconds() - started < WAIT
        await deferLater(reactor, 0.05)
    took = reactor.seconds() - started
    assert 0.3 <= took <= 1.5, took
    assert not await dead.renew()  # the dead hub coming back cannot renew it


@pytest_twisted.ensureDeferred
async def test_renewal_keeps_the_lease_past_its_ttl(reactor, redis, prefix):
    """A LeasedService renewing every ttl/3 keeps its lease (and service) for many ttls."""
    service = Recorded()
    leased = LeasedService(Lease(redis, f"{prefix}:lease:x", "hub-a", ttl=0.3), service, reactor)
    other = Lease(redis, f"{prefix}:lease:x", "hub-b", ttl=0.3)
    leased.startService()
    try:
        await eventually(reactor, lambda: leased.holding)
        for _ in range(6):
            await deferLater(reactor, 0.15)
            assert not await other.acquire()
        assert service.events == ["start"] and service.running
    finally:
        await leased.stopService()
    assert service.events == ["start", "stop"]
    assert await other.acquire()  # given up at stop: free at once


@pytest_twisted.ensureDeferred
async def test_losing_the_lease_stops_the_service(reactor, redis, redis_server, prefix):
    """When the lease is found taken by another hub at a renewal, the wrapped service stops at once."""
    key = f"{prefix}:lease:x"
    service = Recorded()
    leased = LeasedService(Lease(redis, key, "hub-a", ttl=0.6), service, reactor)
    leased.startService()
    try:
        await eventually(reactor, lambda: leased.holding)
        # Another hub has it now (as after a long pause of this one).
        redis_server.cli("SET", key, "hub-b", "PX", "60000")
        await eventually(reactor, lambda: not leased.holding, seconds=1.0)
        assert service.events == ["start", "stop"] and not service.running
        assert leased.lost == 1
        assert redis_server.cli("GET", key) == "hub-b"  # ours to take no more
        # When the other gives it up, this hub takes it back.
        redis_server.cli("DEL", key)
        await eventually(reactor, lambda: leased.holding, seconds=1.0)
        assert service.events == ["start", "stop", "start"]
    finally:
        await leased.stopService()


class Unreachable:
    """A Redis that answers nothing (hung, or the network is down)."""

    def execute_command(self, *args):
        return Deferred()


@pytest_twisted.ensureDeferred
async def test_unconfirmed_renewals_stop_the_service_before_the_lease_expires(reactor, redis, prefix):
    """A hub that cannot reach Redis stops its service within 2/3 of the ttl, before another can take it."""
    key = f"{prefix}:lease:x"
    lease = Lease(redis, key, "hub-a", ttl=0.9)
    service = Recorded()
    leased = LeasedService(lease, service, reactor)
    leased.startService()
    try:
        await eventually(reactor, lambda: leased.holding)
        confirmed = reactor.seconds()
        lease.redis = Unreachable()
        await eventually(reactor, lambda: not leased.holding, seconds=2.0)
        stopped = reactor.seconds() - confirmed
        assert service.events == ["start", "stop"]
        # Stopped before the lease could have expired in Redis.
        assert stopped < 0.9 + 0.1, stopped
    finally:
        lease.redis = redis
        await leased.stopService()


def replay_file(path, n):
    with open(path, "w", encoding="utf-8") as f:
        for i in range(n):
            f.write(json.dumps({"id": i, "text": f"post {i}", "author": "a", "created_at": 1.7e9 + i}) + "\n")


class CursorStore:
    """
    The store's cursor table, shared by two hubs, as a shared (PostgreSQL)
    store will be: what the collector's test needs of the store.
    """

    def __init__(self):
        self.cursors = {}

    async def get_cursor(self, name):
        return self.cursors.get(name)

    async def source_counters(self, name):
        return {"posts": 0, "malformed": 0}


@pytest_twisted.ensureDeferred
async def test_a_collector_moves_to_the_surviving_hub_and_resumes(reactor, redis, tmp_path, prefix):
    """A replay leased on hub A runs there only; when A stops renewing, B takes it and resumes at the stored cursor."""
    n = 40
    path = tmp_path / "posts.jsonl"
    replay_file(path, n)
    store = CursorStore()
    key = f"{prefix}:lease:collector:replay"
    queues, sources, leased = {}, {}, {}
    for hub in ("a", "b"):
        queues[hub] = MemoryQueue(1000, reactor=reactor)
        sources[hub] = ReplaySource("replay", queues[hub], store, Metrics(), str(path), follow=True, reactor=reactor)
        leased[hub] = LeasedService(Lease(redis, key, f"hub-{hub}", ttl=0.6), sources[hub], reactor)
    leased["a"].startService()
    await eventually(reactor, lambda: leased["a"].holding)
    leased["b"].startService()
    try:
        await eventually(reactor, lambda: queues["a"].size() == n)
        assert sources["a"].running and not sources["b"].running and not leased["b"].holding
        # Hub A stored the first 25 posts: the store has the cursor after them.
        first = await queues["a"].get(25)
        store.cursors["replay"] = first[-1].cursor
        # Hub A freezes: it stops renewing, and the lease runs out.
        leased["a"]._loop.stop()
        await eventually(reactor, lambda: leased["b"].holding, seconds=2.0)
        await eventually(reactor, lambda: queues["b"].size() == n - 25)
        again = await queues["b"].get(100)
        assert [p.native_id for p in again] == [str(i) for i in range(25, n)]
        assert sources["b"].running
    finally:
        await leased["b"].stopService()
        leased["a"].holding = False  # frozen: its own stop must not give B's lease up
        sources["a"].stopService()
        await leased["a"].stopService()


@pytest_twisted.ensureDeferred
async def test_a_stop_does_not_wait_for_an_absent_redis(reactor, redis, prefix):
    """Stopping while Redis answers nothing stops the service at once and gives up on the release in bounded time."""
    lease = Lease(redis, f"{prefix}:lease:x", "hub-a", ttl=30)
    service = Recorded()
    leased = LeasedService(lease, service, reactor)
    leased.startService()
    await eventually(reactor, lambda: leased.holding)
    lease.redis = Unreachable()
    leased.tick()  # a renewal under way, hanging
    started = reactor.seconds()
    await leased.stopService()
    assert service.events == ["start", "stop"]
    assert reactor.seconds() - started < 3  # the release's bound (2 s), not the renewal's (10 s)
    lease.redis = redis
    await lease.release()
