"""
The production queue: a Redis stream shared by every hub.

Collectors C{XADD} each post to the stream.  Every hub reads through one
consumer group (C{XREADGROUP}), so a post goes to one hub, and acknowledges
it (C{XDEL}, then C{XACK}) only after the post and its collector's position
are committed in the store.  A hub that dies leaves what it had read in the
group's pending list; another takes it over (C{XAUTOCLAIM}) once it has been
idle for C{claim_after}.  The store is idempotent on the post's uid, so a
post read twice is stored once.

The stream is bounded without ever dropping: acknowledged entries are
deleted, so its length is what waits or is in flight, and a C{put} while it
holds C{max_length} entries waits until the hubs have made room, which
slows the collector exactly like the memory queue does.
"""

from __future__ import annotations

import json
import os
import socket
from collections import deque
from typing import Any, Optional

import txredisapi
from twisted.application.service import Service
from twisted.internet.defer import CancelledError, Deferred, DeferredList, ensureDeferred, succeed
from twisted.internet.task import LoopingCall, deferLater
from twisted.logger import Logger
from zope.interface import implementer

from monitor.backoff import Backoff
from monitor.config import default
from monitor.interfaces import IQueue
from monitor.model import Enriched, Post, Rejected
from monitor.queue.address import parse_redis_url
from monitor.redact import redact_url

__all__ = ["RedisQueue", "parse_redis_url", "default_consumer", "redis_connection"]

#: Seconds a blocking read waits at Redis before asking again (so that a
#: stop never waits long, and claims are looked for regularly).
_BLOCK = 1.0
#: Seconds between two looks at the stream's length while a put waits.
_LENGTH_EVERY = 0.1
#: Most seconds between two tries when Redis is unreachable.
_RETRY_CAP = 5.0


def default_consumer() -> str:
    """
    This hub's name in the consumer group when none is configured.
    """
    return f"{socket.gethostname()}:{os.getpid()}"


def redis_connection(where: dict[str, Any]):
    """
    A lazy, reconnecting txredisapi connection to C{where} (from
    L{parse_redis_url}): commands wait while Redis is away.
    """
    options = {
        "dbid": where["db"],
        "password": where["password"],
        "reconnect": True,
        "convertNumbers": False,
        "charset": "utf-8",
    }
    if "path" in where:
        return txredisapi.lazyUnixConnection(where["path"], **options)
    return txredisapi.lazyConnection(where["host"], where["port"], **options)


def _encode(item) -> tuple[str, str]:
    if isinstance(item, Rejected):
        return "r", json.dumps(
            {
                "source": item.source,
                "raw": item.raw.decode("latin-1"),
                "error": item.error,
                "context": item.context,
                "cursor": item.cursor,
                "received_at": item.received_at,
            }
        )
    if isinstance(item, Enriched):
        return "e", json.dumps(item.to_dict(), ensure_ascii=False)
    return "p", json.dumps(item.to_dict(), ensure_ascii=False)


def _decode(field: str, value: str):
    d = json.loads(value)
    if field == "r":
        d["raw"] = d["raw"].encode("latin-1")
        return Rejected(**d)
    if field == "e":
        return Enriched(**d)
    return Post.from_dict(d)


@implementer(IQueue)
class RedisQueue(Service):
    """
    L{IQueue} over a Redis stream (see the module docstring).

    @ivar consumer: this hub's name in the group; a hub restarted under the
        same name reads what it had in hand before anything new.
    """

    name = "queue"
    log = Logger()

    def __init__(
        self,
        url: str,
        stream: str = default("queue", "stream"),
        group: str = default("queue", "group"),
        consumer: Optional[str] = None,
        max_length: int = default("queue", "max_length"),
        claim_after: float = default("queue", "claim_after"),
        block: float = _BLOCK,
        reactor=None,
    ) -> None:
        if reactor is None:
            from twisted.internet import reactor
        self.reactor = reactor
        self.url = url
        self._where = parse_redis_url(url)
        self.stream = stream
        self.group = group
        self.consumer = consumer or default_consumer()
        self.max_length = max_length
        self.claim_after = claim_after
        self.block = block
        self._commands = None
        self._reader = None
        self._length = 0
        self._ids: dict[int, str] = {}
        self._unacked: list[str] = []
        self._putters: deque[Deferred] = deque()
        self._length_loop: Optional[LoopingCall] = None
        self._own_pending = True
        self._next_claim = 0.0
        self._claim_cursor = "0-0"

    # -- service ---------------------------------------------------------------

    def _connect(self):
        return redis_connection(self._where)

    def startService(self):
        super().startService()
        # Two connections: a blocking read holds its connection for up to
        # `block` seconds, and puts and acks must not wait behind it.
        self._commands = self._connect()
        self._reader = self._connect()
        self._length_loop = LoopingCall(self._refresh_length)
        self._length_loop.clock = self.reactor
        self._length_loop.start(_LENGTH_EVERY, now=False).addErrback(
            lambda f: self.log.failure("the stream length loop stopped", f)
        )
        # Not awaited: a Redis that is down must not hold up the hub's start
        # (the web UI says what is wrong); reads wait for the group.
        self._group = ensureDeferred(self._ensure_group())
        self._group.addErrback(lambda f: self.log.failure("could not create the consumer group", f))

    async def _ensure_group(self) -> None:
        backoff = Backoff(first=0.1, cap=_RETRY_CAP, jitter=0.0)
        while self.running:
            try:
                await self._commands.execute_command("XGROUP", "CREATE", self.stream, self.group, "0", "MKSTREAM")
                return
            except txredisapi.ResponseError as e:
                if "BUSYGROUP" in str(e):
                    return
                raise
            except txredisapi.ConnectionError as e:
                delay = backoff.next()
                self.log.warn(
                    "cannot reach Redis at {url} ({error}); retrying in {delay}s",
                    url=self._safe_url(),
                    error=e,
                    delay=delay,
                )
                await deferLater(self.reactor, delay)

    def stopService(self):
        super().stopService()
        if self._length_loop is not None and self._length_loop.running:
            self._length_loop.stop()
        for d in list(self._putters):
            d.cancel()
        ds = []
        for connection in (self._reader, self._commands):
            if connection is not None:
                ds.append(connection.disconnect())
        self._reader = self._commands = None
        return DeferredList(ds, consumeErrors=True)

    def _safe_url(self) -> str:
        return redact_url(self.url)

    # -- IQueue ----------------------------------------------------------------

    def size(self) -> int:
        """
        Entries in the stream as last seen: waiting or in some hub's hands.
        """
        return self._length

    def drained(self) -> bool:
        # What this hub has not read stays in the stream for the others
        # (or for this one after a restart): nothing to drain before a stop.
        return True

    @property
    def capacity(self) -> int:
        return self.max_length

    def waiting_puts(self) -> int:
        return len(self._putters)

    def put(self, post) -> Deferred:
        return ensureDeferred(self._put(post))

    async def _put(self, post) -> None:
        while self._length >= self.max_length:
            d = Deferred()
            self._putters.append(d)
            try:
                await d
            finally:
                if d in self._putters:
                    self._putters.remove(d)
        field, value = _encode(post)
        backoff = Backoff(first=0.1, cap=_RETRY_CAP, jitter=0.0)
        while True:
            try:
                await self._commands.execute_command("XADD", self.stream, "*", field, value)
                self._length += 1
                return
            except txredisapi.ConnectionError as e:
                if not self.running:
                    raise
                delay = backoff.next()
                self.log.warn("could not add a post to Redis ({error}); retrying in {delay}s", error=e, delay=delay)
                await deferLater(self.reactor, delay)

    def get(self, max_items: int) -> Deferred:
        return ensureDeferred(self._get(max_items))

    async def _get(self, max_items: int) -> list:
        backoff = Backoff(first=0.1, cap=_RETRY_CAP, jitter=0.0)
        while True:
            if not self.running or self._reader is None:
                raise CancelledError()
            try:
                batch = await self._read(max_items)
            except CancelledError:
                raise
            except (txredisapi.ConnectionError, txredisapi.ResponseError) as e:
                if not self.running:
                    raise CancelledError() from e
                if "NOGROUP" in str(e):
                    await self._ensure_group()
                    continue
                delay = backoff.next()
                self.log.warn("could not read from Redis ({error}); retrying in {delay}s", error=e, delay=delay)
                await deferLater(self.reactor, delay)
                continue
            if batch:
                return batch
            if not self.running:
                raise CancelledError()

    async def _read(self, max_items: int) -> list:
        """
        One look: what this consumer had in hand before a restart, then what
        a dead hub left (after C{claim_after}), then new entries.
        """
        if self._own_pending:
            reply = await self._reader.execute_command(
                "XREADGROUP", "GROUP", self.group, self.consumer, "COUNT", str(max_items), "STREAMS", self.stream, "0"
            )
            entries = _entries(reply)
            if entries:
                return self._posts(entries)
            self._own_pending = False
        now = self.reactor.seconds()
        if now >= self._next_claim:
            reply = await self._reader.execute_command(
                "XAUTOCLAIM",
                self.stream,
                self.group,
                self.consumer,
                str(int(self.claim_after * 1000)),
                self._claim_cursor,
                "COUNT",
                str(max_items),
            )
            cursor, claimed = reply[0], reply[1]
            self._claim_cursor = cursor
            if cursor == "0-0":
                # Looked through the whole pending list: rest a while.
                self._next_claim = now + max(0.05, self.claim_after / 4)
            claimed = [e for e in claimed if e and e[1] is not None]
            if claimed:
                self.log.info("took over {count} posts another hub had read and not finished", count=len(claimed))
                return self._posts(claimed)
        reply = await self._reader.execute_command(
            "XREADGROUP",
            "GROUP",
            self.group,
            self.consumer,
            "COUNT",
            str(max_items),
            "BLOCK",
            str(int(self.block * 1000)),
            "STREAMS",
            self.stream,
            ">",
        )
        return self._posts(_entries(reply))

    def _posts(self, entries: list) -> list:
        posts = []
        bad = []
        for entry_id, fields in entries:
            if not fields:
                bad.append(entry_id)
                continue
            try:
                item = _decode(fields[0], fields[1])
            except (ValueError, TypeError, KeyError) as e:
                self.log.error("dropping an unreadable stream entry {id}: {error}", id=entry_id, error=e)
                bad.append(entry_id)
                continue
            self._ids[id(item)] = entry_id
            posts.append(item)
        if bad:
            self._unacked.extend(bad)
        return posts

    def ack(self, posts) -> Deferred:
        ids = self._unacked + [self._ids.pop(id(p)) for p in posts if id(p) in self._ids]
        self._unacked = []
        if not ids:
            return succeed(None)
        return ensureDeferred(self._ack(ids))

    async def _ack(self, ids: list[str]) -> None:
        try:
            # Deleted first: a hub that dies between the two leaves entries
            # that are gone but still pending, which the next XAUTOCLAIM
            # clears; the other order would leave acknowledged entries in
            # the stream for ever.
            await self._commands.execute_command("XDEL", self.stream, *ids)
            await self._commands.execute_command("XACK", self.stream, self.group, *ids)
        except txredisapi.ConnectionError as e:
            # Stored already: the next ack carries these; if this hub dies
            # first, another reads them again and the store ignores them.
            self.log.warn("could not acknowledge {count} posts ({error}); will retry", count=len(ids), error=e)
            self._unacked.extend(ids)
            return
        self._length = max(0, self._length - len(ids))
        self._admit()

    # -- length and backpressure ----------------------------------------------

    async def _refresh_length(self) -> None:
        if self._commands is None:
            return
        try:
            self._length = int(await self._commands.execute_command("XLEN", self.stream))
        except (txredisapi.ConnectionError, txredisapi.ResponseError, ValueError):
            return
        if self._unacked:
            ids, self._unacked = self._unacked, []
            await self._ack(ids)
        self._admit()

    def _admit(self) -> None:
        room = self.max_length - self._length
        while self._putters and room > 0:
            self._putters.popleft().callback(None)
            room -= 1


def _entries(reply) -> list:
    """
    The entries of an C{XREADGROUP} reply for one stream (none: C{[]}).
    """
    if not reply:
        return []
    # [[stream, [[id, [field, value, ...]], ...]]]
    return [(e[0], e[1]) for e in reply[0][1]]
