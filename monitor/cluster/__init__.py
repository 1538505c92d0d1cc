"""
Several hubs as one (C{[queue] kind = "redis"}): which hub runs each
collector and the alert evaluation (leases), which hubs are alive
(heartbeats), and what each stored, for the live views of all (a pub/sub
channel).  With the memory queue the hub is alone: L{SoloCluster} runs
everything here and lists this one hub.

Keys, all under C{[hub] cluster} (default C{monitor}):
C{<cluster>:lease:<name>} (a lease), C{<cluster>:hub:<hub>} (a heartbeat,
expiring after C{[hub] lease}), C{<cluster>:hubs} (the names of hubs seen),
and the channels C{<cluster>:stored} (L{StoredFeed}) and C{<cluster>:changed}
(change notices: what one hub changed in the shared store, e.g. the alert
rules, so that the others re-read it now rather than on their timer).
"""

from __future__ import annotations

import json
import os
import socket
from typing import Any, Optional

from twisted.application.service import MultiService, Service
from twisted.internet.defer import Deferred, ensureDeferred, fail, succeed
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from zope.interface import implementer

from monitor.cluster.feed import StoredFeed
from monitor.cluster.leases import Lease, LeasedService
from monitor.interfaces import ICluster, ISink
from monitor.model import iso8601

__all__ = ["RedisCluster", "SoloCluster", "make_cluster", "Lease", "LeasedService", "StoredFeed"]


class LazyRedis:
    """
    The cluster's command connection, opened when the cluster starts (not
    when the hub is built) and closed when it stops; until then every
    command fails at once with a C{ConnectionError}.
    """

    def __init__(self, where: dict) -> None:
        self.where = where
        self.connection = None

    def open(self) -> None:
        from monitor.queue.redis import redis_connection

        self.connection = redis_connection(self.where)

    def execute_command(self, *args) -> Deferred:
        if self.connection is None:
            import txredisapi

            return fail(txredisapi.ConnectionError("not connected to Redis"))
        return self.connection.execute_command(*args)

    def disconnect(self) -> Deferred:
        connection, self.connection = self.connection, None
        return connection.disconnect() if connection is not None else succeed(None)


class _Rate:
    """Posts stored here, per second since the last look."""

    def __init__(self, reactor) -> None:
        self.reactor = reactor
        self.count = 0
        self.since = reactor.seconds()
        self.last = 0.0

    def add(self, n: int) -> None:
        self.count += n

    def take(self) -> float:
        now = self.reactor.seconds()
        if now > self.since:
            self.last = round(self.count / (now - self.since), 2)
            self.count, self.since = 0, now
        return self.last


class _Beats:
    """What a heartbeat says about this hub, for both kinds of cluster."""

    def __init__(self, name: str, reactor) -> None:
        self.name = name
        self.reactor = reactor
        self.host = socket.gethostname()
        self.pid = os.getpid()
        self.started = reactor.seconds()
        self.rate = _Rate(reactor)

    def beat(self, leases: list[str]) -> dict[str, Any]:
        return {
            "name": self.name,
            "host": self.host,
            "pid": self.pid,
            "started": iso8601(self.started),
            "last_seen": iso8601(self.reactor.seconds()),
            "leases": sorted(leases),
            "posts_per_second": self.rate.take(),
        }


@implementer(ICluster, ISink)
class SoloCluster(Service):
    """
    One hub alone: every leased service simply runs, and the hubs are this
    one.
    """

    name = "cluster"
    solo = True

    def __init__(self, name: str, reactor) -> None:
        self.hub_name = name
        self.reactor = reactor
        self._beats = _Beats(name, reactor)
        self._leases: list[str] = []

    def leased(self, name: str, service):
        self._leases.append(name)
        return service

    def add_listener(self, sink) -> None:
        """Nothing is stored elsewhere."""

    def notify(self, what: str, **fields) -> None:
        """No other hub to tell."""

    def on_change(self, what: str, callback) -> None:
        """No other hub changes anything."""

    def posts_stored(self, posts) -> None:
        self._beats.rate.add(len(posts))

    def hubs(self) -> Deferred:
        return succeed([dict(self._beats.beat(self._leases), this=True)])

    def holders(self) -> Deferred:
        return succeed({name: self.hub_name for name in self._leases})

    def holder_of(self, lease: str) -> Optional[str]:
        return self.hub_name if lease in self._leases else None


@implementer(ICluster, ISink)
class RedisCluster(MultiService):
    """
    Hubs that share a Redis (the queue's) and a C{[hub] cluster} name.

    @param where: the Redis (from L{monitor.queue.redis.parse_redis_url}):
        one connection for leases, heartbeats and publishing, opened at
        start and closed at stop, and one for the feed's subscription.
    @param ttl: seconds a lease and a heartbeat last without renewal; both
        are renewed every third of it.
    """

    name = "cluster"
    solo = False
    log = Logger()

    def __init__(self, where: dict, name: str, reactor, ttl: float = 15.0, prefix: str = "monitor") -> None:
        super().__init__()
        self.redis = LazyRedis(where)
        self.hub_name = name
        self.reactor = reactor
        self.ttl = ttl
        self.prefix = prefix
        self._beats = _Beats(name, reactor)
        self._leased: dict[str, LeasedService] = {}
        self._known: dict[str, str] = {}
        self._loop: Optional[LoopingCall] = None
        self.changes_channel = f"{prefix}:changed"
        self._on_change: dict[str, list] = {}
        self.feed = StoredFeed(
            self.redis, where, f"{prefix}:stored", name, reactor, also={self.changes_channel: self._changed}
        )
        self.feed.setServiceParent(self)

    # -- leases --------------------------------------------------------------

    def lease(self, name: str) -> Lease:
        return Lease(self.redis, f"{self.prefix}:lease:{name}", self.hub_name, self.ttl)

    def leased(self, name: str, service) -> LeasedService:
        """C{service}, run only while this hub holds the lease C{name}."""
        leased = LeasedService(self.lease(name), service, self.reactor, label=name)
        self._leased[name] = leased
        return leased

    def held(self) -> list[str]:
        return [name for name, s in self._leased.items() if s.holding]

    # -- the feed ------------------------------------------------------------

    def add_listener(self, sink) -> None:
        self.feed.add_listener(sink)

    def posts_stored(self, posts) -> None:
        """L{ISink}: count, and tell the other hubs."""
        self._beats.rate.add(len(posts))
        self.feed.posts_stored(posts)

    # -- change notices --------------------------------------------------------

    def notify(self, what: str, **fields) -> None:
        """
        Tell the other hubs that C{what} changed in the shared store.  Fire
        and forget: a notice lost (Redis away, a hub reconnecting) is made
        up for by the re-reading every hub does on its own timer.
        """
        body = json.dumps(dict(fields, hub=self.hub_name, what=what), ensure_ascii=False, separators=(",", ":"))
        d = self._ask("PUBLISH", self.changes_channel, body)
        d.addErrback(
            lambda f: self.log.warn(
                "could not tell the other hubs that {what} changed: {error}", what=what, error=f.getErrorMessage()
            )
        )

    def on_change(self, what: str, callback) -> None:
        """Call C{callback(notice)} (a dict) for every notice of C{what} from another hub."""
        self._on_change.setdefault(what, []).append(callback)

    def _changed(self, message) -> None:
        try:
            notice = json.loads(message)
            hub, what = notice["hub"], notice["what"]
        except (TypeError, ValueError, KeyError) as e:
            self.log.warn("ignoring an unreadable change notice: {error}", error=e)
            return
        if hub == self.hub_name:
            return
        for callback in self._on_change.get(what, ()):
            try:
                callback(notice)
            except Exception:
                self.log.failure("a change notice of {what} from {hub} failed", what=what, hub=hub)

    # -- heartbeats ----------------------------------------------------------

    def startService(self):
        self.redis.open()
        super().startService()
        self._loop = LoopingCall(self.beat)
        self._loop.clock = self.reactor
        self._loop.start(self.ttl / 3, now=True).addErrback(lambda f: self.log.failure("the heartbeat stopped", f))

    def stopService(self):
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        return ensureDeferred(self._stop())

    async def _stop(self) -> None:
        await super().stopService()
        try:
            # Gone at once from the list, not after the ttl.
            await self.redis.execute_command("DEL", self._key(self.hub_name)).addTimeout(1.0, self.reactor)
            await self.redis.execute_command("ZREM", f"{self.prefix}:hubs", self.hub_name).addTimeout(1.0, self.reactor)
        except Exception as e:
            self.log.warn("could not remove this hub's heartbeat: {error}", error=e)
        await self.redis.disconnect()

    def _key(self, hub: str) -> str:
        return f"{self.prefix}:hub:{hub}"

    def beat(self) -> Deferred:
        """Say this hub is alive, what it holds and how busy it is."""
        return ensureDeferred(self._beat())

    async def _beat(self) -> None:
        body = json.dumps(self._beats.beat(self.held()), separators=(",", ":"))
        try:
            await self.redis.execute_command(
                "SET", self._key(self.hub_name), body, "PX", str(int(self.ttl * 1000))
            ).addTimeout(self.ttl / 3, self.reactor)
            await self.redis.execute_command(
                "ZADD", f"{self.prefix}:hubs", str(self.reactor.seconds()), self.hub_name
            ).addTimeout(self.ttl / 3, self.reactor)
        except Exception as e:
            self.log.warn("could not write this hub's heartbeat: {error}", error=e)
            return
        try:
            self._known = await self._holders()
        except Exception as e:
            self.log.warn("could not read the other hubs' heartbeats: {error}", error=e)

    def hubs(self) -> Deferred:
        """The live hubs' heartbeats, by name; C{this} marks this one."""
        return ensureDeferred(self._hubs())

    def _ask(self, *command) -> Deferred:
        """A command that gives up (TimeoutError) rather than wait for a Redis that is away."""
        return self.redis.execute_command(*command).addTimeout(max(1.0, self.ttl / 3), self.reactor)

    async def _hubs(self) -> list[dict[str, Any]]:
        names = await self._ask("ZRANGE", f"{self.prefix}:hubs", "0", "-1")
        names = list(names or [])
        if not names:
            return []
        bodies = await self._ask("MGET", *[self._key(n) for n in names])
        out, gone = [], []
        for name, body in zip(names, bodies or []):
            if body is None:
                gone.append(name)
                continue
            try:
                beat = json.loads(body)
            except ValueError:
                continue
            beat["this"] = name == self.hub_name
            out.append(beat)
        if gone:
            # Heartbeats that expired: hubs that died.
            await self._ask("ZREM", f"{self.prefix}:hubs", *gone)
        out.sort(key=lambda b: b.get("name", ""))
        return out

    def holders(self) -> Deferred:
        """Which hub holds each lease, from the live hubs' heartbeats."""
        return ensureDeferred(self._holders())

    def holder_of(self, lease: str) -> Optional[str]:
        """
        Which hub holds C{lease}, as of the last heartbeat (this hub's own
        leases as of now); C{None}: none known.
        """
        if lease in self._leased:
            if self._leased[lease].holding:
                return self.hub_name
            holder = self._known.get(lease)
            return None if holder == self.hub_name else holder
        return self._known.get(lease)

    async def _holders(self) -> dict[str, str]:
        out = {}
        for beat in await self._hubs():
            for lease in beat.get("leases", ()):
                out[lease] = beat["name"]
        for name in self.held():
            out[name] = self.hub_name
        return out


def make_cluster(config, reactor):
    """
    The cluster a configuration makes: on a Redis queue, hubs sharing its
    Redis; else this hub alone.
    """
    from monitor.fields import parse_duration
    from monitor.queue.redis import default_consumer, parse_redis_url

    hub = config.hub
    name = hub["name"] or default_consumer()
    if config.queue["kind"] != "redis":
        return SoloCluster(name, reactor)
    where = parse_redis_url(config.queue["url"])
    return RedisCluster(where, name, reactor, ttl=parse_duration(hub["lease"]), prefix=hub["cluster"])
