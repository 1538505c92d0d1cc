"""
A local X API v2 for tests and for trying the hub by hand: recent search
(since_id, next_token paging, author and place expansions), the filtered
stream (newline-delimited JSON, \\r\\n keep-alives, matching_rules, one
connection) and its rules, with x-rate-limit-* headers and problem+json
errors, as PROTOCOLS.md section 3 describes them.

Tests script it: C{publish} posts (they reach connected streams and later
searches), C{script} the next responses of an endpoint (a 429, a burst of
503s, a broken body), C{drop_streams}, switch C{keepalives} off, read
C{requests} (method, path, arguments, headers) and wait for the n-th
request with C{when_requests}.

By hand::

    python -m tests.fakes.x --port 8081

serves plausible posts about a few brands (any bearer token is accepted).
"""

from __future__ import annotations

import base64
import json
import re
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Optional

from twisted.internet.defer import Deferred
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

FIRST_ID = 1900000000000000000
PROBLEMS = "https://api.x.com/2/problems/"


def problem_body(kind: str, title: str, detail: str, status: Optional[int] = None, **more) -> bytes:
    d = {"title": title, "detail": detail, "type": PROBLEMS + kind if kind != "about:blank" else kind}
    if status is not None:
        d["status"] = status
    d.update(more)
    return json.dumps(d).encode()


@dataclass
class Seen:
    """One request the fake received."""

    method: str
    path: str
    args: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    def arg(self, name: str) -> Optional[str]:
        v = self.args.get(name)
        return v[0] if v else None


@dataclass
class Scripted:
    """A canned answer: status, headers, body (bytes, or a list of chunks for a stream)."""

    code: Optional[int] = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = b""
    #: For a stream: keep the connection open after the chunks.
    hold: bool = False


_TOKEN = re.compile(r'-?"[^"]*"|-?[^\s()]+')


def matches(query: str, post: dict) -> bool:
    """
    Enough of X's query language for tests: terms and quoted phrases ORed,
    C{-term} vetoes, C{lang:} filters, other operators ignored.
    """
    text = post["text"].lower()
    words = set(re.findall(r"[#@$]?[\w']+", text))
    positive, negative, langs = [], [], []
    for tok in _TOKEN.findall(query):
        neg = tok.startswith("-")
        tok = tok[1:] if neg else tok
        if tok == "OR":
            continue
        if ":" in tok and not tok.startswith('"'):
            op, _, value = tok.partition(":")
            if op == "lang" and not neg:
                langs.append(value)
            if op == "is" and value == "retweet" and neg and text.startswith("rt @"):
                return False
            continue
        (negative if neg else positive).append(tok.strip('"').lower())

    def hit(term: str) -> bool:
        if " " in term or not re.fullmatch(r"[#@$]?[\w']+", term):
            return term in text
        return term in words or (term[0] not in "#@$" and ("#" + term in words or "@" + term in words))

    if langs and post.get("lang") not in langs:
        return False
    if any(hit(t) for t in negative):
        return False
    return any(hit(t) for t in positive)


class FakeX(Resource):
    """
    The X API v2 endpoints the collector uses.

    @ivar posts: published posts, oldest first.
    @ivar rules: stream rules by id.
    @ivar requests: every request seen, in order.
    @ivar limits: per endpoint: [limit, remaining, reset (unix seconds)].
    @ivar names: C{"tweet"} or C{"post"}: which spelling of the renamed
        fields to send.
    """

    isLeaf = True

    def __init__(self, clock=None, token: Optional[str] = "test-token", keepalive: float = 20.0, names: str = "tweet"):
        super().__init__()
        if clock is None:
            from twisted.internet import reactor as clock
        self.clock = clock
        self.token = token
        self.names = names
        self.posts: list[dict] = []
        self.users: dict[str, dict] = {}
        self.places: dict[str, dict] = {}
        self.rules: dict[str, dict] = {}
        self.requests: list[Seen] = []
        self.scripts: dict[str, deque[Scripted]] = {}
        self.limits: dict[str, list] = {}
        self.streams: list = []
        self.max_connections = 1
        self.keepalive = keepalive
        self.keepalives = True
        self._keepalive_call = None
        self._next_id = FIRST_ID
        self._next_rule = 1273026480692322304
        self._waiters: list[tuple[Callable[[Seen], bool], int, Deferred]] = []

    # -- scripting -----------------------------------------------------------

    def add_user(self, username: str, followers: int = 100, verified: bool = False, name: Optional[str] = None) -> str:
        uid = str(2244994945 + len(self.users))
        for u in self.users.values():
            if u["username"] == username:
                return u["id"]
        counts = {"followers_count": followers, "following_count": 10, "listed_count": 1, "like_count": 5}
        counts["post_count" if self.names == "post" else "tweet_count"] = 1000
        self.users[uid] = {
            "id": uid,
            "username": username,
            "name": name or username.title(),
            "verified": verified,
            "verified_type": "blue" if verified else "none",
            "public_metrics": counts,
        }
        return uid

    def add_place(self, full_name: str, bbox: list[float]) -> str:
        pid = f"{len(self.places) + 1:016x}"
        self.places[pid] = {
            "id": pid,
            "full_name": full_name,
            "country_code": "US",
            "place_type": "city",
            "geo": {"type": "Feature", "bbox": bbox, "properties": {}},
        }
        return pid

    def make_post(
        self,
        text: str,
        username: str = "someone",
        post_id: Optional[str] = None,
        lang: str = "en",
        place: Optional[str] = None,
        point: Optional[list[float]] = None,
        likes: int = 0,
        reposts: int = 0,
        replies: int = 0,
        followers: int = 100,
        verified: bool = False,
        created_at: Optional[str] = None,
    ) -> dict:
        """A post object with the real shape (not yet published)."""
        if post_id is None:
            self._next_id += 1
            post_id = str(self._next_id)
        author = self.add_user(username, followers, verified)
        when = created_at or datetime.fromtimestamp(self.clock.seconds(), timezone.utc).strftime(
            "%Y-%m-%dT%H:%M:%S.000Z"
        )
        metrics = {
            "reply_count": replies,
            "like_count": likes,
            "quote_count": 0,
            "bookmark_count": 0,
            "impression_count": 10 * (likes + 1),
        }
        metrics["repost_count" if self.names == "post" else "retweet_count"] = reposts
        post = {
            "id": post_id,
            "text": text,
            "created_at": when,
            "author_id": author,
            "lang": lang,
            "conversation_id": post_id,
            "public_metrics": metrics,
            ("edit_history_post_ids" if self.names == "post" else "edit_history_tweet_ids"): [post_id],
        }
        if place or point:
            post["geo"] = {}
            if place:
                post["geo"]["place_id"] = place
            if point:
                post["geo"]["coordinates"] = {"type": "Point", "coordinates": point}
        return post

    def publish(self, text_or_post, **kw) -> dict:
        """Publish a post: searches find it and connected streams whose rules match get it."""
        post = text_or_post if isinstance(text_or_post, dict) else self.make_post(text_or_post, **kw)
        self.posts.append(post)
        self.posts.sort(key=lambda p: int(p["id"]))
        for request in list(self.streams):
            self._send_post(request, post)
        return post

    def script(
        self, endpoint: str, code: Optional[int] = 200, headers=None, body: Any = b"", hold: bool = False
    ) -> None:
        """
        Answer the next request to C{endpoint} (search, stream, rules,
        rules-post) with this; C{code=None} answers it normally (to script
        the request after it).
        """
        self.scripts.setdefault(endpoint, deque()).append(Scripted(code, dict(headers or {}), body, hold))

    def set_limit(self, endpoint: str, limit: int, remaining: int, reset: float) -> None:
        self.limits[endpoint] = [limit, remaining, reset]

    def drop_streams(self) -> None:
        """Cut every connected stream: the TCP connection closes mid-body (after what was written)."""
        for request in list(self.streams):
            self.streams.remove(request)
            request.transport.loseConnection()

    def end_streams(self) -> None:
        """Close every connected stream cleanly (the server restarts)."""
        for request in list(self.streams):
            self.streams.remove(request)
            request.finish()

    def stream_raw(self, data: bytes) -> None:
        """Send bytes as they are to every connected stream."""
        for request in self.streams:
            request.write(data)

    def when_requests(self, endpoint: str, count: int) -> Deferred:
        """Fires with the request list once C{count} requests to C{endpoint} have been seen."""
        d = Deferred()
        self._waiters.append((lambda s: _endpoint(s.method, s.path) == endpoint, count, d))
        self._check_waiters()
        return d

    def seen(self, endpoint: str) -> list[Seen]:
        return [s for s in self.requests if _endpoint(s.method, s.path) == endpoint]

    def stop(self) -> None:
        """Cancel the keep-alive timer and close streams (test teardown)."""
        if self._keepalive_call is not None and self._keepalive_call.active():
            self._keepalive_call.cancel()
        self._keepalive_call = None
        for request in list(self.streams):
            self.streams.remove(request)
            request.transport.loseConnection()

    # -- serving --------------------------------------------------------------

    def render(self, request):
        path = request.path.decode()
        method = request.method.decode()
        args = {k.decode(): [x.decode() for x in v] for k, v in request.args.items()}
        headers = {k.decode().lower(): b", ".join(v).decode() for k, v in request.requestHeaders.getAllRawHeaders()}
        body = request.content.read() if request.content is not None else b""
        seen = Seen(method, path, args, headers, body)
        self.requests.append(seen)
        self._check_waiters()
        endpoint = _endpoint(method, path)
        request.setHeader(b"content-type", b"application/json; charset=utf-8")
        if endpoint is None:
            return self._fail(request, 404, "resource-not-found", "Not Found", f"no route {method} {path}")
        if self.token is not None and headers.get("authorization") != f"Bearer {self.token}":
            return self._fail(request, 401, "about:blank", "Unauthorized", "Unauthorized", status=401)
        limited = self._count_limit(request, endpoint)
        if limited is not None:
            return limited
        queue = self.scripts.get(endpoint)
        if queue:
            s = queue.popleft()
            if s.code is not None:
                return self._scripted(request, endpoint, s)
        return getattr(self, "_" + endpoint.replace("-", "_"))(request, seen)

    def _fail(self, request, code: int, kind: str, title: str, detail: str, **more) -> bytes:
        request.setResponseCode(code)
        request.setHeader(b"content-type", b"application/problem+json")
        return problem_body(kind, title, detail, **more)

    def _count_limit(self, request, endpoint: str):
        now = self.clock.seconds()
        limit = self.limits.setdefault(endpoint, [450, 450, now + 900])
        if now >= limit[2]:
            limit[1], limit[2] = limit[0], now + 900
        if limit[1] <= 0:
            self._limit_headers(request, limit)
            return self._fail(request, 429, "about:blank", "Too Many Requests", "Too Many Requests", status=429)
        limit[1] -= 1
        self._limit_headers(request, limit)
        return None

    def _limit_headers(self, request, limit) -> None:
        request.setHeader(b"x-rate-limit-limit", str(limit[0]).encode())
        request.setHeader(b"x-rate-limit-remaining", str(max(limit[1], 0)).encode())
        request.setHeader(b"x-rate-limit-reset", str(int(limit[2])).encode())

    def _scripted(self, request, endpoint: str, s: Scripted):
        request.setResponseCode(s.code)
        for k, v in s.headers.items():
            request.setHeader(k.encode(), str(v).encode())
        if endpoint == "stream" and s.code == 200:
            for chunk in s.body if isinstance(s.body, list) else [s.body]:
                request.write(chunk)
            if s.hold:
                self._hold_stream(request)
                return NOT_DONE_YET
            request.finish()
            return NOT_DONE_YET
        return s.body if isinstance(s.body, bytes) else json.dumps(s.body).encode()

    def _includes(self, posts: list[dict]) -> dict:
        users = {p["author_id"]: self.users[p["author_id"]] for p in posts if p.get("author_id") in self.users}
        places = {
            p["geo"]["place_id"]: self.places[p["geo"]["place_id"]]
            for p in posts
            if p.get("geo", {}).get("place_id") in self.places
        }
        out: dict[str, Any] = {}
        if users:
            out["users"] = list(users.values())
        if places:
            out["places"] = list(places.values())
        return out

    def _search(self, request, seen: Seen) -> bytes:
        query = seen.arg("query")
        if not query:
            return self._fail(
                request,
                400,
                "invalid-request",
                "Invalid Request",
                "One or more parameters to your request was invalid.",
                errors=[{"parameters": {"query": []}, "message": "The `query` query parameter can not be empty"}],
            )
        if len(query) > 512:
            return self._fail(
                request,
                400,
                "invalid-request",
                "Invalid Request",
                "The `query` query parameter value is too long (max 512)",
            )
        try:
            max_results = int(seen.arg("max_results") or 10)
        except ValueError:
            max_results = 0
        if not 10 <= max_results <= 100:
            return self._fail(
                request,
                400,
                "invalid-request",
                "Invalid Request",
                f"The `max_results` query parameter value [{max_results}] is not between 10 and 100",
            )
        since = int(seen.arg("since_id") or 0)
        token = seen.arg("next_token") or seen.arg("pagination_token")
        if token:
            try:
                state = json.loads(base64.urlsafe_b64decode(token.encode()))
                offset, until = state["o"], state["u"]
            except (ValueError, KeyError, TypeError):
                return self._fail(request, 400, "invalid-request", "Invalid Request", "invalid next_token")
        else:
            offset, until = 0, None
        found = [p for p in reversed(self.posts) if int(p["id"]) > since and matches(query, p)]
        if until is not None:
            found = [p for p in found if int(p["id"]) <= until]
        elif found:
            until = int(found[0]["id"])
        page = found[offset : offset + max_results]
        meta: dict[str, Any] = {"result_count": len(page)}
        body: dict[str, Any] = {}
        if page:
            body["data"] = page
            inc = self._includes(page)
            if inc:
                body["includes"] = inc
            meta["newest_id"] = page[0]["id"]
            meta["oldest_id"] = page[-1]["id"]
            if offset + max_results < len(found):
                meta["next_token"] = base64.urlsafe_b64encode(
                    json.dumps({"o": offset + max_results, "u": until}).encode()
                ).decode()
        body["meta"] = meta
        return json.dumps(body).encode()

    def _rules(self, request, seen: Seen) -> bytes:
        sent = datetime.fromtimestamp(self.clock.seconds(), timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")
        body: dict[str, Any] = {"meta": {"sent": sent, "result_count": len(self.rules)}}
        if self.rules:
            body["data"] = list(self.rules.values())
        return json.dumps(body).encode()

    def _rules_post(self, request, seen: Seen) -> bytes:
        sent = datetime.fromtimestamp(self.clock.seconds(), timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")
        try:
            doc = json.loads(seen.body)
        except ValueError:
            return self._fail(request, 400, "invalid-request", "Invalid Request", "body is not JSON")
        if "delete" in doc:
            ids = doc["delete"].get("ids") or []
            values = doc["delete"].get("values") or []
            deleted = 0
            for rid in list(self.rules):
                if rid in ids or self.rules[rid]["value"] in values:
                    del self.rules[rid]
                    deleted += 1
            summary = {"deleted": deleted, "not_deleted": len(ids) + len(values) - deleted}
            return json.dumps({"meta": {"sent": sent, "summary": summary}}).encode()
        created, errors = [], []
        for rule in doc.get("add") or []:
            value = rule.get("value")
            if not isinstance(value, str) or not value.strip() or len(value) > 1024:
                errors.append(
                    {
                        "value": value,
                        "title": "Invalid Rule",
                        "detail": "Rule is invalid",
                        "type": PROBLEMS + "invalid-rules",
                    }
                )
                continue
            dup = [r for r in self.rules.values() if r["value"] == value]
            if dup:
                errors.append(
                    {"value": value, "id": dup[0]["id"], "title": "DuplicateRule", "type": PROBLEMS + "duplicate-rules"}
                )
                continue
            self._next_rule += 1
            r = {"id": str(self._next_rule), "value": value}
            if rule.get("tag") is not None:
                r["tag"] = rule["tag"]
            self.rules[r["id"]] = r
            created.append(r)
        request.setResponseCode(201)
        body: dict[str, Any] = {
            "meta": {
                "sent": sent,
                "summary": {
                    "created": len(created),
                    "not_created": len(errors),
                    "valid": len(created),
                    "invalid": len(errors),
                },
            }
        }
        if created:
            body["data"] = created
        if errors:
            body["errors"] = errors
        return json.dumps(body).encode()

    def _stream(self, request, seen: Seen):
        if not self.rules:
            return self._fail(
                request,
                409,
                "streaming-connection",
                "ConnectionException",
                "There are no rules for this stream",
                status=409,
            )
        if len(self.streams) >= self.max_connections:
            return self._fail(
                request,
                429,
                "streaming-connection",
                "ConnectionException",
                "This stream is currently at the maximum allowed connection limit.",
                connection_issue="TooManyConnections",
            )
        request.setHeader(b"content-type", b"application/json; charset=utf-8")
        request.write(b"")
        self._hold_stream(request)
        return NOT_DONE_YET

    def _hold_stream(self, request) -> None:
        self.streams.append(request)
        request.notifyFinish().addBoth(lambda _: self.streams.remove(request) if request in self.streams else None)
        self._schedule_keepalive()

    def _schedule_keepalive(self) -> None:
        if self._keepalive_call is None or not self._keepalive_call.active():
            self._keepalive_call = self.clock.callLater(self.keepalive, self._keepalive_tick)

    def _keepalive_tick(self) -> None:
        self._keepalive_call = None
        if self.keepalives:
            self.stream_raw(b"\r\n")
        if self.streams:
            self._schedule_keepalive()

    def _send_post(self, request, post: dict) -> None:
        rules = [{"id": r["id"], "tag": r.get("tag")} for r in self.rules.values() if matches(r["value"], post)]
        if not rules:
            return
        line = {"data": post, "includes": self._includes([post]), "matching_rules": rules}
        request.write(json.dumps(line).encode() + b"\r\n")

    def _check_waiters(self) -> None:
        for w in list(self._waiters):
            pred, count, d = w
            if sum(1 for s in self.requests if pred(s)) >= count:
                self._waiters.remove(w)
                d.callback(self.requests)


def _endpoint(method: str, path: str) -> Optional[str]:
    path = path.rstrip("/")
    if path.endswith("/2/tweets/search/recent") and method == "GET":
        return "search"
    if path.endswith("/2/tweets/search/stream/rules"):
        return "rules" if method == "GET" else "rules-post" if method == "POST" else None
    if path.endswith("/2/tweets/search/stream") and method == "GET":
        return "stream"
    return None


SAMPLES = [
    "Is @acme down again? Can't log in since 10am #acmedown",
    "Loving the new Acme dashboard, great work! 🚀",
    "Thinking of switching from Globex to Acme, any recommendations?",
    "Globex support fixed my issue in 5 minutes. Impressed.",
    "acme charged me twice &amp; still no refund &lt;sigh&gt;",
    "Initech outage again? that's the third time this week",
    "Does anyone know if Initech supports SSO?",
]


def main(argv=None) -> None:
    import argparse
    import random
    import sys

    from twisted.internet import reactor
    from twisted.internet.task import LoopingCall
    from twisted.logger import globalLogBeginner, textFileLogObserver
    from twisted.web.server import Site

    parser = argparse.ArgumentParser(description="A fake X API v2 serving plausible posts.")
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--interface", default="127.0.0.1")
    parser.add_argument("--rate", type=float, default=1.0, help="posts per second")
    parser.add_argument("--token", default=None, help="require this bearer token (default: any)")
    args = parser.parse_args(argv)
    globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stdout)])
    fake = FakeX(reactor, token=args.token)
    rng = random.Random()
    places = [
        fake.add_place("Manhattan, NY", [-74.02, 40.70, -73.91, 40.88]),
        fake.add_place("Berlin, Germany", [13.08, 52.33, 13.76, 52.67]),
    ]
    users = ["alice", "bob", "carol_dev", "dave", "erin_ops"]

    def tick():
        fake.publish(
            rng.choice(SAMPLES),
            username=rng.choice(users),
            likes=rng.randrange(50),
            reposts=rng.randrange(10),
            replies=rng.randrange(5),
            followers=rng.randrange(10, 100000),
            verified=rng.random() < 0.1,
            place=rng.choice(places) if rng.random() < 0.2 else None,
        )

    LoopingCall(tick).start(1.0 / args.rate)
    reactor.listenTCP(args.port, Site(fake), interface=args.interface)
    print(f"fake X API on http://{args.interface}:{args.port}/ (base_url for the x source)")
    reactor.run()


if __name__ == "__main__":
    main()
