"""
The alert rules evaluated once for the cluster: two hubs' engines (each on
its own store and a Clock), the C{alerts} lease on a real redis-server.
Only the leader opens incidents and sends notifications, for the posts
every hub stored (the feed brings the others'); when it stops, the other
hub leads.
"""

import pytest_twisted
from twisted.internet.defer import ensureDeferred

from monitor.cluster import RedisCluster
from monitor.queue.redis import parse_redis_url
from tests.alerts.helpers import T0, ScriptedNotifier, make_engine, post
from tests.alerts.test_engine import CRISIS, clock_at
from tests.cluster.test_leases import eventually

WAIT = 5.0


def engine(clock):
    hook = ScriptedNotifier("hook")
    e = make_engine(clock, [CRISIS], notifiers={"hook": hook}, start=False)
    e.lead_at_start = False  # as the hub builds it: the lease decides
    d = e.startService()
    assert d.called
    return e, hook


def incidents(e):
    return e.store.store.rows("SELECT rule, topic, state FROM alert_incidents")


@pytest_twisted.ensureDeferred
async def test_only_the_leader_evaluates_and_it_sees_every_hubs_posts(reactor, redis_server, prefix):
    """A crisis post stored by the follower makes one incident and one notification, on the leader."""
    where = parse_redis_url(redis_server.url)
    clusters, engines, hooks, clocks, leases = {}, {}, {}, {}, {}
    for name in ("a", "b"):
        clocks[name] = clock_at()
        engines[name], hooks[name] = engine(clocks[name])
        clusters[name] = RedisCluster(where, f"hub-{name}", reactor, ttl=0.6, prefix=prefix)
        clusters[name].add_listener(engines[name])
        leases[name] = clusters[name].leased("alerts", engines[name].evaluation)
        clusters[name].startService()
    a, b = engines["a"], engines["b"]
    try:
        for c in clusters.values():
            await c.feed.when_subscribed().addTimeout(WAIT, reactor)
        leases["a"].startService()
        await eventually(reactor, lambda: a.leading)
        leases["b"].startService()
        assert not b.leading and b.rules  # the follower knows the rules, for the API
        assert b.status()["leading"] is False and a.status()["leading"] is True

        # Hub B stores a crisis post: its pipeline's sinks, then the feed.
        crisis = [post(1, T0, labels=("crisis",), text="acme breach")]
        b.posts_stored(crisis)
        clusters["b"].posts_stored(crisis)
        await eventually(reactor, lambda: clusters["a"].feed.received == 1)
        for clock in clocks.values():
            clock.advance(0)
        assert incidents(a) == [("crisis", "Acme", "open")]
        assert incidents(b) == []
        assert [n.event for n in hooks["a"].calls] == ["opened"] and hooks["b"].calls == []

        # The leader stops (a clean stop gives the lease up): B leads now.
        await leases["a"].stopService()
        assert not a.leading and not a.detector.book.open
        await eventually(reactor, lambda: b.leading, seconds=2.0)
        again = [post(2, T0 + 5, labels=("crisis",), text="acme breach again")]
        a.posts_stored(again)  # A still stores (no lease needed for that), and tells B
        clusters["a"].posts_stored(again)
        await eventually(reactor, lambda: clusters["b"].feed.received == 1)
        for clock in clocks.values():
            clock.advance(0)
        assert incidents(b) == [("crisis", "Acme", "open")]
        assert [n.event for n in hooks["b"].calls] == ["opened"]
        assert [n.event for n in hooks["a"].calls] == ["opened"]  # nothing more from A
    finally:
        for name in ("a", "b"):
            await leases[name].stopService()
            await clusters[name].stopService()
            engines[name].stopService()


@pytest_twisted.ensureDeferred
async def test_a_follower_asks_the_leader_to_act_on_an_incident(reactor, redis_server, prefix):
    """The leader answers a follower's acknowledgement (its refusal too); with no leader the follower gives up: 503."""
    import pytest

    from monitor.alerts.engine import ASK_LEADER, AlertError

    where = parse_redis_url(redis_server.url)
    clusters = {n: RedisCluster(where, f"hub-{n}", reactor, ttl=0.6, prefix=prefix) for n in ("a", "b")}
    clocks = {n: clock_at() for n in ("a", "b")}
    # One store for both, as PostgreSQL is.
    a = make_engine(clocks["a"], [CRISIS], peers=clusters["a"], start=False)
    b = make_engine(clocks["b"], [CRISIS], peers=clusters["b"], start=False, store=a.store.store)
    engines = {"a": a, "b": b}
    for n in ("a", "b"):
        engines[n].lead_at_start = n == "a"
        clusters[n].startService()
    try:
        for c in clusters.values():
            await c.feed.when_subscribed().addTimeout(WAIT, reactor)
        for e in engines.values():
            assert e.startService().called
        assert a.leading and not b.leading
        a.posts_stored([post(1, T0, labels=("crisis",), text="acme breach")])
        clocks["a"].advance(0)
        (incident_id,) = [i.id for i in a.detector.book.open.values()]

        # Done by the leader, which wrote it before answering.
        answer = ensureDeferred(b.acknowledge(incident_id, by="ops"))
        await eventually(reactor, lambda: answer.called)
        assert (await answer)["state"] == "acknowledged" and (await answer)["acknowledged_by"] == "ops"
        assert a.detector.book.by_id(incident_id).state == "acknowledged"

        with pytest.raises(AlertError) as unknown:
            await ensureDeferred(b.resolve("no-such-incident")).addTimeout(WAIT, reactor)
        assert unknown.value.status == 404

        await a.evaluation.stopService()  # nobody leads now
        asked = ensureDeferred(b.acknowledge(incident_id))
        await eventually(reactor, lambda: b._asked)
        clocks["b"].advance(ASK_LEADER)
        with pytest.raises(AlertError) as silent:
            await asked
        assert silent.value.status == 503 and not b._asked
    finally:
        for n in ("a", "b"):
            engines[n].stopService()
            await clusters[n].stopService()


def test_a_hit_while_a_new_leader_reads_the_open_incidents_back_joins_them():
    """A post stored while lead() still reads the open incidents back is observed after it: no second incident."""
    from twisted.internet.defer import Deferred, ensureDeferred

    clock = clock_at()
    e, hook = engine(clock)
    try:
        assert ensureDeferred(e.lead()).called
        e.posts_stored([post(1, T0, labels=("crisis",), text="acme breach")])
        clock.advance(0)
        assert ensureDeferred(e.follow()).called  # another hub leads, then this one again:
        real, gate = e.store.open_incidents, Deferred()
        e.store.open_incidents = lambda: gate.addCallback(lambda _: real())
        leading = ensureDeferred(e.lead())
        assert not leading.called
        e.posts_stored([post(2, T0 + 5, labels=("crisis",), text="acme breach again")])
        gate.callback(None)
        assert leading.called
        clock.advance(0)
        assert incidents(e) == [("crisis", "Acme", "open")]
        (incident,) = e.detector.book.open.values()
        assert incident.hits == 2
        assert [n.event for n in hook.calls] == ["opened"]
    finally:
        e.stopService()


def test_a_lead_whose_lease_was_lost_meanwhile_stops_where_it_is():
    """The lease lost (and taken again) while lead() reads the store back: that lead() stops, the new one leads."""
    from twisted.internet.defer import Deferred, ensureDeferred

    clock = clock_at()
    e, hook = engine(clock)
    try:
        real, gate = e.store.open_incidents, Deferred()
        e.store.open_incidents = lambda: gate.addCallback(lambda _: real())
        first = ensureDeferred(e.lead())
        assert ensureDeferred(e.follow()).called
        e.store.open_incidents = real
        assert ensureDeferred(e.lead()).called
        gate.callback(None)
        failures = []
        first.addErrback(failures.append)
        assert first.called and failures == []
        assert e.leading and e._loop.running
        e.posts_stored([post(1, T0, labels=("crisis",), text="acme breach")])
        clock.advance(0)
        assert incidents(e) == [("crisis", "Acme", "open")]
        assert [n.event for n in hook.calls] == ["opened"]
    finally:
        e.stopService()
