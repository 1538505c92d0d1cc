"""
X's filtered stream: C{GET /2/tweets/search/stream} is newline-delimited
JSON with a bare C{\\r\\n} keep-alive every 20 s.  After any gap (a
restart, a dropped connection) the stream fills it from recent search with
C{since_id} set to the last post it saw, so a disconnect loses nothing.
"""

from __future__ import annotations

import json

from twisted.internet.defer import CancelledError

from monitor.collect.base import BACKING_OFF
from monitor.collect.framing import LineStream
from monitor.collect.x.api import FIELDS, STREAM, Failed
from monitor.collect.x.posts import Malformed, includes_index, newer, parse_tweet

#: Most bytes of one stream line.
MAX_LINE = 1 << 20


class StreamMode:
    """
    The stream mode's loop, for L{monitor.collect.x.XSource}: sync the
    rules, connect, fill the gap, read; reconnect when it ends.  Mixed
    into the source, it keeps the source's C{last_id}, fills gaps with
    L{SearchMode}'s paging and asks through L{XClient}.
    """

    async def _run_stream(self) -> None:
        synced = False
        reconnect = False
        while True:
            try:
                if not synced:
                    await self._sync_rules()
                    synced = True
                got_data = await self._stream_once(reconnect)
            except Failed as f:
                await self._flush(None)
                if f.status == 409:
                    synced = False
                await self._back_off(f, stream=True)
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
                found = await self._page_through(query, since, tag)
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
        await self._flush(self._cursor())

    async def _stream_once(self, reconnect: bool) -> bool:
        """
        Read the stream until it ends; C{True} if it delivered anything.
        """
        params = list(FIELDS)
        if reconnect and self.backfill_minutes:
            params.append(("backfill_minutes", str(self.backfill_minutes)))
        response = await self._request("GET", STREAM, "stream", params=params)
        self._connected()
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
        self._note_error(f"stream ended: {why}")
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
                self._partial(obj, "stream")
            else:
                self.malformed(line, "neither data nor errors", "stream")
            return
        self._partial(obj, "stream")
        rules = obj.get("matching_rules")
        tags = [r.get("tag") for r in rules if isinstance(r, dict)] if isinstance(rules, list) else []
        try:
            users, places, _ = includes_index(obj.get("includes"))
            post = parse_tweet(obj["data"], self.name, users, places, self.reactor.seconds(), tags)
        except Malformed as e:
            self.malformed(line, str(e), "stream")
            return
        self.last_id = newer(self.last_id, post.native_id)
        if self._recent.add(post.native_id):
            post.cursor = self._cursor()
            await self.emit(post)


__all__ = ["MAX_LINE", "StreamMode"]
