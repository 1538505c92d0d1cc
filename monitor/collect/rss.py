"""
RSS 2.0 (and 1.0) and Atom 1.0 feeds, polled politely.

Each feed is asked with the validators of its last answer (C{If-None-Match},
C{If-Modified-Since}), so an unchanged feed costs a 304 with no body.  A 301
or 308 moves the feed for good (the new URL is kept and logged); 410 stops
polling it; 429 and 503 wait at least as long as C{Retry-After} says.
Bodies are bounded and parsed with defusedxml (no entity expansion).
Not with feedparser: on the test feeds it expands internal entities, reads
truncated XML as a feed instead of refusing it, takes an Atom id for a
link, gives no raw XML for a dead letter, parses about nine times slower,
and falls back to its loose parser for seconds on an entity bomb.

An item's key is, in order, the RSS C{guid}, its link, or a hash of its
title and date; an Atom entry's is its C{id}.  The post's native id is the
configured feed URL, C{#}, and the key: the configured URL, not the current
one, so a feed that moves does not post everything again.  The cursor is a
small JSON document holding, per feed, the validators, the current URL and
short hashes of the keys in the last document read, so a restart neither
re-posts nor misses anything.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Optional
from urllib.parse import urljoin, urlsplit
from xml.etree.ElementTree import Element, ParseError, tostring

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring
from twisted.internet.defer import CancelledError

from monitor.analysis.text import plain_text
from monitor.backoff import Backoff, retry_after
from monitor.collect.base import BACKING_OFF, CONNECTED, FAILING, RATE_LIMITED
from monitor.collect.http import BodyTooLarge, HTTPCollector, NoResponse, read_body
from monitor.model import Post, iso8601, parse_time
from monitor.redact import redact, redact_url
from monitor.collect.kinds import SOURCE_KINDS

#: The keys' defaults, from the kinds table (written there only).
DEFAULTS = SOURCE_KINDS["rss"].defaults()


ACCEPT = "application/rss+xml, application/atom+xml, application/rdf+xml;q=0.9, application/xml;q=0.8, */*;q=0.5"
ATOM = "{http://www.w3.org/2005/Atom}"
CONTENT = "{http://purl.org/rss/1.0/modules/content/}"
DC = "{http://purl.org/dc/elements/1.1/}"
RSS1 = "{http://purl.org/rss/1.0/}"
RDF = "{http://www.w3.org/1999/02/22-rdf-syntax-ns#}"
XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"

#: Redirects followed in one request.
MAX_REDIRECTS = 5
#: Keys remembered per feed (more than any sane feed holds at once).
MAX_SEEN = 1000
#: The longest post text made from an item; whole articles are cut.
MAX_TEXT = 4000
#: The longest Retry-After honoured, in seconds.
MAX_RETRY_AFTER = 86400.0
#: Dates further ahead than this are wrong clocks or zones.
FUTURE_SLACK = 86400.0


class NotAFeed(ValueError):
    """
    A document that is not RSS or Atom, or an item that cannot be a post.
    """


@dataclass
class Item:
    """
    One item of a feed, read but not yet a post.
    """

    key: str
    title: str
    summary: str
    link: Optional[str]
    author: Optional[str]
    date: Optional[str]
    lang: Optional[str]


def _hash(text: str, n: int = 16) -> str:
    return hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest()[:n]


def _text(el: Optional[Element]) -> Optional[str]:
    if el is None:
        return None
    t = "".join(el.itertext()).strip()
    return t or None


def _construct(el: Optional[Element]) -> Optional[str]:
    """
    The plain text of an Atom text construct (text, html or xhtml).
    """
    if el is None:
        return None
    if el.get("type") == "xhtml":
        return " ".join("".join(el.itertext()).split()) or None
    t = el.text or ""
    return plain_text(t) or None


def _link(url: Optional[str], base: str) -> Optional[str]:
    if not url:
        return None
    url = urljoin(base, url.strip())
    return url if urlsplit(url).scheme in ("http", "https") else None


def parse_feed(body: bytes, base: str) -> tuple[list[Item], list[tuple[bytes, str]]]:
    """
    The items of an RSS or Atom document, in document order, and the items
    that could not be read (raw XML, reason).  Raises L{NotAFeed}.
    """
    try:
        root = fromstring(body)
    except (ParseError, DefusedXmlException) as e:
        raise NotAFeed(f"bad XML: {e}")
    tag = root.tag
    if tag == "rss":
        channel = root.find("channel")
        if channel is None:
            raise NotAFeed("an <rss> without a <channel>")
        return _rss_items(channel, channel.findall("item"), "", base)
    if tag == RDF + "RDF":
        channel = root.find(RSS1 + "channel")
        return _rss_items(channel, root.findall(RSS1 + "item"), RSS1, base)
    if tag == ATOM + "feed":
        return _atom_entries(root, base)
    raise NotAFeed(f"not an RSS or Atom document (root element {tag!r})")


def _rss_items(channel, items, ns: str, base: str):
    feed_title = _text(channel.find(ns + "title")) if channel is not None else None
    feed_lang = _text(channel.find(ns + "language")) if channel is not None else None
    if feed_lang is None and channel is not None:
        feed_lang = _text(channel.find(DC + "language"))
    out, bad = [], []
    for item in items:
        title = plain_text(_text(item.find(ns + "title")) or "")
        summary = plain_text(_text(item.find(ns + "description")) or "")
        if not summary:
            summary = plain_text(_text(item.find(CONTENT + "encoded")) or "")
        guid_el = item.find(ns + "guid")
        guid = _text(guid_el)
        permalink = guid_el is not None and (guid_el.get("isPermaLink") or "true").strip().lower() != "false"
        link = _link(_text(item.find(ns + "link")), base)
        if link is None and guid and permalink:
            link = _link(guid, base)
        date = _text(item.find(ns + "pubDate")) or _text(item.find(DC + "date"))
        if not title and not summary:
            bad.append((tostring(item)[:65536], "an item with neither title nor description"))
            continue
        key = guid or item.get(RDF + "about") or link or "h:" + _hash(title + "\n" + (date or ""), 40)
        author = _text(item.find(DC + "creator")) or _text(item.find(ns + "author")) or feed_title
        lang = _text(item.find(DC + "language")) or feed_lang
        out.append(Item(key, title, summary, link, author, date, lang))
    return out, bad


def _atom_entries(feed, base: str):
    feed_title = _construct(feed.find(ATOM + "title"))
    feed_author = _text(feed.find(f"{ATOM}author/{ATOM}name"))
    feed_lang = feed.get(XML_LANG)
    out, bad = [], []
    for entry in feed.findall(ATOM + "entry"):
        title = _construct(entry.find(ATOM + "title")) or ""
        summary = _construct(entry.find(ATOM + "summary")) or _construct(entry.find(ATOM + "content")) or ""
        link = None
        for el in entry.findall(ATOM + "link"):
            if (el.get("rel") or "alternate") == "alternate":
                link = _link(el.get("href"), base)
                if link:
                    break
        date = _text(entry.find(ATOM + "published")) or _text(entry.find(ATOM + "updated"))
        if not title and not summary:
            bad.append((tostring(entry)[:65536], "an entry with neither title nor summary"))
            continue
        key = _text(entry.find(ATOM + "id")) or link or "h:" + _hash(title + "\n" + (date or ""), 40)
        author = _text(entry.find(f"{ATOM}author/{ATOM}name")) or feed_author or feed_title
        out.append(Item(key, title, summary, link, author, date, entry.get(XML_LANG) or feed_lang))
    return out, bad


def parse_date(value: Optional[str]) -> Optional[float]:
    """
    RFC 822 (RSS) or RFC 3339 (Atom, dc:date) in unix seconds; C{None} if
    neither reads.  A date without a zone is UTC.
    """
    if not value:
        return None
    try:
        dt = parsedate_to_datetime(value)
        if dt.tzinfo is None:
            from datetime import timezone

            dt = dt.replace(tzinfo=timezone.utc)
        return dt.timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        pass
    try:
        return parse_time(value)
    except (TypeError, ValueError, OverflowError):
        return None


@dataclass
class Feed:
    """
    What is known about one configured feed.
    """

    key: str
    url: str
    etag: Optional[str] = None
    modified: Optional[str] = None
    seen: list[str] = field(default_factory=list)
    gone: bool = False
    next_at: float = 0.0
    state: str = "new"
    last_error: Optional[str] = None
    backoff: Optional[Backoff] = None

    def position(self) -> dict:
        d: dict = {"seen": self.seen}
        if self.url != self.key:
            d["url"] = self.url
        if self.etag:
            d["etag"] = self.etag
        if self.modified:
            d["modified"] = self.modified
        if self.gone:
            d["gone"] = True
        return d


class FeedError(Exception):
    """
    One feed could not be read this time; C{delay} is when to try again.
    """

    def __init__(self, state: str, message: str, delay: float) -> None:
        super().__init__(message)
        self.state = state
        self.delay = delay


class RSSSource(HTTPCollector):
    """
    Posts from RSS and Atom feeds.

    @ivar bad_dates: items whose date could not be read (or lay in the
        future), stamped with the time they were read instead.
    """

    kind = "rss"
    network = "rss"

    def __init__(
        self,
        name,
        queue,
        store,
        metrics,
        feeds=DEFAULTS["feeds"],
        url=DEFAULTS["url"],
        poll_interval=DEFAULTS["poll_interval"],
        request_timeout=DEFAULTS["request_timeout"],
        max_bytes=DEFAULTS["max_bytes"],
        reactor=None,
    ):
        super().__init__(name, queue, store, metrics, reactor=reactor)
        urls = list(dict.fromkeys([*(feeds or ()), *([url] if url else [])]))
        self.poll_interval = poll_interval
        self.request_timeout = request_timeout
        self.max_bytes = max_bytes
        self.feeds = [Feed(u, u, backoff=self._backoff()) for u in urls]
        self.bad_dates = 0

    def _backoff(self) -> Backoff:
        return Backoff(first=min(60.0, self.poll_interval), cap=max(3600.0, self.poll_interval))

    def status(self):
        s = super().status()
        s["bad_dates"] = self.bad_dates
        s["feeds"] = [
            {
                "url": redact_url(f.key),
                "current_url": redact_url(f.url),
                "state": f.state,
                "last_error": f.last_error and redact(f.last_error, [f.key, f.url]),
                "next_poll": None if f.gone else iso8601(f.next_at),
            }
            for f in self.feeds
        ]
        return s

    async def run(self) -> None:
        self._load(await self.store.get_cursor(self.name))
        while True:
            now = self.reactor.seconds()
            for feed in self.feeds:
                if not feed.gone and feed.next_at <= now:
                    await self._poll(feed)
            live = [f for f in self.feeds if not f.gone]
            if not live:
                self.set_state(FAILING, "every feed is gone (HTTP 410); nothing left to poll")
                return
            state, error = self._overall()
            delay = max(0.0, min(f.next_at for f in live) - self.reactor.seconds())
            await self.wait(delay, state, error)

    def _overall(self) -> tuple[str, Optional[str]]:
        for state in (FAILING, RATE_LIMITED, BACKING_OFF):
            for f in self.feeds:
                if f.state == state:
                    return state, f.last_error
        return CONNECTED, None

    async def _poll(self, feed: Feed) -> None:
        try:
            items, bad = await self._fetch(feed)
        except FeedError as e:
            feed.state, feed.last_error = e.state, f"{feed.key}: {e}"
            self.last_error = feed.last_error
            feed.next_at = self.reactor.seconds() + e.delay
            return
        feed.next_at = self.reactor.seconds() + self.poll_interval
        feed.backoff.reset()
        if feed.gone:
            return
        feed.state, feed.last_error = CONNECTED, None
        for raw, reason in bad:
            self.malformed(raw, reason, feed.url)
        if items is None:
            return  # 304
        keys = [(item, _hash(item.key)) for item in items]
        seen = set(feed.seen)
        fresh = []
        for item, h in keys:
            if h not in seen:
                seen.add(h)
                fresh.append(item)
        feed.seen = list(dict.fromkeys(h for _, h in keys))[:MAX_SEEN]
        # Oldest first (feeds list newest first, but not all of them do).
        posts = sorted((self._post(feed, item) for item in reversed(fresh)), key=lambda p: p.created_at)
        for i, post in enumerate(posts):
            if i == len(posts) - 1:
                post.cursor = self._cursor()
            await self.emit(post)

    async def _fetch(self, feed: Feed):
        """
        One conditional GET (following redirects); the items, or C{None}
        for 304.  Raises L{FeedError}.
        """
        url = feed.url
        for _ in range(MAX_REDIRECTS + 1):
            extra = {"Accept": ACCEPT}
            if feed.etag:
                extra["If-None-Match"] = feed.etag
            if feed.modified:
                extra["If-Modified-Since"] = feed.modified
            try:
                response = await self.request(
                    "GET", url, self.request_timeout, headers=self.headers(extra), allow_redirects=False
                )
            except NoResponse as e:
                raise FeedError(BACKING_OFF, str(e), feed.backoff.next())
            code = response.code
            if code in (301, 302, 303, 307, 308):
                await self._drain(response)
                location = response.headers.getRawHeaders(b"location")
                target = _link(location[0].decode("latin-1"), url) if location else None
                if target is None:
                    raise FeedError(FAILING, f"HTTP {code} without a usable Location", feed.backoff.next())
                if code in (301, 308):
                    self.log.info(
                        "source {source}: feed {feed} moved permanently from {old} to {new}",
                        source=self.name,
                        feed=redact_url(feed.key),
                        old=redact_url(url),
                        new=redact_url(target),
                    )
                    feed.url = target
                url = target
                continue
            if code == 304:
                await self._drain(response)
                return None, []
            if code == 410:
                await self._drain(response)
                feed.gone, feed.state = True, FAILING
                feed.last_error = self.last_error = f"{feed.key}: gone (HTTP 410); no longer polled"
                self.log.warn(
                    "source {source}: feed {feed} is gone (HTTP 410); it is no longer polled",
                    source=self.name,
                    feed=redact_url(feed.key),
                )
                return None, []
            if code in (429, 503):
                await self._drain(response)
                wait = retry_after(
                    (response.headers.getRawHeaders(b"retry-after") or [None])[0], self.reactor.seconds()
                )
                if wait is None:
                    wait = feed.backoff.next()
                else:
                    wait = max(min(wait, MAX_RETRY_AFTER), self.poll_interval)
                state = RATE_LIMITED if code == 429 else BACKING_OFF
                raise FeedError(state, f"HTTP {code}; next try in {wait:.0f}s", wait)
            if code != 200:
                await self._drain(response)
                state = BACKING_OFF if code >= 500 else FAILING
                raise FeedError(state, f"HTTP {code}", feed.backoff.next())
            try:
                body = await read_body(response, self.max_bytes, self.reactor, self.request_timeout)
            except CancelledError:
                raise
            except BodyTooLarge as e:
                self.malformed(e.head, str(e), url)
                raise FeedError(FAILING, str(e), self.poll_interval)
            except Exception as e:
                raise FeedError(BACKING_OFF, f"reading the feed: {type(e).__name__}: {e}", feed.backoff.next())
            try:
                items, bad = parse_feed(body, url)
            except NotAFeed as e:
                self.malformed(body[:65536], str(e), url)
                raise FeedError(FAILING, str(e), self.poll_interval)
            feed.etag = _header(response, b"etag")
            feed.modified = _header(response, b"last-modified")
            return items, bad
        raise FeedError(FAILING, f"more than {MAX_REDIRECTS} redirects", feed.backoff.next())

    async def _drain(self, response) -> None:
        """
        Read (and drop) a small body, so the connection can be reused.
        """
        try:
            await read_body(response, 65536, self.reactor, self.request_timeout)
        except CancelledError:
            raise
        except Exception:
            pass

    def _post(self, feed: Feed, item: Item) -> Post:
        now = self.reactor.seconds()
        created = parse_date(item.date)
        if created is None or created > now + FUTURE_SLACK:
            self.bad_dates += 1
            if self.bad_dates == 1 or self.bad_dates % 1000 == 0:
                self.log.info(
                    "source {source}: unreadable or future date {date!r} in {feed}; using the time read "
                    "({count} so far)",
                    source=self.name,
                    date=item.date,
                    feed=redact_url(feed.key),
                    count=self.bad_dates,
                )
            created = now
        if item.title and item.summary and item.summary != item.title:
            text = f"{item.title} — {item.summary}"
        else:
            text = item.title or item.summary
        if len(text) > MAX_TEXT:
            text = text[: MAX_TEXT - 1] + "…"
        return Post(
            source=self.name,
            network=self.network,
            native_id=f"{feed.key}#{item.key}",
            text=text,
            author=item.author or urlsplit(feed.key).hostname or feed.key,
            created_at=created,
            url=item.link,
            lang=item.lang,
            extra={"feed": feed.key, "title": item.title},
        )

    def _cursor(self) -> str:
        return json.dumps({"feeds": {f.key: f.position() for f in self.feeds}}, separators=(",", ":"))

    def _load(self, cursor: Optional[str]) -> None:
        if not cursor:
            return
        try:
            saved = json.loads(cursor)["feeds"]
            for f in self.feeds:
                p = saved.get(f.key)
                if not isinstance(p, dict):
                    continue
                f.url = p.get("url") or f.url
                f.etag, f.modified = p.get("etag"), p.get("modified")
                f.seen = [h for h in p.get("seen", []) if isinstance(h, str)][:MAX_SEEN]
                f.gone = bool(p.get("gone"))
                if f.gone:
                    f.state, f.last_error = FAILING, f"{f.key}: gone (HTTP 410); no longer polled"
        except (ValueError, KeyError, TypeError, AttributeError):
            self.log.warn("source {source}: unreadable saved position; starting afresh", source=self.name)


def _header(response, name: bytes) -> Optional[str]:
    values = response.headers.getRawHeaders(name)
    return values[0].decode("latin-1") if values else None
