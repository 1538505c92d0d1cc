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

The API is mid-rename from Tweets to Posts; both spellings of the renamed
fields are read (C{retweet_count}/C{repost_count},
C{includes.tweets}/C{includes.posts}, ...).
"""

from __future__ import annotations

import html
import json
from collections import OrderedDict
from typing import Any, Optional
from urllib.parse import quote

from twisted.internet.defer import CancelledError, ensureDeferred
from twisted.internet.task import deferLater

from monitor.collect.base import BACKING_OFF, CONNECTED, FAILING, RATE_LIMITED
from monitor.backoff import Backoff
from monitor.collect.framing import LineStream
from monitor.collect.http import BodyTooLarge, HTTPCollector, RateLimits, read_body
from monitor.config import STRINGS, Field, at_least, http_url, non_empty, one_of, register_source_kind
from monitor.model import Post, iso8601, parse_time


def _between(low: int, high: int):
    def check(value):
        return None if low <= value <= high else f"must be from {low} to {high}"

    return check


register_source_kind(
    "x",
    {
        "bearer_token": Field(str, check=non_empty, doc='The app-only token; write "${X_BEARER_TOKEN}".'),
        "base_url": Field(str, "https://api.x.com", http_url, "Another host: a proxy or a test server."),
        "mode": Field(str, "search", one_of("search", "stream")),
        "queries": Field(STRINGS, [], doc="Search queries or stream rules; default: built from the topics."),
        "poll_interval": Field(float, 60.0, at_least(1), "Seconds between two searches (search mode)."),
        "max_results": Field(int, 100, _between(10, 100), "Posts per page."),
        "max_pages": Field(int, 5, at_least(1), "Pages read for a query never searched before."),
        "exclude_retweets": Field(bool, True, doc="Add -is:retweet to queries built from topics."),
        "stall_timeout": Field(float, 30.0, at_least(1), "Seconds without a byte before the stream is dead."),
        "recover": Field(bool, True, doc="Fill stream gaps from recent search."),
        "backfill_minutes": Field(int, 0, _between(0, 5), "Ask the stream to resend after a reconnect."),
        "request_timeout": Field(float, 30.0, at_least(1), "Seconds to wait for a response."),
    },
)

#: Fields asked for, with the documented (Tweet-named) parameter names.
FIELDS = [
    (
        "tweet.fields",
        "created_at,author_id,lang,public_metrics,entities,geo,conversation_id,referenced_tweets,note_tweet",
    ),
    ("expansions", "author_id,geo.place_id"),
    ("user.fields", "username,name,public_metrics,verified,verified_type"),
    ("place.fields", "full_name,country_code,geo,place_type"),
]

SEARCH = "/2/tweets/search/recent"
STREAM = "/2/tweets/search/stream"
RULES = "/2/tweets/search/stream/rules"

#: The longest query recent search takes; longer ones are refused by X.
MAX_QUERY = 512
#: Most bytes read from one polled response (a full page is a few 100 KB).
MAX_BODY = 8 << 20
#: Most bytes of one stream line.
MAX_LINE = 1 << 20
#: Ids remembered to drop duplicates (a page boundary shifting, a gap
#: filled from search that the stream also delivered).
RECENT_IDS = 20000
#: Snowflake ids carry their time: milliseconds since this epoch, << 22.
_SNOWFLAKE_EPOCH_MS = 1288834974657
_VERIFIED_TYPES = ("blue", "business", "government")


class Malformed(ValueError):
    """
    A post object that cannot become a L{Post}; the message says why.
    """


class Failed(Exception):
    """
    A request that did not give what was asked.  C{kind} decides the wait:
    C{network}, C{server} (5xx), C{client} (4xx), C{rate} (429),
    C{query} (X refused one query) or C{payload} (unreadable answer).
    """

    def __init__(self, kind: str, message: str, status: Optional[int] = None, wait: Optional[float] = None):
        super().__init__(message)
        self.kind = kind
        self.status = status
        #: Seconds until a used-up rate-limit window resets.
        self.wait = wait


# --- queries -----------------------------------------------------------------------


def _term(term: str) -> Optional[str]:
    """
    One topic term in X's query syntax; C{None} for what X cannot search
    (handles of other networks).
    """
    t = term.strip()
    phrase = len(t) >= 2 and t[0] == t[-1] == '"'
    if phrase:
        t = t[1:-1].strip()
    t = t.replace('"', "")
    if not t:
        return None
    if not phrase and t[0] in "#@$" and len(t) > 1 and (t[1:].replace("_", "").isalnum()):
        return t
    if t.startswith("@"):
        return None  # @user@mastodon.example, @user.bsky.social: not an X handle
    if phrase or t.upper() in ("OR", "AND") or t[0] == "-" or not t.replace("_", "").isalnum():
        return f'"{t}"'
    return t


def topic_query(topic, exclude_retweets: bool = True) -> Optional[str]:
    """
    The X query for a topic: its terms and variants ORed, its exclusions
    negated, its languages as C{lang:}.  C{None} if no term is searchable.
    """
    terms = []
    for t in (*topic.terms, *topic.variants):
        x = _term(t)
        if x is not None and x not in terms:
            terms.append(x)
    if not terms:
        return None
    q = terms[0] if len(terms) == 1 else "(" + " OR ".join(terms) + ")"
    for ex in topic.exclude:
        x = _term(ex)
        if x is not None:
            q += " -" + x
    langs = []
    for lang in topic.languages:
        code = lang.split("-")[0].lower()
        if code and code not in langs:
            langs.append(code)
    if len(langs) == 1:
        q += f" lang:{langs[0]}"
    elif langs:
        q += " (" + " OR ".join(f"lang:{c}" for c in langs) + ")"
    if exclude_retweets:
        q += " -is:retweet"
    return q


def queries_for(source_name: str, queries, topics, exclude_retweets: bool = True) -> list[tuple[str, str]]:
    """
    (tag, query) pairs: the configured queries (tagged by themselves) or one
    per topic that may come from this source (tagged by the topic name).
    """
    if queries:
        return [(q[:256], q) for q in dict.fromkeys(queries)]
    out = []
    for topic in topics:
        if topic.sources and source_name not in topic.sources:
            continue
        q = topic_query(topic, exclude_retweets)
        if q is not None:
            out.append((topic.name, q))
    return out


# --- parsing -----------------------------------------------------------------------


def _newer(a: Optional[str], b: Optional[str]) -> Optional[str]:
    """
    The larger of two snowflake ids (numeric strings compare by length, then text).
    """
    if a is None:
        return b
    if b is None:
        return a
    return max(a, b, key=lambda i: (len(i), i))


def _count(metrics: dict, *names: str) -> int:
    for name in names:
        v = metrics.get(name)
        if v is None:
            continue
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise Malformed(f"public_metrics.{name}: not a count: {v!r}")
        return v
    return 0


def _either(d: dict, *names: str) -> Any:
    for name in names:
        if name in d:
            return d[name]
    return None


def _index(items: Any, what: str) -> dict[str, dict]:
    if items is None:
        return {}
    if not isinstance(items, list):
        raise Malformed(f"includes.{what}: not a list")
    return {i["id"]: i for i in items if isinstance(i, dict) and isinstance(i.get("id"), str)}


def includes_index(includes: Any) -> tuple[dict, dict, dict]:
    """
    The expansions of a response, by id: users, places, referenced posts.
    """
    if includes is None:
        return {}, {}, {}
    if not isinstance(includes, dict):
        raise Malformed("includes: not an object")
    return (
        _index(includes.get("users"), "users"),
        _index(includes.get("places"), "places"),
        _index(_either(includes, "tweets", "posts"), "tweets"),
    )


def _place_centre(place: dict) -> tuple[Optional[float], Optional[float]]:
    geo = place.get("geo")
    bbox = geo.get("bbox") if isinstance(geo, dict) else None
    if isinstance(bbox, list) and len(bbox) == 4 and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in bbox
    ):
        west, south, east, north = bbox
        return (south + north) / 2, (west + east) / 2
    return None, None


def parse_tweet(tweet: Any, source: str, users: dict, places: dict, now: float, tags=()) -> Post:
    """
    One post object of a search page or a stream line.  Raises L{Malformed}.
    """
    if not isinstance(tweet, dict):
        raise Malformed("data: not an object")
    native_id = tweet.get("id")
    if not isinstance(native_id, str) or not native_id:
        raise Malformed(f"id: missing or not a string: {native_id!r}")
    note = tweet.get("note_tweet")
    text = note.get("text") if isinstance(note, dict) else None
    if not isinstance(text, str):
        text = tweet.get("text")
    if not isinstance(text, str):
        raise Malformed(f"text: missing or not a string (post {native_id})")
    if "\x00" in text:
        raise Malformed(f"text: contains NUL (post {native_id})")
    created = tweet.get("created_at")
    if created is None:
        created_at = (int(native_id) >> 22) / 1000 + _SNOWFLAKE_EPOCH_MS / 1000 if native_id.isdigit() else now
    else:
        try:
            created_at = parse_time(created)
        except (ValueError, TypeError):
            raise Malformed(f"created_at: not a timestamp: {created!r}")
    metrics = tweet.get("public_metrics") or {}
    if not isinstance(metrics, dict):
        raise Malformed("public_metrics: not an object")
    lang = tweet.get("lang")
    if lang is not None and not isinstance(lang, str):
        raise Malformed(f"lang: not a string: {lang!r}")
    author_id = tweet.get("author_id")
    user = users.get(author_id) if isinstance(author_id, str) else None
    username = user.get("username") if user else None
    if not isinstance(username, str) or not username:
        username = None
    followers = None
    verified = False
    if user:
        um = user.get("public_metrics")
        if isinstance(um, dict):
            f = um.get("followers_count")
            if isinstance(f, int) and not isinstance(f, bool) and f >= 0:
                followers = f
        verified = user.get("verified") is True or user.get("verified_type") in _VERIFIED_TYPES
    lat = lon = None
    geo = tweet.get("geo")
    if isinstance(geo, dict):
        point = geo.get("coordinates")
        coords = point.get("coordinates") if isinstance(point, dict) else None
        if isinstance(coords, list) and len(coords) == 2 and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in coords
        ):
            lon, lat = coords
        elif isinstance(geo.get("place_id"), str) and geo["place_id"] in places:
            lat, lon = _place_centre(places[geo["place_id"]])
        if lat is not None and not (-90 <= lat <= 90 and -180 <= lon <= 180):
            lat = lon = None
    extra: dict[str, Any] = {}
    if tags:
        extra["matching_rules"] = list(tags)
    if isinstance(author_id, str):
        extra["author_id"] = author_id
    if user and isinstance(user.get("name"), str):
        extra["author_name"] = user["name"]
    history = _either(tweet, "edit_history_tweet_ids", "edit_history_post_ids")
    if isinstance(history, list) and len(history) > 1:
        extra["edit_history_ids"] = [i for i in history if isinstance(i, str)]
    refs = _either(tweet, "referenced_tweets", "referenced_posts")
    if isinstance(refs, list):
        extra["referenced"] = [
            {"type": r.get("type"), "id": r.get("id")} for r in refs if isinstance(r, dict) and "id" in r
        ]
    if isinstance(tweet.get("conversation_id"), str):
        extra["conversation_id"] = tweet["conversation_id"]
    return Post(
        source=source,
        network="x",
        native_id=native_id,
        # X escapes &, < and > in what is plain text.
        text=html.unescape(text),
        author=username or (author_id if isinstance(author_id, str) else "unknown"),
        created_at=created_at,
        url=f"https://x.com/{quote(username) if username else 'i/web'}/status/{native_id}",
        lang=None if lang in (None, "", "und") else lang,
        likes=_count(metrics, "like_count"),
        reposts=_count(metrics, "retweet_count", "repost_count"),
        replies=_count(metrics, "reply_count"),
        author_followers=followers,
        author_verified=verified,
        lat=lat,
        lon=lon,
        extra=extra,
    )


def problem(body: bytes) -> tuple[str, str]:
    """
    The type (the last part of its URI: the host varies) and a message of
    a problem+json error body.  Bodies that are not problems give
    C{("", first bytes)}.
    """
    try:
        obj = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return "", body[:200].decode("utf-8", "replace")
    if not isinstance(obj, dict):
        return "", body[:200].decode("utf-8", "replace")
    errors = obj.get("errors")
    first = errors[0] if isinstance(errors, list) and errors and isinstance(errors[0], dict) else {}
    kind = obj.get("type") or first.get("type") or ""
    kind = kind.rstrip("/").rsplit("/", 1)[-1] if isinstance(kind, str) else ""
    parts = [obj.get("title"), obj.get("detail"), first.get("message"), first.get("detail")]
    parts += [obj.get("connection_issue"), obj.get("reason")]
    message = ": ".join(dict.fromkeys(p for p in parts if isinstance(p, str) and p))
    return kind, message or body[:200].decode("utf-8", "replace")


class _RecentIds:
    """
    The last N ids seen, to drop duplicates without remembering everything.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._ids: OrderedDict[str, None] = OrderedDict()

    def add(self, native_id: str) -> bool:
        """
        Remember an id; C{False} if it was already known.
        """
        if native_id in self._ids:
            self._ids.move_to_end(native_id)
            return False
        self._ids[native_id] = None
        if len(self._ids) > self.size:
            self._ids.popitem(last=False)
        return True


# --- the collector -------------------------------------------------------------------


class XSource(HTTPCollector):
    """
    Posts from X API v2, by recent search or the filtered stream.

    @ivar positions: search mode: the newest id seen per query.
    @ivar last_id: stream mode: the newest id the stream delivered.
    @ivar partial_errors: errors X reported inside successful responses.
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
        super().__init__(name, queue, store, metrics, reactor=reactor)
        self.bearer_token = bearer_token
        self.base_url = base_url.rstrip("/")
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
        self.request_timeout = request_timeout
        self.positions: dict[str, str] = {}
        self.last_id: Optional[str] = None
        self.partial_errors = 0
        self._recent = _RecentIds(RECENT_IDS)
        # A used-up window is waited out, one second past its reset, but
        # never longer than a whole window (15 minutes) plus a minute.
        self.limits = RateLimits(self.reactor, margin=1.0, cap=16 * 60)
        self._held: Optional[Post] = None
        # X's reconnect policy (handling-disconnections).
        self.network_backoff = Backoff(first=0.25, step=0.25, cap=16.0, jitter=0.1)
        self.http_backoff = Backoff(first=5.0, cap=320.0, jitter=0.1)
        self.rate_backoff = Backoff(first=60.0, cap=960.0, jitter=0.1)

    def status(self):
        s = super().status()
        s["mode"] = self.mode
        s["queries"] = len(self.queries)
        s["partial_errors"] = self.partial_errors
        return s

    # -- the run loops ---------------------------------------------------------------

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
                    self.positions[query] = _newer(self.positions.get(query), newest)
                await self._flush(self._cursor())
            else:
                if refused == len(self.queries):
                    self.set_state(FAILING, self.last_error)
                await deferLater(self.reactor, self.poll_interval)

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

    # -- search ------------------------------------------------------------------------

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

    def _topics_changed(self) -> None:
        """
        Searches read the topics at every poll; the stream's rules are
        re-synced now, without reconnecting.
        """
        if self.mode == "stream" and self.running:
            d = ensureDeferred(self._sync_rules())
            d.addErrback(lambda f: self.log.failure("source {source}: could not sync the stream's rules", f,
                                                    source=self.name))

    # -- stream ------------------------------------------------------------------------

    async def _sync_rules(self) -> None:
        """
        Make the stream's rules the configured queries: delete the others,
        add the missing ones.
        """
        body = await self._json(await self._request("GET", RULES, "rules"), "rules")
        self._partial(body, "rules")
        have: dict[tuple, str] = {}
        for rule in body.get("data") or []:
            if isinstance(rule, dict) and isinstance(rule.get("id"), str):
                have[(rule.get("value"), rule.get("tag"))] = rule["id"]
        wanted = {(q, tag) for tag, q in self.queries}
        delete = [rid for key, rid in have.items() if key not in wanted]
        add = [{"value": q, "tag": tag} for tag, q in self.queries if (q, tag) not in have]
        if delete:
            answer = await self._json(
                await self._request("POST", RULES, "rules-post", json_body={"delete": {"ids": delete}}), "rules"
            )
            self._partial(answer, "deleting rules")
        refused = 0
        if add:
            answer = await self._json(await self._request("POST", RULES, "rules-post", json_body={"add": add}), "rules")
            errors = answer.get("errors")
            if isinstance(errors, list) and errors:
                refused = len(errors)
                self.partial_errors += refused
                for e in errors[:10]:
                    self.log.warn(
                        "source {source}: X refused a rule: {error}",
                        source=self.name,
                        error=problem(json.dumps(e).encode())[1] if isinstance(e, dict) else e,
                    )
                self._note_error(f"X refused {refused} of {len(add)} rules")
        self.log.info(
            "source {source}: stream rules in sync ({added} added, {deleted} deleted, {kept} kept)",
            source=self.name,
            added=len(add) - refused,
            deleted=len(delete),
            kept=len(self.queries) - len(add),
        )

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
            newest = _newer(newest, found)
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
        self.last_id = _newer(self.last_id, post.native_id)
        if self._recent.add(post.native_id):
            post.cursor = self._cursor()
            await self.emit(post)

    # -- HTTP ----------------------------------------------------------------------------

    async def _request(self, method: str, path: str, endpoint: str, params=None, json_body=None):
        """
        One request; the response if it is a 2xx, else L{Failed}.
        """
        await self._respect_limit(endpoint)
        headers = self.headers({"Authorization": f"Bearer {self.bearer_token}"})
        kwargs: dict[str, Any] = dict(params=params, headers=headers, unbuffered=True, allow_redirects=False)
        if json_body is not None:
            kwargs["json"] = json_body
        d = self.http.request(method, self.base_url + path, **kwargs)
        d.addTimeout(self.request_timeout, self.reactor)
        try:
            response = await d
        except CancelledError:
            raise
        except Exception as e:
            raise Failed("network", f"{type(e).__name__}: {e}")
        self._note_limits(endpoint, response)
        if 200 <= response.code < 300:
            return response
        try:
            raw = await read_body(response, 65536, self.reactor, self.request_timeout)
        except CancelledError:
            raise
        except Exception:
            raw = b""
        kind, message = problem(raw)
        text = f"HTTP {response.code} from {path}: {message}"
        if response.code == 429 or kind in ("rate-limit-exceeded", "usage-capped"):
            # The reset matters only for a used-up window; a 429 for too
            # many connections leaves the window as it was.
            raise Failed("rate", text, response.code, self.limits.wait_before(endpoint))
        if response.code >= 500:
            raise Failed("server", text, response.code)
        if response.code == 400 and kind == "invalid-request" and endpoint == "search":
            raise Failed("query", text, response.code)
        raise Failed("client", text, response.code)

    async def _json(self, response, context: str) -> dict:
        try:
            raw = await read_body(response, MAX_BODY, self.reactor, self.request_timeout)
        except CancelledError:
            raise
        except BodyTooLarge as e:
            self.malformed(e.head, str(e), context)
            raise Failed("payload", str(e))
        except Exception as e:
            raise Failed("network", f"reading the response: {type(e).__name__}: {e}")
        try:
            obj = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            self.malformed(raw, "invalid JSON", context)
            raise Failed("payload", f"invalid JSON from {context}")
        if not isinstance(obj, dict):
            self.malformed(raw, "not a JSON object", context)
            raise Failed("payload", f"not a JSON object from {context}")
        return obj

    def _note_limits(self, endpoint: str, response) -> None:
        window = self.limits.note(response.headers, endpoint)
        if window.remaining is not None:
            self.rate_limit_remaining = window.remaining
            self.metrics.rate_limit_remaining.labels(self.name).set(window.remaining)

    async def _respect_limit(self, endpoint: str) -> None:
        """
        With the window used up, wait for its reset instead of asking again.
        """
        delay = self.limits.wait_before(endpoint)
        if delay is not None:
            reset = self.limits.windows[endpoint].reset
            await self.wait(delay, RATE_LIMITED, f"{endpoint} rate limit used up until {iso8601(reset)}")
            self.limits.forget(endpoint)

    # -- state -----------------------------------------------------------------------------

    def _connected(self) -> None:
        self.http_backoff.reset()
        self.rate_backoff.reset()
        self.set_state(CONNECTED)

    def _note_error(self, message: str) -> None:
        self.last_error = message

    def _partial(self, body: dict, context: str) -> None:
        errors = body.get("errors")
        if "data" in body and isinstance(errors, list) and errors:
            self.partial_errors += len(errors)
            first = errors[0] if isinstance(errors[0], dict) else {}
            self.log.warn(
                "source {source}: {count} partial error(s) in {context}, e.g. {error}",
                source=self.name,
                count=len(errors),
                context=context,
                error=problem(json.dumps(first).encode())[1],
            )
        elif "data" not in body and isinstance(errors, list):
            # Inside the stream: operational-disconnect and the like.
            for e in errors[:5]:
                self.log.warn(
                    "source {source}: X says: {error}",
                    source=self.name,
                    error=problem(json.dumps(e).encode())[1] if isinstance(e, dict) else e,
                )

    async def _back_off(self, failure: Failed, stream: bool = False) -> None:
        if failure.kind == "rate":
            delay = self.rate_backoff.next()
            if failure.wait is not None:
                delay = max(delay, failure.wait) if stream else failure.wait
            await self.wait(delay, RATE_LIMITED, str(failure))
        elif failure.kind == "network":
            await self.wait(self.network_backoff.next(), BACKING_OFF, str(failure))
        else:
            state = FAILING if failure.kind == "client" else BACKING_OFF
            await self.wait(self.http_backoff.next(), state, str(failure))

    # -- cursor ------------------------------------------------------------------------------

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
            self.log.warn("source {source}: unreadable saved position {cursor!r}; starting afresh",
                          source=self.name, cursor=cursor[:200])
