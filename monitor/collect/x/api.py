"""
X API v2 as one app sees it: authenticated requests, answers read within
bounds, the rate-limit window of each endpoint waited out (it resets at
C{x-rate-limit-reset}), and errors sorted by what they call for (the
waits they call for are the service's: L{monitor.collect.x.source}).
"""

from __future__ import annotations

import json
from typing import Any, Optional

from twisted.internet.defer import CancelledError

from monitor.collect.base import RATE_LIMITED
from monitor.collect.http import BodyTooLarge, HTTPCollector, NoResponse, RateLimits, read_body
from monitor.model import iso8601

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

#: Most bytes read from one polled response (a full page is a few 100 KB).
MAX_BODY = 8 << 20


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


class XClient:
    """
    X API v2 for one collector, search or stream alike: requests with the
    app's token, answers read within bounds, and the rate-limit window of
    each endpoint (the stream's gap filling asks recent search too, so the
    windows are the client's, not a mode's).

    The collector is the collaborator it asks through: its HTTP client
    (C{request}, C{headers}), its waits and state (C{wait}), where
    unreadable answers go (C{malformed}) and its log.

    @ivar partial_errors: errors X reported inside successful responses.
    """

    def __init__(self, collector: HTTPCollector, bearer_token: str, base_url: str, request_timeout: float) -> None:
        self.collector = collector
        self.bearer_token = bearer_token
        self.base_url = base_url.rstrip("/")
        self.request_timeout = request_timeout
        self.partial_errors = 0
        # A used-up window is waited out, one second past its reset, but
        # never longer than a whole window (15 minutes) plus a minute.
        self.limits = RateLimits(collector.reactor, margin=1.0, cap=16 * 60)

    async def request(self, method: str, path: str, endpoint: str, params=None, json_body=None):
        """
        One request; the response if it is a 2xx, else L{Failed}.
        """
        c = self.collector
        await self._respect_limit(endpoint)
        headers = c.headers({"Authorization": f"Bearer {self.bearer_token}"})
        kwargs: dict[str, Any] = dict(params=params, headers=headers, allow_redirects=False)
        if json_body is not None:
            kwargs["json"] = json_body
        try:
            response = await c.request(method, self.base_url + path, self.request_timeout, **kwargs)
        except NoResponse as e:
            raise Failed("network", str(e))
        self._note_limits(endpoint, response)
        if 200 <= response.code < 300:
            return response
        try:
            raw = await read_body(response, 65536, c.reactor, self.request_timeout)
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

    async def json(self, response, context: str) -> dict:
        """
        A response's body as a JSON object, else L{Failed} (the body kept
        as malformed).
        """
        c = self.collector
        try:
            raw = await read_body(response, MAX_BODY, c.reactor, self.request_timeout)
        except CancelledError:
            raise
        except BodyTooLarge as e:
            c.malformed(e.head, str(e), context)
            raise Failed("payload", str(e))
        except Exception as e:
            raise Failed("network", f"reading the response: {type(e).__name__}: {e}")
        try:
            obj = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            c.malformed(raw, "invalid JSON", context)
            raise Failed("payload", f"invalid JSON from {context}")
        if not isinstance(obj, dict):
            c.malformed(raw, "not a JSON object", context)
            raise Failed("payload", f"not a JSON object from {context}")
        return obj

    def _note_limits(self, endpoint: str, response) -> None:
        c = self.collector
        window = self.limits.note(response.headers, endpoint)
        if window.remaining is not None:
            c.rate_limit_remaining = window.remaining
            c.metrics.rate_limit_remaining.labels(c.name).set(window.remaining)

    async def _respect_limit(self, endpoint: str) -> None:
        """
        With the window used up, wait for its reset instead of asking again.
        """
        delay = self.limits.wait_before(endpoint)
        if delay is not None:
            reset = self.limits.windows[endpoint].reset
            await self.collector.wait(delay, RATE_LIMITED, f"{endpoint} rate limit used up until {iso8601(reset)}")
            self.limits.forget(endpoint)

    def partial(self, body: dict, context: str) -> None:
        """
        Count and log the errors X reports beside data (or, inside the
        stream, instead of it).
        """
        c = self.collector
        errors = body.get("errors")
        if "data" in body and isinstance(errors, list) and errors:
            self.partial_errors += len(errors)
            first = errors[0] if isinstance(errors[0], dict) else {}
            c.log.warn(
                "source {source}: {count} partial error(s) in {context}, e.g. {error}",
                source=c.name,
                count=len(errors),
                context=context,
                error=problem(json.dumps(first).encode())[1],
            )
        elif "data" not in body and isinstance(errors, list):
            # Inside the stream: operational-disconnect and the like.
            for e in errors[:5]:
                c.log.warn(
                    "source {source}: X says: {error}",
                    source=c.name,
                    error=problem(json.dumps(e).encode())[1] if isinstance(e, dict) else e,
                )


__all__ = ["FIELDS", "MAX_BODY", "RULES", "SEARCH", "STREAM", "Failed", "XClient", "problem"]
