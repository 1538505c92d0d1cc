"""
The Mastodon source: public statuses from one instance, by hashtag or from
its public timelines.

Without a token it polls the REST timelines gap-free: each request asks
for what came right after the newest status seen (C{min_id}), page after
page until it is caught up, within the instance's rate limit.  With a user
token it listens to the streaming API (server-sent events) instead, and
still catches up through the REST timeline after every (re)connect, since
a stream cannot be resumed; a stream the instance refuses (no streaming for
this token, an old or odd server) falls back to polling.

The position of every timeline (the newest status id taken from it) is kept
as one JSON document, committed with the posts, so a restart goes on where
the store left off.  A status is a post keyed by its federation C{uri}: seen
through two timelines or two instances it is still one post.  A boost counts
as the status it boosts (once; the booster is kept in C{extra}).
"""

from __future__ import annotations

import json
from collections import Counter, deque
from dataclasses import dataclass
from typing import Any, Optional
from urllib.parse import quote, urlsplit

from twisted.internet.defer import CancelledError, DeferredLock, FirstError, ensureDeferred, gatherResults, succeed
from twisted.internet.task import deferLater

from monitor.analysis.text import plain_text
from monitor.backoff import Backoff
from monitor.collect.base import BACKING_OFF, CONNECTED, FAILING, RATE_LIMITED, clean
from monitor.collect.framing import EventDecoder, LineStream
from monitor.collect.http import BodyTooLarge, HTTPCollector, NoResponse, RateLimits, read_body
from monitor.collect.kinds import MASTODON_TIMELINE as _TIMELINE, SOURCE_KINDS
from monitor.model import Post, parse_time

#: The keys' defaults, from the kinds table (written there only).
DEFAULTS = SOURCE_KINDS["mastodon"].defaults()


#: The largest polled page accepted, in bytes (40 statuses are far smaller).
MAX_BODY = 8 << 20
#: The longest SSE line, in bytes: one status, HTML and all.
MAX_LINE = 1 << 20
#: Seconds one REST request may take, headers and body.
REQUEST_TIMEOUT = 30.0
#: Status uris remembered to drop a status seen twice in one run.
_RECENT = 20_000


@dataclass(frozen=True)
class Timeline:
    """
    One followed timeline: where to poll it and where to stream it.
    """

    key: str
    rest_path: str
    stream_path: str
    params: tuple = ()
    stream_params: tuple = ()
    is_tag: bool = False

    @classmethod
    def parse(cls, spec: str) -> "Timeline":
        m = _TIMELINE.match(spec)
        if m is None:
            raise ValueError(f"not a timeline: {spec!r}")
        if m.group("tag"):
            tag = m.group("tag")
            local = bool(m.group("tag_scope"))
            return cls(
                key=spec,
                rest_path="/api/v1/timelines/tag/" + quote(tag, safe=""),
                stream_path="/api/v1/streaming/hashtag" + ("/local" if local else ""),
                params=(("local", "true"),) if local else (),
                stream_params=(("tag", tag),),
                is_tag=True,
            )
        scope = (m.group("scope") or "")[1:]
        return cls(
            key=spec,
            rest_path="/api/v1/timelines/public",
            stream_path="/api/v1/streaming/public" + (f"/{scope}" if scope else ""),
            params=((scope, "true"),) if scope else (),
        )


def _id_key(status_id: str) -> tuple[int, str]:
    # Mastodon ids are numbers in strings, Pleroma's are fixed-width
    # base62: both sort by length, then text.
    return len(status_id), status_id


def newest(a: Optional[str], b: Optional[str]) -> Optional[str]:
    if a is None:
        return b
    if b is None:
        return a
    return a if _id_key(a) >= _id_key(b) else b


class MalformedStatus(ValueError):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _count(value: Any) -> int:
    return value if type(value) is int and value >= 0 else 0


def post_from_status(source: str, entry: dict, instance_host: str) -> Post:
    """
    The post of a timeline entry (a Status; for a boost, the boosted one).
    Raises L{MalformedStatus} naming the field at fault.
    """
    status = entry.get("reblog") if isinstance(entry.get("reblog"), dict) else entry
    for key in ("id", "uri", "created_at"):
        if not isinstance(status.get(key), str) or not status[key]:
            raise MalformedStatus(f"{key}: must be a non-empty string")
    content = status.get("content") or ""
    spoiler = status.get("spoiler_text") or ""
    if not isinstance(content, str) or not isinstance(spoiler, str):
        raise MalformedStatus("content: must be a string")
    account = status.get("account")
    if not isinstance(account, dict) or not isinstance(account.get("acct"), str) or not account["acct"]:
        raise MalformedStatus("account.acct: must be a non-empty string")
    try:
        created = parse_time(status["created_at"])
    except (ValueError, OverflowError):
        raise MalformedStatus(f"created_at: not a timestamp: {status['created_at'][:40]!r}")
    text = plain_text(content)
    if spoiler:
        # A content warning is words the author chose to show first.
        text = f"{plain_text(spoiler)} {text}".strip()
    acct = clean(account["acct"])
    if "@" not in acct:
        # Local accounts have no domain; add it, so one person is one
        # author whichever instance we hear them through.
        home = urlsplit(account["url"]).hostname if isinstance(account.get("url"), str) else None
        acct = f"{acct}@{home or instance_host}"
    url = status.get("url") if isinstance(status.get("url"), str) else None
    if not url or not url.startswith(("https://", "http://")):
        url = status["uri"] if status["uri"].startswith(("https://", "http://")) else None
    lang = status.get("language") if isinstance(status.get("language"), str) else None
    followers = account.get("followers_count")
    tags = [
        clean(t["name"]) for t in status.get("tags") or () if isinstance(t, dict) and isinstance(t.get("name"), str)
    ]
    mentions = [
        clean(m["acct"]) for m in status.get("mentions") or () if isinstance(m, dict) and isinstance(m.get("acct"), str)
    ]
    extra: dict[str, Any] = {"instance": instance_host, "hashtags": tags, "mentions": mentions}
    if status is not entry and isinstance(entry.get("account"), dict) and isinstance(entry["account"].get("acct"), str):
        extra["boosted_by"] = clean(entry["account"]["acct"])
    card = status.get("card")
    if isinstance(card, dict) and isinstance(card.get("url"), str):
        extra["links"] = [clean(card["url"])]
    return Post(
        source=source,
        network="mastodon",
        native_id=clean(status["uri"]),
        text=clean(text),
        author=acct,
        created_at=created,
        url=clean(url) if url else None,
        lang=clean(lang)[:35] if lang else None,
        likes=_count(status.get("favourites_count")),
        reposts=_count(status.get("reblogs_count")),
        replies=_count(status.get("replies_count")),
        author_followers=followers if type(followers) is int and followers >= 0 else None,
        author_verified=False,
        extra=extra,
    )


def _describe(e: BaseException) -> str:
    if isinstance(e, NoResponse):
        return str(e)  # it names its cause
    text = str(e) or e.__class__.__name__
    return f"{e.__class__.__name__}: {text}" if e.__class__.__name__ not in text else text


class MastodonSource(HTTPCollector):
    """
    Statuses from one instance (see the module docstring).

    @ivar positions: per timeline key, the newest status id taken from it.
    @ivar events: counts of stream events and skipped statuses, by kind.
    """

    kind = "mastodon"
    network = "mastodon"
    max_body = MAX_BODY

    def __init__(
        self,
        name,
        queue,
        store,
        metrics,
        instance,
        timelines,
        token=DEFAULTS["token"],
        streaming=DEFAULTS["streaming"],
        streaming_url=DEFAULTS["streaming_url"],
        poll_interval=DEFAULTS["poll_interval"],
        limit=DEFAULTS["limit"],
        stall_timeout=DEFAULTS["stall_timeout"],
        reactor=None,
    ):
        super().__init__(name, queue, store, metrics, reactor=reactor)
        self.instance = instance.rstrip("/")
        self.host = urlsplit(self.instance).hostname or self.instance
        self.timelines = [Timeline.parse(t) for t in timelines]
        self.token = token
        self.streaming = streaming and bool(token)
        self.streaming_url = streaming_url.rstrip("/")
        self.poll_interval = poll_interval
        self.limit = limit
        self.stall_timeout = stall_timeout
        self.positions: dict[str, str] = {}
        self.events: Counter = Counter()
        self.mode = "streaming" if self.streaming else "polling"
        self.backoff = Backoff(first=2.0, cap=300.0)
        self.limits = RateLimits(self.reactor)
        self._lock = DeferredLock()
        self._recent: deque[str] = deque()
        self._recent_set: set[str] = set()
        self._catching_up: set[str] = set()
        self._stream_newest: dict[str, str] = {}
        self._streams: dict[str, str] = {}
        self._said_404: set[str] = set()

    def status(self) -> dict[str, Any]:
        s = super().status()
        s["mode"] = self.mode
        s["streams"] = dict(self._streams)
        s["events"] = dict(self.events)
        return s

    def headers(self, extra: Optional[dict] = None) -> dict:
        h = {"Accept": "application/json"}
        if self.token:
            h["Authorization"] = f"Bearer {self.token}"
        h.update(extra or {})
        return super().headers(h)

    # -- the whole run -----------------------------------------------------------------

    async def run(self) -> None:
        saved = await self.store.get_cursor(self.name)
        self.positions = self._load(saved)
        self._catching_up.clear()
        self._stream_newest.clear()
        self._streams.clear()
        if self.streaming:
            base = self.streaming_url or await self._discover_streaming()
            tasks = [ensureDeferred(self._follow(tl, base)) for tl in self.timelines]
        else:
            tasks = [ensureDeferred(self._poll_forever())]
        try:
            await gatherResults(tasks, consumeErrors=True)
        except FirstError as e:
            _cancel_all(tasks)
            e.subFailure.raiseException()  # a CancelledError at stop, as itself
        except GeneratorExit:
            raise  # being garbage collected: the tasks go with us
        except BaseException:
            _cancel_all(tasks)
            raise

    def _load(self, saved: Optional[str]) -> dict[str, str]:
        if not saved:
            return {}
        try:
            doc = json.loads(saved)
            if not isinstance(doc, dict):
                raise ValueError("not an object")
        except ValueError:
            self.log.warn(
                "source {source}: ignoring unreadable saved cursor {cursor!r}", source=self.name, cursor=saved[:200]
            )
            return {}
        keys = {tl.key for tl in self.timelines}
        return {k: v for k, v in doc.items() if k in keys and isinstance(v, str)}

    async def _poll_forever(self) -> None:
        while True:
            for tl in self.timelines:
                await self._catch_up(tl)
            await deferLater(self.reactor, self.poll_interval)

    # -- polling -------------------------------------------------------------------------

    async def _catch_up(self, tl: Timeline) -> None:
        """
        Take everything after the timeline's position, oldest first, page
        by page; a page shorter than C{limit} means there is no more.
        """
        while True:
            before = self.positions.get(tl.key)
            page = await self._page(tl, before)
            entries = []
            for entry in page:
                if isinstance(entry, dict) and isinstance(entry.get("id"), str) and entry["id"]:
                    entries.append(entry)
                else:
                    self.malformed(
                        json.dumps(entry).encode("utf-8")[:65536],
                        "a timeline entry without an id",
                        f"{self.host} {tl.key}",
                    )
            entries.sort(key=lambda e: _id_key(e["id"]))
            for entry in entries:
                d = self._take(tl, entry, from_stream=False)
                if d is not None:
                    await d
            if len(page) < self.limit:
                return
            if self.positions.get(tl.key) == before:
                # A full page and no step forward: the server ignores
                # min_id.  Asking again would only spin.
                self.log.warn(
                    "source {source}: {host} sent a full page of {timeline} without newer statuses",
                    source=self.name,
                    host=self.host,
                    timeline=tl.key,
                )
                return

    async def _page(self, tl: Timeline, min_id: Optional[str]) -> list:
        params = list(tl.params) + [("limit", str(self.limit))]
        if min_id is not None:
            params.append(("min_id", min_id))
        url = self.instance + tl.rest_path
        where = f"{self.host} {tl.key}"
        while True:
            await self._respect_rate_limit()
            try:
                response = await self.request("GET", url, REQUEST_TIMEOUT, params=params, headers=self.headers())
                body = await read_body(response, self.max_body, self.reactor, timeout=REQUEST_TIMEOUT)
            except CancelledError:
                raise
            except BodyTooLarge as e:
                self.malformed(e.head, str(e), where)
                await self.wait(self.backoff.next(), BACKING_OFF, f"{where}: {e}")
                continue
            except Exception as e:
                await self.wait(self.backoff.next(), BACKING_OFF, f"{where}: {_describe(e)}")
                continue
            self._note_limits(response.headers)
            code = response.code
            if code == 200:
                try:
                    page = json.loads(body)
                    if not isinstance(page, list):
                        raise ValueError("not a JSON array")
                except (ValueError, RecursionError) as e:
                    self.malformed(body[:65536], f"timeline page: {e}", where)
                    await self.wait(self.backoff.next(), BACKING_OFF, f"{where}: unreadable page ({e})")
                    continue
                self.backoff.reset()
                self.set_state(CONNECTED)
                return page
            why = f"{where}: HTTP {code}{_error_text(body)}"
            if code == 429:
                await self.wait(self._retry_delay(response.headers), RATE_LIMITED, why)
            elif code == 404 and tl.is_tag:
                # Older servers answer 404 for a tag nobody has used yet.
                if tl.key not in self._said_404:
                    self._said_404.add(tl.key)
                    self.log.info("source {source}: {why}; no posts with this tag yet", source=self.name, why=why)
                self.set_state(CONNECTED)
                return []
            elif code in (401, 403):
                await self.wait(
                    max(60.0, self.backoff.next()),
                    FAILING,
                    why + " (this instance wants an access token for this timeline: set token)",
                )
            else:
                await self.wait(self.backoff.next(), BACKING_OFF, why)

    def _take(self, tl: Timeline, entry: Any, from_stream: bool):
        """
        Hand one timeline entry on, in order with every other; returns a
        Deferred that fires once the post is queued (or C{None}).
        """
        where = f"{self.host} {tl.key}" + (" stream" if from_stream else "")
        if not isinstance(entry, dict):
            self.malformed(json.dumps(entry).encode("utf-8")[:65536], "a status that is not an object", where)
            return None
        entry_id = entry.get("id") if isinstance(entry.get("id"), str) and entry.get("id") else None
        try:
            post = post_from_status(self.name, entry, self.host)
        except MalformedStatus as e:
            self.malformed(json.dumps(entry).encode("utf-8")[:65536], e.reason, f"{where} id {entry_id}")
            post = None
        if entry_id is None and post is None:
            return None
        advance = not (from_stream and tl.key in self._catching_up)
        return self._lock.run(self._deliver, tl, entry_id, post, advance)

    def _deliver(self, tl: Timeline, entry_id: Optional[str], post: Optional[Post], advance: bool):
        # Under the lock: the position saved with a post covers exactly
        # the entries queued before it, whichever timeline they came from.
        if entry_id is not None:
            if advance:
                self.positions[tl.key] = newest(self.positions.get(tl.key), entry_id)
            else:
                self._stream_newest[tl.key] = newest(self._stream_newest.get(tl.key), entry_id)
        if post is None:
            return succeed(None)
        if post.native_id in self._recent_set:
            self.events["duplicate"] += 1
            return succeed(None)
        self._recent.append(post.native_id)
        self._recent_set.add(post.native_id)
        if len(self._recent) > _RECENT:
            self._recent_set.discard(self._recent.popleft())
        post.cursor = json.dumps(self.positions, sort_keys=True, separators=(",", ":"))
        return self.emit(post)

    # -- rate limits -------------------------------------------------------------------

    def _note_limits(self, headers) -> None:
        window = self.limits.note(headers)
        if window.remaining is not None:
            self.rate_limit_remaining = window.remaining

    def _retry_delay(self, headers) -> float:
        wait = self.limits.retry_delay(headers)
        if wait is None:
            wait = self.backoff.next()
        return max(1.0, wait)

    async def _respect_rate_limit(self) -> None:
        """
        With the allowance used up, wait for the window to reset rather
        than be refused.
        """
        if self.rate_limit_remaining is not None and self.rate_limit_remaining <= 0:
            wait = self.limits.wait_before()
            if wait is not None:
                await self.wait(wait, RATE_LIMITED, f"{self.host}: rate limit used up")
            self.limits.forget()
            self.rate_limit_remaining = None

    # -- streaming -----------------------------------------------------------------------

    async def _discover_streaming(self) -> str:
        """
        Where this instance serves its streaming API (it may be another
        host); the instance itself if it does not say.
        """
        try:
            response = await self.request(
                "GET", self.instance + "/api/v2/instance", REQUEST_TIMEOUT, headers=self.headers()
            )
            body = await read_body(response, 1 << 20, self.reactor, timeout=REQUEST_TIMEOUT)
            url = json.loads(body)["configuration"]["urls"]["streaming"] if response.code == 200 else None
        except CancelledError:
            raise
        except Exception as e:
            self.log.info(
                "source {source}: could not ask {host} for its streaming URL ({error}); using the instance",
                source=self.name,
                host=self.host,
                error=_describe(e),
            )
            return self.instance
        if not isinstance(url, str) or not url.startswith(("wss://", "ws://", "https://", "http://")):
            return self.instance
        return (
            "https://" + url[6:]
            if url.startswith("wss://")
            else "http://" + url[5:]
            if url.startswith("ws://")
            else url
        ).rstrip("/")

    async def _follow(self, tl: Timeline, base: str) -> None:
        """
        Stream one timeline for as long as the instance lets us; poll it
        if it refuses.
        """
        backoff = Backoff(first=1.0, cap=60.0)
        while True:
            outcome, why, wait, heard = await self._stream_once(tl, base)
            self._streams[tl.key] = "reconnecting"
            if outcome == "refused":
                self.log.warn(
                    "source {source}: {why}; polling {timeline} instead", source=self.name, why=why, timeline=tl.key
                )
                self.events["streaming_refused"] += 1
                self.last_error = why
                break
            if heard:
                backoff.reset()
            if wait is not None:
                await self.wait(wait, RATE_LIMITED, why)
            else:
                await self.wait(backoff.next(), BACKING_OFF, why)
        self._streams[tl.key] = "polling"
        self.mode = "polling" if set(self._streams.values()) == {"polling"} else "streaming and polling"
        while True:
            await self._catch_up(tl)
            await deferLater(self.reactor, self.poll_interval)

    async def _stream_once(self, tl: Timeline, base: str):
        """
        One streaming connection, with a catch-up poll alongside it.
        Returns C{(outcome, why, wait, heard)}: C{"refused"} or C{"retry"},
        why it ended, how long the server asked us to wait, and whether
        the stream said anything.
        """
        where = f"{self.host} {tl.key} stream"
        try:
            response = await self.request(
                "GET",
                base + tl.stream_path,
                self.stall_timeout,
                params=list(tl.stream_params),
                headers=self.headers({"Accept": "text/event-stream"}),
            )
        except CancelledError:
            raise
        except Exception as e:
            return "retry", f"{where}: {_describe(e)}", None, False
        self._note_limits(response.headers)
        if response.code != 200:
            try:
                body = await read_body(response, 64 << 10, self.reactor, timeout=REQUEST_TIMEOUT)
            except CancelledError:
                raise
            except Exception:
                body = b""
            why = f"{where}: HTTP {response.code}{_error_text(body)}"
            if response.code == 429:
                return "retry", why, self._retry_delay(response.headers), False
            if 400 <= response.code < 500 and response.code != 408:
                return "refused", f"streaming refused ({why})", None, False
            return "retry", why, None, False

        stream = LineStream(
            self.reactor,
            self.stall_timeout,
            lambda head: self.malformed(head, f"an SSE line longer than {MAX_LINE} bytes", where),
            max_length=MAX_LINE,
        )
        response.deliverBody(stream)
        self._streams[tl.key] = "connected"
        self.set_state(CONNECTED)
        self._catching_up.add(tl.key)
        catch_up = ensureDeferred(self._catch_up(tl))
        catch_up.addBoth(self._caught_up, tl)
        try:
            heard = await self._read_events(tl, stream, where)
            await catch_up
        except GeneratorExit:
            raise  # being garbage collected
        except BaseException:
            catch_up.cancel()
            stream.abort()
            raise
        if stream.stalled:
            why = f"{where}: stalled, nothing received for {self.stall_timeout:g}s"
        else:
            reason = stream.reason.getErrorMessage() if stream.reason is not None else "ended"
            why = f"{where}: closed ({reason})"
        return "retry", why, None, heard

    def _caught_up(self, result, tl: Timeline):
        self._catching_up.discard(tl.key)
        # What the stream delivered meanwhile is queued: the position may
        # now pass it.
        self.positions[tl.key] = newest(self.positions.get(tl.key), self._stream_newest.pop(tl.key, None))
        return result

    async def _read_events(self, tl: Timeline, stream: LineStream, where: str) -> bool:
        """
        Read server-sent events until the stream ends; True if anything
        (a comment, a heartbeat) came.
        """
        heard = False
        decoder = EventDecoder(
            lambda head: self.malformed(head, f"an SSE event larger than {MAX_LINE} bytes", where), MAX_LINE
        )
        while True:
            line = await stream.next()
            if line is None:
                return heard
            heard = True
            event = decoder.line(line)
            if event is not None:
                d = self._dispatch(tl, event.event, event.data, where)
                if d is not None:
                    await d

    def _dispatch(self, tl: Timeline, event: str, data: bytes, where: str):
        if event == "update":
            self.events["update"] += 1
            try:
                status = json.loads(data)
            except (ValueError, RecursionError) as e:
                self.malformed(data, f"invalid JSON in an update event: {e}", where)
                return None
            return self._take(tl, status, from_stream=True)
        if event == "status.update":
            self.events["edit"] += 1  # the store keeps the first version
        elif event == "delete":
            self.events["delete"] += 1
        else:
            self.events["other"] += 1
        return None


def _cancel_all(tasks) -> None:
    for t in tasks:
        if not t.called:
            t.cancel()


def _error_text(body: bytes) -> str:
    """
    The C{error} of a Mastodon error body, for the last error shown.
    """
    try:
        error = json.loads(body).get("error")
    except (ValueError, AttributeError, RecursionError):
        return ""
    return f" ({clean(error)[:200]})" if isinstance(error, str) else ""


__all__ = ["MastodonSource", "Timeline", "newest", "post_from_status"]
