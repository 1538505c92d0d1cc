"""
The cluster seam's contract, for both providers: this hub alone (the
memory queue) and hubs on a real redis-server.
"""

import pytest_twisted
from twisted.internet.defer import maybeDeferred
from twisted.internet.task import Clock
from zope.interface.verify import verifyObject

from monitor.cluster import RedisCluster, SoloCluster
from monitor.interfaces import ICluster, ISink
from monitor.queue.redis import parse_redis_url
from tests.cluster.test_leases import Recorded, eventually
from tests.web.test_push import make_post


@pytest_twisted.async_yield_fixture(params=["solo", "redis"])
async def cluster(request, reactor, prefix):
    if request.param == "solo":
        c = SoloCluster("hub-x", Clock())
    else:
        server = request.getfixturevalue("redis_server")
        c = RedisCluster(parse_redis_url(server.url), "hub-x", reactor, ttl=0.9, prefix=prefix)
    c.startService()
    yield c
    await maybeDeferred(c.stopService)


@pytest_twisted.ensureDeferred
async def test_provides_the_interfaces(cluster):
    """Both providers are ICluster and ISink, with this hub's name."""
    assert verifyObject(ICluster, cluster) and verifyObject(ISink, cluster)
    assert cluster.hub_name == "hub-x"
    assert cluster.solo is isinstance(cluster, SoloCluster)


@pytest_twisted.ensureDeferred
async def test_a_leased_service_runs_here_and_is_listed(reactor, cluster):
    """Alone or first of a cluster, a leased service runs here, and the hubs list says this hub holds it."""
    service = Recorded()
    leased = cluster.leased("collector:inbox", service)
    leased.startService()
    try:
        await eventually(reactor, lambda: service.running)
        cluster.posts_stored([make_post(1)])
        if not cluster.solo:
            await cluster.beat()
        (me,) = await cluster.hubs()
        assert me["name"] == "hub-x" and me["this"] is True and me["leases"] == ["collector:inbox"]
        assert set(me) >= {"host", "pid", "started", "last_seen", "posts_per_second"}
        assert await cluster.holders() == {"collector:inbox": "hub-x"}
        assert cluster.holder_of("collector:inbox") == "hub-x"
        assert cluster.holder_of("collector:other") is None
    finally:
        await maybeDeferred(leased.stopService)
    assert not service.running


def test_alone_nothing_comes_from_elsewhere():
    """A listener of a hub alone is never called: nothing is stored elsewhere."""
    solo = SoloCluster("hub-x", Clock())
    calls = []

    class Sink:
        def posts_stored(self, posts):
            calls.append(posts)

    solo.add_listener(Sink())
    solo.posts_stored([make_post(1)])
    assert calls == []
