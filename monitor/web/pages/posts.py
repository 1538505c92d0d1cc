"""
Searching the stored posts, and their export as CSV or JSON.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from typing import Any, Optional
from urllib.parse import urlencode

from klein import Klein
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IPushProducer
from zope.interface import implementer

from monitor.model import LABELS, SENTIMENTS, iso8601
from monitor.query import parse as parse_query
from monitor.store import MAX_LIMIT, QUERY_SCAN, PostQuery
from monitor.web.pages.base import Area, Shell, page
from monitor.web.params import Params, post_query, store_problem
from monitor.web.tryit import post_segments

#: Most rows one export writes.
EXPORT_MAX = 100_000
#: The posts page counts its matches up to this many ("10,000+").
COUNT_MOST = 10_000

_FORMULA = ("=", "+", "-", "@", "\t", "\r")


def _csv_cell(value: Any) -> Any:
    """
    Spreadsheets run a cell that starts with C{=}, C{+}, C{-} or C{@} as a
    formula; post text is written by strangers, so such cells get a quote.
    """
    if isinstance(value, str) and value.startswith(_FORMULA):
        return "'" + value
    return value


@implementer(IPushProducer)
class _Flow:
    """
    Backpressure for a long response: the request pauses us when the
    client reads slowly, and the exporter waits before the next page.
    """

    def __init__(self) -> None:
        self._waiting: Optional[Deferred] = None
        self.paused = False
        self.stopped = False

    def pauseProducing(self):
        self.paused = True

    def resumeProducing(self):
        self.paused = False
        if self._waiting is not None:
            d, self._waiting = self._waiting, None
            d.callback(None)

    def stopProducing(self):
        self.stopped = True
        self.resumeProducing()

    def ready(self) -> Deferred:
        if not self.paused:
            return succeed(None)
        self._waiting = Deferred()
        return self._waiting


class PostPages(Area):
    """
    C{/posts}, C{/posts/export.csv} and C{/posts/export.json}.
    """

    app = Klein()

    def __init__(self, shell: Shell, store, topics, sources, stories) -> None:
        super().__init__(shell)
        self.store = store
        self.topics = topics
        self.sources = sources
        self.stories = stories

    @staticmethod
    def _post_query(request, limit: int) -> tuple[PostQuery, dict[str, str]]:
        """
        The posts page's search, read by the API's parser: the query and
        the problems by field (a deleted topic's posts keep its name, so any
        topic may be searched).
        """
        params = Params(request, collect=True)
        query = post_query(params, limit, limit)
        return query, params.errors

    @app.route("/posts", methods=["GET"])
    @page()
    async def posts(self, request, session):
        form = self._form(request)
        query, errors = self._post_query(request, 50)
        posts, following, total = [], None, 0
        if not errors:
            try:
                posts, following = await self.store.query_posts(query)
                total = await self.store.count_matching(query, COUNT_MOST + 1)
            except ValueError as e:
                problem = store_problem(e, "q")
                errors[problem.name] = problem.message
        tree = parse_query(query.query) if query.query else None
        marks = {p["id"]: post_segments(tree, p) for p in posts} if tree is not None else {}
        filters = {
            k: self._one(form, k)
            for k in ("q", "query", "topic", "source", "sentiment", "label", "since", "until", "story")
        }
        present = {k: v for k, v in filters.items() if v}
        story = self._story_heading(query.story) if query.story and "story" not in errors else None
        return self._render(
            request,
            session,
            "posts.html",
            status=400 if errors else 200,
            active="posts",
            posts=posts,
            story=story,
            marks=marks,
            query_scan=QUERY_SCAN,
            total=min(total, COUNT_MOST),
            total_capped=total > COUNT_MOST,
            errors=errors,
            filters=filters,
            topics=sorted(set(self._topic_names()) | ({filters["topic"]} if filters["topic"] else set())),
            sources=self._sources(),
            sentiments=SENTIMENTS,
            labels=LABELS,
            next_url="/posts?" + urlencode({**present, "cursor": following}) if following else None,
            first_url="/posts?" + urlencode(present) if self._one(form, "cursor") else None,
            export_csv="/posts/export.csv?" + urlencode(present),
            export_json="/posts/export.json?" + urlencode(present),
        )

    def _story_heading(self, story_id: str) -> dict[str, Any]:
        """
        What the posts page says of the story it shows: its words, size and
        sources while the hub still holds it (a faded story keeps its posts).
        """
        story = self.stories.get(story_id)
        if story is None:
            return {"id": story_id, "known": False}
        return {"id": story_id, "known": True, "terms": story.get("terms") or [], "size": story.get("size"),
                "sources": story.get("sources") or {}}  # fmt: skip

    @app.route("/posts/export.csv", methods=["GET"])
    @page()
    async def export_csv(self, request, session):
        return await self._export(request, "csv")

    @app.route("/posts/export.json", methods=["GET"])
    @page()
    async def export_json(self, request, session):
        return await self._export(request, "json")

    async def _export(self, request, kind: str):
        query, errors = self._post_query(request, MAX_LIMIT)
        query = dataclasses.replace(query, cursor=None)
        if errors:
            field, message = next(iter(errors.items()))
            return self._json(request, 400, {"error": message, "parameter": field})
        try:
            posts, following = await self.store.query_posts(query)
        except ValueError as e:
            raise store_problem(e, "q")
        stamp = iso8601(self.reactor.seconds()).replace(":", "").replace(".000", "")
        if kind == "csv":
            request.setHeader(b"content-type", b"text/csv; charset=utf-8")
        else:
            request.setHeader(b"content-type", b"application/json; charset=utf-8")
        request.setHeader(b"content-disposition", f'attachment; filename="posts-{stamp}.{kind}"'.encode("ascii"))
        request.setHeader(b"cache-control", b"no-store")
        flow = _Flow()
        request.registerProducer(flow, True)
        written = 0
        first = True
        try:
            if kind == "json":
                request.write(b'{"posts":[')
            else:
                request.write(_csv_rows(None))
            while True:
                if kind == "json":
                    chunk = ",".join(json.dumps(p, ensure_ascii=False, separators=(",", ":")) for p in posts)
                    if chunk:
                        request.write(((",") if not first else "").encode() + chunk.encode("utf-8"))
                        first = False
                else:
                    request.write(_csv_rows(posts))
                written += len(posts)
                if not following or written >= EXPORT_MAX or flow.stopped:
                    break
                await flow.ready()
                if flow.stopped:
                    break
                posts, following = await self.store.query_posts(
                    PostQuery(**{**_fields(query), "cursor": following, "limit": min(MAX_LIMIT, EXPORT_MAX - written)})
                )
            if kind == "json":
                request.write(b"]}")
        finally:
            request.unregisterProducer()
        return b""


def _fields(query: PostQuery) -> dict[str, Any]:
    return {name: getattr(query, name) for name in PostQuery.__dataclass_fields__}


_CSV_COLUMNS = (
    "id", "created_at", "source", "author", "text", "url", "lang", "topics", "labels", "sentiment",
    "compound", "likes", "reposts", "replies", "author_followers", "author_verified", "lat", "lon", "story",
)  # fmt: skip


def _csv_value(value: Any) -> Any:
    """
    One CSV cell: booleans as C{true}/C{false} (as in the JSON export),
    text made spreadsheet-safe.
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    return _csv_cell(value)


def _csv_rows(posts) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    if posts is None:
        writer.writerow(_CSV_COLUMNS)
    else:
        for p in posts:
            row = dict(p)
            row["topics"] = " ".join(p["topics"])
            row["labels"] = " ".join(p["labels"])
            row["sentiment"] = p["sentiment"]["label"]
            row["compound"] = p["sentiment"]["compound"]
            writer.writerow([_csv_value(row.get(c)) for c in _CSV_COLUMNS])
    return out.getvalue().encode("utf-8")
