"""
X (Twitter) API v2: recent search polling and the filtered stream.

Search mode polls C{GET /2/tweets/search/recent} once per query: the
C{newest_id} of the first page is kept, C{next_token} is followed to the end,
and that id is sent as C{since_id} next time.  Stream mode keeps the app's
filtered-stream rules equal to the configured queries (tagged by topic) and
reads C{GET /2/tweets/search/stream}: newline-delimited JSON with a bare
C{\\r\\n} keep-alive every 20 s.  After any gap (a restart, a dropped
connection) the stream fills it from recent search with C{since_id} set to
the last post it saw, so a disconnect loses nothing.

Reconnects follow X's documented policy: linear (+250 ms, at most 16 s) for
network errors, exponential from 5 s (at most 320 s) for HTTP errors,
exponential from one minute for 429.  A window whose
C{x-rate-limit-remaining} is zero is waited out until its
C{x-rate-limit-reset}.
"""

from __future__ import annotations

import json
from typing import Optional

from monitor.collect.base import FAILING
from monitor.collect.x.api import XClient
from monitor.collect.x.posts import RecentIds
from monitor.collect.x.queries import MAX_QUERY, queries_for
from monitor.collect.x.rules import RuleSync
from monitor.collect.x.search import SearchMode
from monitor.collect.x.stream import StreamMode


#: Ids remembered to drop duplicates (a page boundary shifting, a gap
#: filled from search that the stream also delivered).
RECENT_IDS = 20000


class XSource(StreamMode, RuleSync, SearchMode, XClient):
    """
    Posts from X API v2, by recent search or the filtered stream.

    @ivar positions: search mode: the newest id seen per query.
    @ivar last_id: stream mode: the newest id the stream delivered.
    """

    kind = "x"
    network = "x"

    def __init__(
        self,
        name,
        queue,
        store,
        metrics,
        bearer_token,
        base_url="https://api.x.com",
        mode="search",
        queries=(),
        topics=(),
        poll_interval=60.0,
        max_results=100,
        max_pages=5,
        exclude_retweets=True,
        stall_timeout=30.0,
        recover=True,
        backfill_minutes=0,
        request_timeout=30.0,
        reactor=None,
    ):
        super().__init__(name, queue, store, metrics, bearer_token, base_url, request_timeout, reactor=reactor)
        self.mode = mode
        self._queries = queries
        # A TopicSet (live: edits in the web UI apply) or a plain list.
        self._topics = topics
        self.exclude_retweets = exclude_retweets
        self.poll_interval = poll_interval
        self.max_results = max_results
        self.max_pages = max_pages
        self.stall_timeout = stall_timeout
        self.recover = recover
        self.backfill_minutes = backfill_minutes
        self.positions: dict[str, str] = {}
        self.last_id: Optional[str] = None
        self._recent = RecentIds(RECENT_IDS)
        #: Search: the last post read, held back to carry the cursor.
        self._held = None

    def status(self):
        s = super().status()
        s["mode"] = self.mode
        s["queries"] = len(self.queries)
        s["partial_errors"] = self.partial_errors
        return s

    async def run(self) -> None:
        self._load(await self.store.get_cursor(self.name))
        limit = MAX_QUERY if self.mode == "search" else 1024
        for tag, q in self.queries:
            if len(q) > limit:
                self.log.warn(
                    "source {source}: the query for {tag!r} is {length} characters; X takes at most {limit}",
                    source=self.name,
                    tag=tag,
                    length=len(q),
                    limit=limit,
                )
        if not self.queries:
            self.set_state(FAILING, "nothing to ask X: no queries and no topic with a searchable term")
            return
        if self.mode == "stream":
            await self._run_stream()
        else:
            await self._run_search()

    @property
    def queries(self) -> list[tuple[str, str]]:
        """
        (tag, query) pairs: the configured queries, else built from the
        topics as they are now.
        """
        topics = getattr(self._topics, "topics", self._topics)
        return queries_for(self.name, self._queries, topics, self.exclude_retweets)

    def startService(self):
        super().startService()
        listeners = getattr(self._topics, "listeners", None)
        if listeners is not None and not self._queries:
            listeners.append(self._topics_changed)

    def stopService(self):
        listeners = getattr(self._topics, "listeners", None)
        if listeners is not None and self._topics_changed in listeners:
            listeners.remove(self._topics_changed)
        return super().stopService()

    def _cursor(self) -> str:
        if self.mode == "stream":
            return json.dumps({"last_id": self.last_id})
        current = {q for _, q in self.queries}
        return json.dumps({"since": {q: i for q, i in self.positions.items() if q in current}})

    def _load(self, cursor: Optional[str]) -> None:
        if not cursor:
            return
        try:
            doc = json.loads(cursor)
            since = doc.get("since") or {}
            self.positions = {q: i for q, i in since.items() if isinstance(q, str) and isinstance(i, str)}
            last = doc.get("last_id")
            self.last_id = last if isinstance(last, str) else None
        except (ValueError, AttributeError):
            self.log.warn(
                "source {source}: unreadable saved position {cursor!r}; starting afresh",
                source=self.name,
                cursor=cursor[:200],
            )


__all__ = ["XSource"]
