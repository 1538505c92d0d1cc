"""
X recent search: each query is polled with C{GET /2/tweets/search/recent}.
The C{newest_id} of the first page is kept, C{next_token} is followed to the
end, and that id is sent as C{since_id} next time.  The stream fills its
gaps the same way.
"""

from __future__ import annotations

import json
from typing import Optional

from twisted.internet.task import deferLater

from monitor.collect.base import FAILING
from monitor.collect.x.api import FIELDS, SEARCH, Failed
from monitor.collect.x.posts import Malformed, includes_index, newer, parse_tweet
from monitor.model import Post


class SearchMode:
    """
    Recent search, for L{monitor.collect.x.XSource}: the search mode's
    loop, and the paging through one query that the stream's gap filling
    uses too.  The last post of a poll is held back until the poll ends,
    so that it carries the cursor.

    Mixed into the source, it reads the source's C{queries},
    C{positions}, C{max_results}, C{max_pages} and C{poll_interval}, and
    asks through L{XClient}.
    """

    async def _run_search(self) -> None:
        while True:
            refused = 0
            for tag, query in self.queries:
                try:
                    newest = await self._page_through(query, self.positions.get(query), tag)
                except Failed as f:
                    await self._flush(None)
                    if f.kind in ("query", "payload"):
                        refused += 1
                        self._note_error(f"query {tag!r}: {f}")
                        continue
                    await self._back_off(f)
                    break
                if newest is not None:
                    self.positions[query] = newer(self.positions.get(query), newest)
                await self._flush(self._cursor())
            else:
                if refused == len(self.queries):
                    self.set_state(FAILING, self.last_error)
                await deferLater(self.reactor, self.poll_interval)

    async def _page_through(self, query: str, since_id: Optional[str], tag: str) -> Optional[str]:
        """
        Read every page of one query newer than C{since_id}; emit the posts
        (holding back the last one for the cursor); return the first page's
        C{newest_id}.
        """
        params = [("query", query), ("max_results", str(self.max_results))] + FIELDS
        if since_id is not None:
            params.append(("since_id", since_id))
        newest = None
        pages = 0
        token = None
        while True:
            page = params + ([("next_token", token)] if token else [])
            response = await self._request("GET", SEARCH, "search", params=page)
            body = await self._json(response, f"search {tag!r}")
            pages += 1
            meta = body.get("meta")
            if not isinstance(meta, dict):
                self.malformed(json.dumps(body).encode()[:65536], "meta: missing or not an object", f"search {tag!r}")
                raise Failed("payload", "a search page without meta")
            if pages == 1:
                newest = meta.get("newest_id") if isinstance(meta.get("newest_id"), str) else None
            if self.mode == "search":
                self._connected()
            await self._emit_page(body, f"search {tag!r}", (tag,))
            token = meta.get("next_token")
            if not isinstance(token, str) or not token:
                return newest
            if since_id is None and pages >= self.max_pages:
                self.log.info(
                    "source {source}: first search of {tag!r}: kept {pages} pages, older posts left out",
                    source=self.name,
                    tag=tag,
                    pages=pages,
                )
                return newest

    async def _emit_page(self, body: dict, context: str, tags) -> None:
        data = body.get("data") or []
        if not isinstance(data, list):
            self.malformed(json.dumps(body).encode()[:65536], "data: not a list", context)
            raise Failed("payload", "data is not a list")
        self._partial(body, context)
        try:
            users, places, _ = includes_index(body.get("includes"))
        except Malformed as e:
            self.malformed(json.dumps(body.get("includes")).encode()[:65536], str(e), context)
            users, places = {}, {}
        now = self.reactor.seconds()
        for tweet in data:
            try:
                post = parse_tweet(tweet, self.name, users, places, now, tags)
            except Malformed as e:
                self.malformed(json.dumps(tweet).encode(), str(e), context)
                continue
            if self._recent.add(post.native_id):
                await self._hold(post)

    async def _hold(self, post: Post) -> None:
        """
        Emit the post held before, keep this one: the last post of a poll
        must carry the cursor, and which is last is known only at the end.
        """
        previous, self._held = self._held, post
        if previous is not None:
            await self.emit(previous)

    async def _flush(self, cursor: Optional[str]) -> None:
        post, self._held = self._held, None
        if post is not None:
            post.cursor = cursor
            await self.emit(post)


__all__ = ["SearchMode"]
