"""
What every hub stored, for every other hub: a Redis pub/sub channel.

The hub that stores a batch publishes it (compact JSON, after the store has
it, marked with the hub's name); every hub subscribes and hands what the
others stored to its listeners (the live channel, the alert engine while it
leads), never its own, which the pipeline already gave them.  Pub/sub is
fire-and-forget: the store has every post, the channel is only the live
view, so when Redis is slow publishing drops batches (counted) rather than
queueing them without bound, and a subscriber that falls too far behind is
cut off by Redis (its C{client-output-buffer-limit pubsub}) and reconnects.
"""

from __future__ import annotations

import json
from typing import Optional

import txredisapi
from twisted.application.service import Service
from twisted.internet.defer import Deferred, succeed
from twisted.internet.endpoints import HostnameEndpoint, UNIXClientEndpoint
from twisted.logger import Logger
from zope.interface import implementer

from monitor.interfaces import ISink
from monitor.model import Post

__all__ = ["StoredFeed", "encode_batch", "decode_batch"]

#: Most posts in one message (a big batch is published in several).
CHUNK = 200
#: Most messages being published at once; more are dropped.
MAX_IN_FLIGHT = 32

#: Post fields not sent: the collector's position is no business of other
#: hubs, and the collectors' private marks stay home.
_PRIVATE = ("cursor", "extra")


def encode_batch(hub: str, posts) -> str:
    """One message: C{{"hub": name, "posts": [post, ...]}}, compact."""
    wire = []
    for post in posts:
        d = post.to_dict()
        for name in _PRIVATE:
            d.pop(name, None)
        wire.append(d)
    return json.dumps({"hub": hub, "posts": wire}, ensure_ascii=False, separators=(",", ":"))


def decode_batch(message) -> tuple[str, list[Post]]:
    """
    The hub and posts of a message.  Raises C{ValueError} for anything
    that is not one.
    """
    try:
        d = json.loads(message)
        hub = d["hub"]
        posts = [Post.from_dict(p) for p in d["posts"]]
    except (TypeError, KeyError, AttributeError) as e:
        raise ValueError(f"not a batch of stored posts: {e}") from None
    if not isinstance(hub, str):
        raise ValueError("not a batch of stored posts: no hub name")
    return hub, posts


class _Subscriber(txredisapi.SubscriberProtocol):
    def messageReceived(self, pattern, channel, message):
        feed = self.factory.feed
        other = feed.also.get(channel)
        if other is not None:
            other(message)
        else:
            feed.on_message(message)

    def connectionLost(self, why):
        # What is published until the factory reconnects is not seen here.
        self.factory.feed.subscribed = False
        super().connectionLost(why)


class _SubscriberFactory(txredisapi.SubscriberFactory):
    """Subscribes every connection it makes, so a reconnect subscribes again."""

    protocol = _Subscriber

    def __init__(self, feed: "StoredFeed", password: Optional[str]) -> None:
        super().__init__(isLazy=True)
        self.feed = feed
        self.password = password
        self.convertNumbers = False

    def addConnection(self, conn):
        super().addConnection(conn)
        if conn.connected and not self.disconnectCalled:
            d = conn.subscribe(self.feed.channel)
            for channel in self.feed.also:
                # One channel per SUBSCRIBE: one reply each.
                d.addCallback(lambda _, channel=channel: conn.subscribe(channel))
            d.addCallback(lambda _: self.feed._now_subscribed())
            d.addErrback(
                lambda f: self.feed.log.failure("could not subscribe to {channel}", f, channel=self.feed.channel)
            )


@implementer(ISink)
class StoredFeed(Service):
    """
    Publish what this hub stores; hand what other hubs stored to
    C{listeners} (L{ISink}s).

    @param commands: a txredisapi connection for C{PUBLISH}.
    @param where: the connection arguments (L{monitor.queue.redis.parse_redis_url})
        of the subscribing connection, which is its own: a subscribed
        connection can do nothing else.
    @param also: other channels the same connection subscribes to, each
        with the callable given its messages (the cluster's change
        notices), so the hub needs one subscribed connection, not one per
        channel.
    @ivar dropped: posts not published because Redis was too slow.
    @ivar received: posts received from other hubs.
    """

    name = "feed"
    log = Logger()

    def __init__(self, commands, where: dict, channel: str, hub_name: str, reactor,
                 max_in_flight: int = MAX_IN_FLIGHT, chunk: int = CHUNK, also=None) -> None:  # fmt: skip
        self.commands = commands
        self.also: dict = dict(also or {})
        self.where = where
        self.channel = channel
        self.hub_name = hub_name
        self.reactor = reactor
        self.max_in_flight = max_in_flight
        self.chunk = chunk
        self.listeners: list = []
        self.in_flight = 0
        self.published = 0
        self.dropped = 0
        self.received = 0
        self.unreadable = 0
        self._factory: Optional[_SubscriberFactory] = None
        self.subscribed = False
        self._waiting: list[Deferred] = []

    def add_listener(self, sink) -> None:
        """Give C{sink} every batch stored by another hub."""
        self.listeners.append(ISink(sink))

    def _endpoint(self):
        w = self.where
        if "path" in w:
            return UNIXClientEndpoint(self.reactor, w["path"])
        return HostnameEndpoint(self.reactor, w["host"], w["port"])

    def startService(self):
        super().startService()
        self._factory = _SubscriberFactory(self, self.where.get("password"))
        self._factory.startConnecting(self._endpoint())

    def _now_subscribed(self) -> None:
        self.subscribed = True
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            d.callback(None)

    def when_subscribed(self) -> Deferred:
        """Fires once the subscription is in place (for a status, a test)."""
        if self.subscribed:
            return succeed(None)
        d = Deferred()
        self._waiting.append(d)
        return d

    def stopService(self):
        super().stopService()
        self.subscribed = False
        factory, self._factory = self._factory, None
        if factory is not None:
            return factory.disconnect()
        return None

    # -- publishing ------------------------------------------------------

    def posts_stored(self, posts) -> None:
        """L{ISink}: publish a stored batch; never waits, never grows."""
        if not self.running:
            return
        posts = list(posts)
        for start in range(0, len(posts), self.chunk):
            part = posts[start : start + self.chunk]
            if self.in_flight >= self.max_in_flight:
                if not self.dropped:
                    self.log.warn("Redis is slow: stored posts are not sent to the other hubs' live views")
                self.dropped += len(part)
                continue
            self.in_flight += 1
            d = self.commands.execute_command("PUBLISH", self.channel, encode_batch(self.hub_name, part))
            d.addCallbacks(self._published, self._not_published, callbackArgs=(len(part),), errbackArgs=(len(part),))

    def _published(self, _, count: int) -> None:
        self.in_flight -= 1
        self.published += count

    def _not_published(self, failure, count: int) -> None:
        self.in_flight -= 1
        self.dropped += count
        self.log.warn("could not publish {count} stored posts: {error}", count=count, error=failure.getErrorMessage())

    # -- receiving -------------------------------------------------------

    def on_message(self, message) -> None:
        """One message from the channel: another hub's batch, or ours."""
        try:
            hub, posts = decode_batch(message)
        except ValueError as e:
            self.unreadable += 1
            self.log.warn("ignoring an unreadable message on {channel}: {error}", channel=self.channel, error=e)
            return
        if hub == self.hub_name or not posts:
            return
        self.received += len(posts)
        for listener in self.listeners:
            try:
                listener.posts_stored(posts)
            except Exception:
                self.log.failure("listener {listener!r} failed on posts stored by {hub}", listener=listener, hub=hub)
