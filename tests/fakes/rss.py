"""
A local web server of RSS 2.0 and Atom 1.0 feeds, for tests and for trying
the hub by hand, speaking HTTP as PROTOCOLS.md section 5 describes: ETag and
Last-Modified validators compared on every request (304 with an empty body;
If-None-Match wins over If-Modified-Since), gzip when asked for, and
scriptable 301, 410, 429/503 with Retry-After.

Tests C{set_feed} and C{add_item}, C{script} the next answers for a path,
C{move} a feed (301), make it C{gone} (410), serve C{set_raw} bytes (broken
XML), and read C{requests} (path and headers of each).

By hand::

    python -m tests.fakes.rss --port 8082

serves /acme.rss (RSS 2.0) and /globex.atom (Atom), each gaining an item
every few seconds.
"""

from __future__ import annotations

import gzip
from collections import deque
from dataclasses import dataclass, field
from email.utils import formatdate, parsedate_to_datetime
from typing import Any, Optional
from xml.sax.saxutils import escape, quoteattr

from twisted.internet.defer import Deferred
from twisted.web.resource import Resource


@dataclass
class Seen:
    """One request the fake received."""

    method: str
    path: str
    headers: dict[str, str]


@dataclass
class Scripted:
    code: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


@dataclass
class FeedDoc:
    """A feed as the fake serves it."""

    kind: str = "rss"
    title: str = "Example feed"
    link: str = "https://news.example/"
    items: list[dict] = field(default_factory=list)
    raw: Optional[bytes] = None
    etag: Optional[str] = None
    last_modified: Optional[float] = None
    weak: bool = False
    version: int = 0
    moved_to: Optional[str] = None
    moved_code: int = 301
    gone: bool = False
    use_etag: bool = True
    use_last_modified: bool = True


class FakeFeeds(Resource):
    """
    Feeds by path.

    @ivar requests: every request seen.
    @ivar gzip: compress bodies for clients that accept gzip.
    """

    isLeaf = True

    def __init__(self, clock=None) -> None:
        super().__init__()
        if clock is None:
            from twisted.internet import reactor as clock
        self.clock = clock
        self.feeds: dict[str, FeedDoc] = {}
        self.scripts: dict[str, deque[Scripted]] = {}
        self.requests: list[Seen] = []
        self.gzip = False
        self._waiters: list[tuple[str, int, Deferred]] = []

    # -- scripting -------------------------------------------------------------

    def set_feed(
        self,
        path: str,
        kind: str = "rss",
        items=(),
        etag: bool = True,
        last_modified: bool = True,
        weak: bool = False,
        title: str = "Example feed",
    ) -> FeedDoc:
        doc = FeedDoc(kind=kind, title=title, use_etag=etag, use_last_modified=last_modified, weak=weak)
        self.feeds[path] = doc
        for item in items:
            self.add_item(path, **item)
        self._changed(doc)
        return doc

    def add_item(self, path: str, title: Optional[str] = None, **fields) -> dict:
        """
        Add an item at the top.  RSS fields: link, guid, permalink,
        description, content, author, creator, pubDate, dcdate.  Atom: id,
        link, summary, summary_type, content, author, published, updated.
        """
        doc = self.feeds[path]
        n = len(doc.items) + 1
        item = {"title": title if title is not None else f"Item {n}", **fields}
        doc.items.insert(0, item)
        self._changed(doc)
        return item

    def update_item(self, path: str, index: int, **fields) -> None:
        doc = self.feeds[path]
        doc.items[index].update(fields)
        self._changed(doc)

    def set_raw(self, path: str, body: bytes) -> None:
        """Serve these bytes as the document (broken XML, a non-feed)."""
        doc = self.feeds.setdefault(path, FeedDoc())
        doc.raw = body
        self._changed(doc)

    def move(self, path: str, to: str, code: int = 301) -> None:
        """Redirect C{path} to C{to} (a path or a full URL) from now on."""
        doc = self.feeds.setdefault(path, FeedDoc())
        doc.moved_to, doc.moved_code = to, code
        if not to.startswith("http"):
            self.feeds.setdefault(
                to, FeedDoc(**{k: v for k, v in vars(doc).items() if k not in ("moved_to", "moved_code")})
            )

    def gone(self, path: str) -> None:
        self.feeds.setdefault(path, FeedDoc()).gone = True

    def script(self, path: str, code: int, headers=None, body: bytes = b"") -> None:
        """Answer the next request for C{path} with this."""
        self.scripts.setdefault(path, deque()).append(Scripted(code, dict(headers or {}), body))

    def seen(self, path: str) -> list[Seen]:
        return [s for s in self.requests if s.path == path]

    def when_requests(self, path: str, count: int) -> Deferred:
        """Fires once C{count} requests for C{path} have been seen."""
        d = Deferred()
        self._waiters.append((path, count, d))
        self._check_waiters()
        return d

    def _changed(self, doc: FeedDoc) -> None:
        doc.version += 1
        doc.etag = (f'W/"v{doc.version}"' if doc.weak else f'"v{doc.version}"') if doc.use_etag else None
        # HTTP dates have whole seconds: a change is "modified" in the second it happens.
        doc.last_modified = int(self.clock.seconds()) if doc.use_last_modified else None

    # -- serving -------------------------------------------------------------------

    def render_GET(self, request):
        path = request.path.decode()
        headers = {k.decode().lower(): b", ".join(v).decode() for k, v in request.requestHeaders.getAllRawHeaders()}
        self.requests.append(Seen("GET", path, headers))
        self._check_waiters()
        queue = self.scripts.get(path)
        if queue:
            s = queue.popleft()
            request.setResponseCode(s.code)
            for k, v in s.headers.items():
                request.setHeader(k.encode(), str(v).encode())
            return s.body
        doc = self.feeds.get(path)
        if doc is None:
            request.setResponseCode(404)
            return b"not found"
        if doc.gone:
            request.setResponseCode(410)
            return b"gone"
        if doc.moved_to:
            request.setResponseCode(doc.moved_code)
            request.setHeader(b"location", doc.moved_to.encode())
            return b""
        if doc.etag:
            request.setHeader(b"etag", doc.etag.encode())
        if doc.last_modified is not None:
            request.setHeader(b"last-modified", formatdate(doc.last_modified, usegmt=True).encode())
        request.setHeader(b"cache-control", b"max-age=60")
        if self._not_modified(doc, headers):
            request.setResponseCode(304)
            return b""
        body = doc.raw if doc.raw is not None else (atom(doc) if doc.kind == "atom" else rss(doc))
        request.setHeader(
            b"content-type", b"application/atom+xml" if doc.kind == "atom" else b"application/rss+xml; charset=utf-8"
        )
        request.setHeader(b"vary", b"Accept-Encoding")
        if self.gzip and "gzip" in headers.get("accept-encoding", ""):
            request.setHeader(b"content-encoding", b"gzip")
            body = gzip.compress(body)
        return body

    @staticmethod
    def _not_modified(doc: FeedDoc, headers: dict) -> bool:
        inm = headers.get("if-none-match")
        if inm is not None:
            tags = [t.strip() for t in inm.split(",")]
            return doc.etag is not None and ("*" in tags or doc.etag in tags)
        ims = headers.get("if-modified-since")
        if ims is not None and doc.last_modified is not None:
            try:
                return doc.last_modified <= parsedate_to_datetime(ims).timestamp()
            except (TypeError, ValueError):
                return False
        return False

    def _check_waiters(self) -> None:
        for w in list(self._waiters):
            path, count, d = w
            if len(self.seen(path)) >= count:
                self._waiters.remove(w)
                d.callback(self.requests)


def _el(name: str, value: Any, attrs: str = "") -> str:
    if value is None:
        return ""
    return f"<{name}{attrs}>{escape(str(value))}</{name}>"


def rss(doc: FeedDoc) -> bytes:
    """An RSS 2.0 document with the content: and dc: extensions."""
    parts = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<rss version="2.0" xmlns:content="http://purl.org/rss/1.0/modules/content/" '
        'xmlns:dc="http://purl.org/dc/elements/1.1/">',
        "<channel>",
        _el("title", doc.title),
        _el("link", doc.link),
        _el("description", f"All about {doc.title}"),
        "<language>en-us</language>",
    ]
    for it in doc.items:
        parts.append("<item>")
        parts.append(_el("title", it.get("title")))
        parts.append(_el("link", it.get("link")))
        if "guid" in it:
            attrs = "" if it.get("permalink") is None else f" isPermaLink={quoteattr(str(it['permalink']).lower())}"
            parts.append(_el("guid", it["guid"], attrs))
        parts.append(_el("pubDate", it.get("pubDate")))
        parts.append(_el("dc:date", it.get("dcdate")))
        parts.append(_el("description", it.get("description")))
        if it.get("content") is not None:
            parts.append(f"<content:encoded><![CDATA[{it['content']}]]></content:encoded>")
        parts.append(_el("author", it.get("author")))
        parts.append(_el("dc:creator", it.get("creator")))
        parts.append("</item>")
    parts.append("</channel></rss>")
    return "\n".join(p for p in parts if p).encode("utf-8")


def atom(doc: FeedDoc) -> bytes:
    """An Atom 1.0 document."""
    parts = [
        '<?xml version="1.0" encoding="utf-8"?>',
        '<feed xmlns="http://www.w3.org/2005/Atom" xml:lang="en">',
        _el("id", "urn:example:feed"),
        _el("title", doc.title),
        _el("updated", "2026-01-01T00:00:00Z"),
        f"<author><name>{escape(doc.title)} team</name></author>",
        f'<link rel="self" href="{escape(doc.link)}feed.atom"/>',
    ]
    for it in doc.items:
        parts.append("<entry>")
        parts.append(_el("id", it.get("id")))
        parts.append(_el("title", it.get("title")))
        parts.append(_el("updated", it.get("updated", "2026-01-01T00:00:00Z")))
        parts.append(_el("published", it.get("published")))
        if it.get("link"):
            parts.append(f'<link rel="alternate" type="text/html" href={quoteattr(it["link"])}/>')
            parts.append(f'<link rel="replies" href={quoteattr(it["link"] + "#comments")}/>')
        if it.get("summary") is not None:
            kind = it.get("summary_type", "html")
            if kind == "xhtml":
                parts.append(
                    f'<summary type="xhtml"><div xmlns="http://www.w3.org/1999/xhtml">{it["summary"]}</div></summary>'
                )
            else:
                parts.append(_el("summary", it["summary"], f' type="{kind}"'))
        if it.get("content") is not None:
            parts.append(_el("content", it["content"], ' type="html"'))
        if it.get("author"):
            parts.append(f"<author><name>{escape(it['author'])}</name></author>")
        parts.append("</entry>")
    parts.append("</feed>")
    return "\n".join(p for p in parts if p).encode("utf-8")


SAMPLES = [
    ("Acme outage hits thousands", "<p>Acme's cloud is <b>down</b> across Europe.</p>"),
    ("Acme launches new dashboard", "<p>Reviewers love it &#x1F680;</p>"),
    ("Globex recalls routers", "<p>A fire risk, says the company.</p>"),
    ("Is Initech worth the money?", "<p>We compared prices &amp; features.</p>"),
]


def main(argv=None) -> None:
    import argparse
    import random
    import sys

    from twisted.internet import reactor
    from twisted.internet.task import LoopingCall
    from twisted.logger import globalLogBeginner, textFileLogObserver
    from twisted.web.server import Site

    parser = argparse.ArgumentParser(description="Fake RSS and Atom feeds.")
    parser.add_argument("--port", type=int, default=8082)
    parser.add_argument("--interface", default="127.0.0.1")
    parser.add_argument("--every", type=float, default=5.0, help="seconds between new items")
    args = parser.parse_args(argv)
    globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stdout)])
    fake = FakeFeeds(reactor)
    fake.gzip = True
    fake.set_feed("/acme.rss", title="Acme News")
    fake.set_feed("/globex.atom", kind="atom", title="Globex Blog")
    rng = random.Random()
    n = [0]

    def tick():
        n[0] += 1
        title, html = rng.choice(SAMPLES)
        now = formatdate(reactor.seconds(), usegmt=True)
        fake.add_item(
            "/acme.rss",
            title=title,
            description=html,
            link=f"https://news.example/{n[0]}",
            guid=f"news.example:{n[0]}",
            permalink=False,
            pubDate=now,
            creator="Reporter",
        )
        fake.add_item(
            "/globex.atom",
            title=title,
            summary=html,
            link=f"https://blog.example/{n[0]}",
            id=f"urn:example:{n[0]}",
            published="2026-01-01T00:00:00Z",
            author="Blogger",
        )

    LoopingCall(tick).start(args.every)
    reactor.listenTCP(args.port, Site(fake), interface=args.interface)
    base = f"http://{args.interface}:{args.port}"
    print(f"fake feeds: {base}/acme.rss {base}/globex.atom")
    reactor.run()


if __name__ == "__main__":
    main()
