"""
X recent search: each query is polled with C{GET /2/tweets/search/recent}.
The C{newest_id} of the first page is kept, C{next_token} is followed to the
end, and that id is sent as C{since_id} next time.  L{Pages} reads one
query that way, for L{XSearch} and for the stream's gap filling alike.
"""

from __future__ import annotations

import json
from typing import Callable, Optional

from twisted.internet.task import deferLater

from monitor.collect.base import FAILING
from monitor.collect.x.api import FIELDS, SEARCH, Failed, XClient
from monitor.collect.x.posts import Malformed, RecentIds, includes_index, newer, parse_tweet
from monitor.collect.x.queries import MAX_QUERY
from monitor.collect.x.source import XSource
from monitor.model import Post


class Pages:
    """
    Recent search's paging through one query, emitting its posts through
    the collector.  The last post read is held back until the caller
    flushes it with the cursor that counts once everything it asked for is
    read (a poll's queries, a gap's).
    """

    def __init__(self, collector, client: XClient, recent: RecentIds, max_results: int, max_pages: int) -> None:
        self.collector = collector
        self.client = client
        self.recent = recent
        self.max_results = max_results
        self.max_pages = max_pages
        self._held: Optional[Post] = None

    async def read(
        self, query: str, since_id: Optional[str], tag: str, on_page: Optional[Callable[[], None]] = None
    ) -> Optional[str]:
        """
        Read every page of one query newer than C{since_id}; emit the posts
        (holding back the last one for the cursor); return the first page's
        C{newest_id}.  C{on_page} is called for each page read.
        """
        c = self.collector
        params = [("query", query), ("max_results", str(self.max_results))] + FIELDS
        if since_id is not None:
            params.append(("since_id", since_id))
        newest = None
        pages = 0
        token = None
        while True:
            page = params + ([("next_token", token)] if token else [])
            response = await self.client.request("GET", SEARCH, "search", params=page)
            body = await self.client.json(response, f"search {tag!r}")
            pages += 1
            meta = body.get("meta")
            if not isinstance(meta, dict):
                c.malformed(json.dumps(body).encode()[:65536], "meta: missing or not an object", f"search {tag!r}")
                raise Failed("payload", "a search page without meta")
            if pages == 1:
                newest = meta.get("newest_id") if isinstance(meta.get("newest_id"), str) else None
            if on_page is not None:
                on_page()
            await self._emit_page(body, f"search {tag!r}", (tag,))
            token = meta.get("next_token")
            if not isinstance(token, str) or not token:
                return newest
            if since_id is None and pages >= self.max_pages:
                c.log.info(
                    "source {source}: first search of {tag!r}: kept {pages} pages, older posts left out",
                    source=c.name,
                    tag=tag,
                    pages=pages,
                )
                return newest

    async def _emit_page(self, body: dict, context: str, tags) -> None:
        c = self.collector
        data = body.get("data") or []
        if not isinstance(data, list):
            c.malformed(json.dumps(body).encode()[:65536], "data: not a list", context)
            raise Failed("payload", "data is not a list")
        self.client.partial(body, context)
        try:
            users, places, _ = includes_index(body.get("includes"))
        except Malformed as e:
            c.malformed(json.dumps(body.get("includes")).encode()[:65536], str(e), context)
            users, places = {}, {}
        now = c.reactor.seconds()
        for tweet in data:
            try:
                post = parse_tweet(tweet, c.name, users, places, now, tags)
            except Malformed as e:
                c.malformed(json.dumps(tweet).encode(), str(e), context)
                continue
            if self.recent.add(post.native_id):
                await self._hold(post)

    async def _hold(self, post: Post) -> None:
        """
        Emit the post held before, keep this one: the last post of a poll
        must carry the cursor, and which is last is known only at the end.
        """
        previous, self._held = self._held, post
        if previous is not None:
            await self.collector.emit(previous)

    async def flush(self, cursor: Optional[str]) -> None:
        """
        Emit the post held back, carrying C{cursor}.
        """
        post, self._held = self._held, None
        if post is not None:
            post.cursor = cursor
            await self.collector.emit(post)


class XSearch(XSource):
    """
    Posts from X's recent search, each query polled every C{poll_interval}
    seconds from the newest id it gave last.

    @ivar positions: the newest id seen per query.
    """

    mode = "search"
    max_query = MAX_QUERY

    def configure(self, *, max_results, max_pages, poll_interval, **_other_mode) -> None:
        self.poll_interval = poll_interval
        self.positions: dict[str, str] = {}
        self.pages = Pages(self, self.client, self.recent, max_results, max_pages)

    def cursor(self) -> str:
        current = {q for _, q in self.queries}
        return json.dumps({"since": {q: i for q, i in self.positions.items() if q in current}})

    def restore(self, doc: dict) -> None:
        since = doc.get("since") or {}
        self.positions = {q: i for q, i in since.items() if isinstance(q, str) and isinstance(i, str)}

    async def collect(self) -> None:
        while True:
            refused = 0
            for tag, query in self.queries:
                try:
                    newest = await self.pages.read(query, self.positions.get(query), tag, self.connected)
                except Failed as f:
                    await self.pages.flush(None)
                    if f.kind in ("query", "payload"):
                        refused += 1
                        self.note_error(f"query {tag!r}: {f}")
                        continue
                    await self.back_off(f)
                    break
                if newest is not None:
                    self.positions[query] = newer(self.positions.get(query), newest)
                await self.pages.flush(self.cursor())
            else:
                if refused == len(self.queries):
                    self.set_state(FAILING, self.last_error)
                await deferLater(self.reactor, self.poll_interval)


__all__ = ["Pages", "XSearch"]
