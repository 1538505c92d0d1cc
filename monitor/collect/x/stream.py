"""
X's filtered stream: C{GET /2/tweets/search/stream} is newline-delimited
JSON with a bare C{\\r\\n} keep-alive every 20 s.  After any gap (a
restart, a dropped connection) the stream fills it from recent search
(L{monitor.collect.x.search.Pages}) with C{since_id} set to the last post
it saw, so a disconnect loses nothing.  The rules are kept equal to the
queries by L{monitor.collect.x.rules.RuleSync}.
"""

from __future__ import annotations

import json
from typing import Optional

from twisted.internet.defer import CancelledError, ensureDeferred

from monitor.collect.base import BACKING_OFF
from monitor.collect.framing import LineStream
from monitor.collect.x.api import FIELDS, STREAM, Failed
from monitor.collect.x.posts import Malformed, includes_index, newer, parse_tweet
from monitor.collect.x.rules import RuleSync
from monitor.collect.x.search import Pages
from monitor.collect.x.source import XSource

#: Most bytes of one stream line.
MAX_LINE = 1 << 20


class XStream(XSource):
    """
    Posts from X's filtered stream: sync the rules, connect, fill the gap
    from recent search, read; reconnect when it ends.

    @ivar last_id: the newest id the stream delivered.
    """

    mode = "stream"
    #: The longest rule the stream takes.
    max_query = 1024

    def configure(self, *, max_results, max_pages, stall_timeout, recover, backfill_minutes, **_other_mode) -> None:
        self.stall_timeout = stall_timeout
        self.recover = recover
        self.backfill_minutes = backfill_minutes
        self.last_id: Optional[str] = None
        self.rules = RuleSync(self, self.client)
        #: Recent search, to fill the gaps.
        self.pages = Pages(self, self.client, self.recent, max_results, max_pages)

    def cursor(self) -> str:
        return json.dumps({"last_id": self.last_id})

    def restore(self, doc: dict) -> None:
        last = doc.get("last_id")
        self.last_id = last if isinstance(last, str) else None

    def rate_wait(self, backoff: float, reset: float) -> float:
        # Too many connections is a 429 too: never reconnect sooner than
        # the growing backoff.
        return max(backoff, reset)

    def topics_changed(self) -> None:
        """
        Searches read the topics at every poll; the stream's rules are
        re-synced now, without reconnecting.
        """
        d = ensureDeferred(self.rules.sync())
        d.addErrback(
            lambda f: self.log.failure("source {source}: could not sync the stream's rules", f, source=self.name)
        )

    async def collect(self) -> None:
        synced = False
        reconnect = False
        while True:
            try:
                if not synced:
                    await self.rules.sync()
                    synced = True
                got_data = await self._stream_once(reconnect)
            except Failed as f:
                await self.pages.flush(None)
                if f.status == 409:
                    synced = False
                await self.back_off(f)
                continue
            reconnect = True
            if got_data:
                # An established stream dropped: reconnect at once.
                self.network_backoff.reset()
            else:
                await self.wait(self.network_backoff.next(), BACKING_OFF)

    async def _fill_gap(self) -> None:
        """
        Search for what the stream missed since its last post, query by
        query; the cursor moves only once every query is done.
        """
        since = self.last_id
        newest = since
        for tag, query in self.queries:
            try:
                found = await self.pages.read(query, since, tag)
            except Failed as f:
                if f.kind not in ("query", "client", "payload"):
                    raise
                self.log.warn(
                    "source {source}: could not fill the stream's gap after {since} for {tag!r}: {error}",
                    source=self.name,
                    since=since,
                    tag=tag,
                    error=str(f),
                )
                continue
            newest = newer(newest, found)
        self.last_id = newest
        await self.pages.flush(self.cursor())

    async def _stream_once(self, reconnect: bool) -> bool:
        """
        Read the stream until it ends; C{True} if it delivered anything.
        """
        params = list(FIELDS)
        if reconnect and self.backfill_minutes:
            params.append(("backfill_minutes", str(self.backfill_minutes)))
        response = await self.client.request("GET", STREAM, "stream", params=params)
        self.connected()
        stream = LineStream(
            self.reactor,
            self.stall_timeout,
            lambda head: self.malformed(head, f"line longer than {MAX_LINE} bytes", "stream"),
            MAX_LINE,
        )
        if self.recover and self.last_id is not None:
            # Connected first, so nothing falls between the search and the
            # stream; Twisted holds the unread body (its transport paused)
            # until deliverBody.
            try:
                await self._fill_gap()
            except BaseException:
                response.deliverBody(stream)
                stream.abort()
                raise
        response.deliverBody(stream)
        got_data = False
        while True:
            line = await stream.next()
            if line is None:
                break
            got_data = True
            if line.strip():
                await self._stream_line(line)
        if stream.pending.strip():
            self.malformed(stream.pending[:65536], "truncated line at the end of the stream", "stream")
        if stream.stalled:
            why = f"nothing, not even a keep-alive, for {self.stall_timeout:g}s"
        elif stream.reason is not None and not stream.reason.check(CancelledError):
            why = stream.reason.getErrorMessage() or stream.reason.type.__name__
        else:
            why = "closed"
        self.log.info("source {source}: the stream ended ({why}); reconnecting", source=self.name, why=why)
        self.note_error(f"stream ended: {why}")
        return got_data

    async def _stream_line(self, line: bytes) -> None:
        try:
            obj = json.loads(line)
        except (ValueError, UnicodeDecodeError):
            self.malformed(line, "invalid JSON", "stream")
            return
        if not isinstance(obj, dict):
            self.malformed(line, "not a JSON object", "stream")
            return
        if "data" not in obj:
            if isinstance(obj.get("errors"), list):
                self.client.partial(obj, "stream")
            else:
                self.malformed(line, "neither data nor errors", "stream")
            return
        self.client.partial(obj, "stream")
        rules = obj.get("matching_rules")
        tags = [r.get("tag") for r in rules if isinstance(r, dict)] if isinstance(rules, list) else []
        try:
            users, places, _ = includes_index(obj.get("includes"))
            post = parse_tweet(obj["data"], self.name, users, places, self.reactor.seconds(), tags)
        except Malformed as e:
            self.malformed(line, str(e), "stream")
            return
        self.last_id = newer(self.last_id, post.native_id)
        if self.recent.add(post.native_id):
            post.cursor = self.cursor()
            await self.emit(post)


__all__ = ["MAX_LINE", "XStream"]
