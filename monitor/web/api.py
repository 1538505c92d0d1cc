"""
The JSON API (C{/api/v1/...}), C{/healthz} and C{/metrics}, as a Klein app.

Every C{/api/} route needs C{Authorization: Bearer <token>}.  Parameters are
checked strictly: an unknown or malformed one is a 400 that names it, so a
typo in a dashboard's query does not silently return everything.
"""

from __future__ import annotations

import functools
import hmac
import json
import re
from typing import Any, Callable, Optional

from klein import Klein
from twisted.internet.defer import ensureDeferred
from twisted.logger import Logger

from monitor.model import LABELS, SENTIMENTS, parse_time
from monitor.store import MAX_LIMIT, PostQuery, StatsQuery


class BadParameter(ValueError):
    """
    A request parameter is wrong; the API answers 400 naming it.
    """

    def __init__(self, name: str, message: str) -> None:
        self.name = name
        self.message = message
        super().__init__(f"{name}: {message}")


def _json(request, status: int, body: Any) -> bytes:
    request.setResponseCode(status)
    request.setHeader(b"Content-Type", b"application/json; charset=utf-8")
    request.setHeader(b"Cache-Control", b"no-store")
    request.setHeader(b"X-Content-Type-Options", b"nosniff")
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


class Params:
    """
    Typed access to a request's query string.  Reading a parameter marks it
    known; L{finish} rejects any the route did not read.
    """

    def __init__(self, request) -> None:
        self._args: dict[str, list[str]] = {}
        for k, vs in request.args.items():
            try:
                self._args[k.decode("utf-8")] = [v.decode("utf-8") for v in vs]
            except UnicodeDecodeError:
                raise BadParameter(repr(k)[2:-1], "is not UTF-8")
        self._seen: set[str] = set()

    def text(self, name: str) -> Optional[str]:
        self._seen.add(name)
        values = self._args.get(name)
        if not values or values[-1] == "":
            return None
        if len(values) > 1:
            raise BadParameter(name, "given more than once")
        return values[0]

    def choice(self, name: str, choices) -> Optional[str]:
        v = self.text(name)
        if v is not None and v not in choices:
            raise BadParameter(name, "must be one of " + ", ".join(choices))
        return v

    def integer(self, name: str, default: int, low: int, high: int) -> int:
        v = self.text(name)
        if v is None:
            return default
        if not re.fullmatch(r"\d{1,9}", v) or not low <= int(v) <= high:
            raise BadParameter(name, f"must be a whole number from {low} to {high}")
        return int(v)

    def time(self, name: str) -> Optional[float]:
        v = self.text(name)
        if v is None:
            return None
        try:
            return float(v) if re.fullmatch(r"\d+(\.\d+)?", v) else parse_time(v)
        except (ValueError, OverflowError):
            raise BadParameter(name, "must be an ISO 8601 time (2026-01-31T12:00:00Z) or unix seconds")

    def duration(self, name: str, default: int) -> int:
        v = self.text(name)
        if v is None:
            return default
        m = re.fullmatch(r"(\d{1,7})([smhd]?)", v)
        if not m or int(m.group(1)) == 0:
            raise BadParameter(name, "must be a duration such as 300, 5m, 1h or 1d")
        return int(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]

    def finish(self) -> None:
        unknown = sorted(set(self._args) - self._seen)
        if unknown:
            raise BadParameter(unknown[0], "unknown parameter")


def api_route(method: Callable) -> Callable:
    """
    Wrap an API handler: check the bearer token, turn L{BadParameter} into a
    400, and encode the handler's result (a dict, maybe from a coroutine) as
    JSON.
    """

    @functools.wraps(method)
    def wrapper(self, request, *args, **kwargs):
        if not self.auth.check(request):
            request.setHeader(b"WWW-Authenticate", b'Bearer realm="monitor"')
            return _json(request, 401, {"error": "a valid bearer token is required"})

        async def run():
            try:
                params = Params(request)
                result = await method(self, request, params, *args, **kwargs)
            except BadParameter as e:
                return _json(request, 400, {"error": e.message, "parameter": e.name})
            return _json(request, 200, result)

        return ensureDeferred(run())

    return wrapper


class TokenAuth:
    """
    Bearer tokens for machines.  Compared in constant time.
    """

    def __init__(self, tokens) -> None:
        self.tokens = [t.encode("utf-8") for t in tokens if t]

    def check(self, request) -> bool:
        header = request.getHeader(b"authorization") or b""
        scheme, _, token = header.partition(b" ")
        if scheme.lower() != b"bearer" or not token.strip():
            return False
        given = token.strip()
        # Check every token, so timing does not tell which one was close.
        return any([hmac.compare_digest(given, t) for t in self.tokens])


class Api:
    """
    The hub's HTTP API.  State lives on the instance (a hub), not in module
    globals, so several hubs can run in one process (tests do).
    """

    app = Klein()
    log = Logger()

    def __init__(self, hub, auth: TokenAuth) -> None:
        self.hub = hub
        self.auth = auth

    def resource(self):
        return self.app.resource()

    @app.route("/healthz", methods=["GET"])
    def healthz(self, request):
        sources = {s.name: s.state for s in self.hub.sources}
        return _json(request, 200, {"status": "ok", "queue": self.hub.queue.size(), "sources": sources})

    @app.route("/metrics", methods=["GET"])
    def metrics(self, request):
        self.hub.metrics.queue_depth.set(self.hub.queue.size())
        self.hub.metrics.queue_blocked.set(self.hub.queue.waiting_puts())
        request.setHeader(b"Content-Type", b"text/plain; version=0.0.4; charset=utf-8")
        return self.hub.metrics.render()

    def _topic(self, params: Params) -> Optional[str]:
        topic = params.text("topic")
        if topic is not None and self.hub.topics.get(topic) is None:
            raise BadParameter("topic", f"no such topic: {topic!r}")
        return topic

    @app.route("/api/v1/posts", methods=["GET"])
    @api_route
    async def posts(self, request, params: Params):
        query = PostQuery(
            topic=self._topic(params),
            source=params.text("source"),
            sentiment=params.choice("sentiment", SENTIMENTS),
            label=params.choice("label", LABELS),
            q=params.text("q"),
            since=params.time("since"),
            until=params.time("until"),
            limit=params.integer("limit", 50, 1, MAX_LIMIT),
            cursor=params.text("cursor"),
        )
        params.finish()
        try:
            posts, cursor = await self.hub.store.query_posts(query)
        except ValueError as e:
            name, _, message = str(e).partition(": ")
            raise BadParameter(name if name in ("q", "cursor") else "q", message or str(e))
        return {"posts": posts, "next": cursor}

    @app.route("/api/v1/topics", methods=["GET"])
    @api_route
    async def topic_list(self, request, params: Params):
        params.finish()
        return {"topics": [t.to_dict() for t in self.hub.topics.topics]}

    @app.route("/api/v1/stats", methods=["GET"])
    @api_route
    async def stats(self, request, params: Params):
        query = StatsQuery(
            topic=self._topic(params),
            since=params.time("since"),
            until=params.time("until"),
            bucket=params.duration("bucket", 3600),
            top=params.integer("top", 10, 1, 100),
        )
        params.finish()
        if query.since is not None and query.until is not None:
            if query.until <= query.since:
                raise BadParameter("until", "must be after since")
            if (query.until - query.since) / query.bucket > 10000:
                raise BadParameter("bucket", "too small for the range (more than 10,000 buckets)")
        return await self.hub.store.stats(query)

    @app.route("/api/v1/sources", methods=["GET"])
    @api_route
    async def sources(self, request, params: Params):
        params.finish()
        return {"sources": [s.status() for s in self.hub.sources]}

    @app.route("/api/v1/dead-letters", methods=["GET"])
    @api_route
    async def dead_letters(self, request, params: Params):
        source = params.text("source")
        limit = params.integer("limit", 100, 1, 1000)
        params.finish()
        return {"dead_letters": await self.hub.store.dead_letters(source, limit)}
