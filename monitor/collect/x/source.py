"""
X (Twitter) API v2: what the two X services share.  L{XSource} is either
L{monitor.collect.x.search.XSearch} (recent search, polled) or
L{monitor.collect.x.stream.XStream} (the filtered stream, its gaps filled
from recent search), as C{mode} says: C{XSource(..., mode="stream")} builds
an C{XStream}, and the kinds table (L{monitor.collect.kinds}) picks the
same way.

What they share they hold as collaborators: the API client with its
rate-limit windows (L{XClient}), the paging through recent search
(L{monitor.collect.x.search.Pages}: the stream fills its gaps with it), and
here the queries from the topics, the stored position and the reconnect
policy.
Reconnects follow X's documented policy: linear (+250 ms, at most 16 s)
for network errors, exponential from 5 s (at most 320 s) for HTTP errors,
exponential from one minute for 429.
"""

from __future__ import annotations

import json
from typing import Optional

from monitor.backoff import Backoff
from monitor.collect.base import BACKING_OFF, CONNECTED, FAILING, RATE_LIMITED
from monitor.collect.http import HTTPCollector
from monitor.collect.kinds import SOURCE_KINDS
from monitor.collect.x.api import Failed, XClient
from monitor.collect.x.posts import RecentIds
from monitor.collect.x.queries import queries_for

#: Ids remembered to drop duplicates (a page boundary shifting, a gap
#: filled from search that the stream also delivered).
RECENT_IDS = 20000

#: The keys' defaults, from the kinds table (written there only).
DEFAULTS = SOURCE_KINDS["x"].defaults()


class XSource(HTTPCollector):
    """
    Posts from X API v2: the part of the search and stream services that
    is alike.  Called itself, the class builds the service C{mode} names;
    a subclass is its mode and reads only its own keys.

    @ivar client: the API client (L{XClient}).
    @ivar recent: the ids seen lately, to drop duplicates.
    """

    kind = "x"
    network = "x"
    #: C{"search"} or C{"stream"}: set by each service.
    mode: str

    def __new__(cls, name, queue, store, metrics, bearer_token, base_url=None, mode=DEFAULTS["mode"], *args, **kwargs):
        # The arguments are __init__'s (mode among them, by name or by place).
        if cls is XSource:
            cls = SOURCE_KINDS["x"].load({"mode": mode})
        return super().__new__(cls)

    def __init__(
        self,
        name,
        queue,
        store,
        metrics,
        bearer_token,
        base_url=DEFAULTS["base_url"],
        mode=DEFAULTS["mode"],
        queries=DEFAULTS["queries"],
        topics=(),
        poll_interval=DEFAULTS["poll_interval"],
        max_results=DEFAULTS["max_results"],
        max_pages=DEFAULTS["max_pages"],
        exclude_retweets=DEFAULTS["exclude_retweets"],
        stall_timeout=DEFAULTS["stall_timeout"],
        recover=DEFAULTS["recover"],
        backfill_minutes=DEFAULTS["backfill_minutes"],
        request_timeout=DEFAULTS["request_timeout"],
        reactor=None,
    ):
        super().__init__(name, queue, store, metrics, reactor=reactor)
        self._queries = queries
        # A TopicSet (live: edits in the web UI apply) or a plain list.
        self._topics = topics
        self.exclude_retweets = exclude_retweets
        self.client = XClient(self, bearer_token, base_url, request_timeout)
        self.recent = RecentIds(RECENT_IDS)
        # X's reconnect policy (handling-disconnections).
        self.network_backoff = Backoff(first=0.25, step=0.25, cap=16.0, jitter=0.1)
        self.http_backoff = Backoff(first=5.0, cap=320.0, jitter=0.1)
        self.rate_backoff = Backoff(first=60.0, cap=960.0, jitter=0.1)
        self.configure(
            max_results=max_results,
            max_pages=max_pages,
            poll_interval=poll_interval,
            stall_timeout=stall_timeout,
            recover=recover,
            backfill_minutes=backfill_minutes,
        )

    def configure(self, **options) -> None:
        """
        Take the keys of this service's mode from C{options} and build
        its collaborators.
        """
        raise NotImplementedError

    @property
    def partial_errors(self) -> int:
        return self.client.partial_errors

    @property
    def bearer_token(self) -> str:
        return self.client.bearer_token

    @bearer_token.setter
    def bearer_token(self, token: str) -> None:
        self.client.bearer_token = token

    def status(self):
        s = super().status()
        s["mode"] = self.mode
        s["queries"] = len(self.queries)
        s["partial_errors"] = self.partial_errors
        return s

    @property
    def queries(self) -> list[tuple[str, str]]:
        """
        (tag, query) pairs: the configured queries, else built from the
        topics as they are now.
        """
        topics = getattr(self._topics, "topics", self._topics)
        return queries_for(self.name, self._queries, topics, self.exclude_retweets)

    # The mode's part.

    #: The longest query the mode's endpoint takes.
    max_query: int

    async def collect(self) -> None:
        """
        Read X for as long as the service runs.
        """
        raise NotImplementedError

    def cursor(self) -> str:
        """
        The position to store with a post.
        """
        raise NotImplementedError

    def restore(self, doc: dict) -> None:
        """
        Take up the position of a stored cursor document.
        """

    def topics_changed(self) -> None:
        """
        The topics were edited (only when the queries are built from them).
        """

    # The service.

    async def run(self) -> None:
        self._load(await self.store.get_cursor(self.name))
        for tag, q in self.queries:
            if len(q) > self.max_query:
                self.log.warn(
                    "source {source}: the query for {tag!r} is {length} characters; X takes at most {limit}",
                    source=self.name,
                    tag=tag,
                    length=len(q),
                    limit=self.max_query,
                )
        if not self.queries:
            self.set_state(FAILING, "nothing to ask X: no queries and no topic with a searchable term")
            return
        await self.collect()

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

    def _topics_changed(self) -> None:
        if self.running:
            self.topics_changed()

    def _load(self, cursor: Optional[str]) -> None:
        if not cursor:
            return
        try:
            doc = json.loads(cursor)
            if not isinstance(doc, dict):
                raise ValueError(cursor)
            self.restore(doc)
        except (ValueError, AttributeError):
            self.log.warn(
                "source {source}: unreadable saved position {cursor!r}; starting afresh",
                source=self.name,
                cursor=cursor[:200],
            )

    # Answers and waits.

    def connected(self) -> None:
        """
        X answered: the HTTP and rate backoffs start over.
        """
        self.http_backoff.reset()
        self.rate_backoff.reset()
        self.set_state(CONNECTED)

    def note_error(self, message: str) -> None:
        self.last_error = message

    async def back_off(self, failure: Failed) -> None:
        """
        Wait as X's policy says for this failure.
        """
        if failure.kind == "rate":
            delay = self.rate_backoff.next()
            if failure.wait is not None:
                delay = self.rate_wait(delay, failure.wait)
            await self.wait(delay, RATE_LIMITED, str(failure))
        elif failure.kind == "network":
            await self.wait(self.network_backoff.next(), BACKING_OFF, str(failure))
        else:
            state = FAILING if failure.kind == "client" else BACKING_OFF
            await self.wait(self.http_backoff.next(), state, str(failure))

    def rate_wait(self, backoff: float, reset: float) -> float:
        """
        The wait after a 429 whose window resets in C{reset} seconds: a
        search waits for the reset.
        """
        return reset


__all__ = ["DEFAULTS", "RECENT_IDS", "XSource"]
