"""
How much of a request body the hub reads, decided before any of it is read.

twisted.web buffers a whole request body and, left to itself, parses a form
body into C{request.args} on the reactor thread before any resource (or any
check of who is asking) sees the request: one unauthenticated 20 MB form
with two million fields froze the hub for seconds (issue 9).  Here the
route's L{Limit} is looked up from the request line as soon as the headers
are in.  A declared length over it is refused with 413 before a byte of the
body is read; a chunked body is refused as soon as it passes the limit; a
form body is counted before it is parsed, and parsed only if it has no more
fields than the route allows.  Only urlencoded forms are parsed: no page
sends C{multipart/form-data}, so it is refused (415) rather than parsed.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Iterable, Optional

from twisted.logger import Logger
from twisted.web.http import HTTPChannel, parse_qs
from twisted.web.server import Request, Site

from monitor.config import defaults

__all__ = ["EDIT_ROUTES", "BodyPolicy", "Limit", "LimitedSite", "body_fields", "body_policy"]

#: Defaults of the C{[web]} keys that set the limits (written in
#: L{monitor.config}).
_WEB = defaults("web")
DEFAULT_MAX_BODY = _WEB["max_body"]
DEFAULT_MAX_FIELDS = _WEB["max_fields"]
DEFAULT_MAX_EDIT_BODY = _WEB["max_edit_body"]
DEFAULT_MAX_EDIT_FIELDS = _WEB["max_edit_fields"]

#: Routes that take more than the default: the topic and rule forms (a
#: topic may have 500 terms of 200 characters in each of three fields, a
#: rule form lists every topic) and the API's topic, rule and backtest
#: bodies.
EDIT_ROUTES = (
    (b"POST", "/topics/save"),
    (b"POST", "/alerts/rules/save"),
    (b"POST", "/api/v1/rules"),
    (b"PUT", "/api/v1/rules/<name>"),
    (b"POST", "/api/v1/backtest"),
    (b"PUT", "/api/v1/topics/<name>"),
)

_FORM = b"application/x-www-form-urlencoded"
_MULTIPART = b"multipart/form-data"


@dataclass(frozen=True)
class Limit:
    """
    What one route reads: at most C{body} bytes of body and, in a form, at
    most C{fields} fields.
    """

    body: int
    fields: int


class BodyPolicy:
    """
    The limit of each route: C{default} unless one of C{routes} (method,
    Klein-style path with C{<name>} segments) says otherwise.
    """

    def __init__(self, default: Limit, routes: Iterable[tuple[bytes, str, Limit]] = ()) -> None:
        self.default = default
        self._routes = [(method, _pattern(path), limit) for method, path, limit in routes]

    def limit(self, method: bytes, uri: bytes) -> Limit:
        path = uri.split(b"?", 1)[0]
        for wanted, pattern, limit in self._routes:
            if method == wanted and pattern.fullmatch(path):
                return limit
        return self.default


def _pattern(path: str) -> re.Pattern:
    parts = re.split(r"(<[^>]+>)", path)
    return re.compile(b"".join(rb"[^/]+" if p.startswith("<") else re.escape(p.encode("ascii")) for p in parts if p))


def body_policy(web: dict) -> BodyPolicy:
    """
    The policy the C{[web]} keys C{max_body}, C{max_fields},
    C{max_edit_body} and C{max_edit_fields} describe.
    """
    default = Limit(web["max_body"], web["max_fields"])
    edit = Limit(web["max_edit_body"], web["max_edit_fields"])
    return BodyPolicy(default, [(method, path, edit) for method, path in EDIT_ROUTES])


def _refusal(message: str) -> bytes:
    return json.dumps({"error": message, "parameter": "body"}).encode("utf-8")


_REASONS = {413: b"Content Too Large", 415: b"Unsupported Media Type"}


class LimitedChannel(HTTPChannel):
    """
    An HTTP/1.1 channel that looks up the route's limit when a request's
    headers are complete and refuses a body over it before reading it.
    """

    log = Logger()
    _refused = False

    def allHeadersReceived(self):
        request = self.requests[-1]
        request.limit = self.site.policy.limit(self._command, self._path)
        if self.length and self.length > request.limit.body:
            request.gotLength(0)
            self.refuse(413, f"the body may be at most {request.limit.body} bytes on this route")
            return
        super().allHeadersReceived()

    def refuse(self, status: int, message: str) -> None:
        """
        Answer C{status} at once and close: the rest of the body is never
        read (the connection stops reading when it starts closing).
        """
        if self._refused:
            return
        self._refused = True
        self.log.info("refused a request body: {status} {message}", status=status, message=message)
        body = _refusal(message)
        self.transport.write(
            b"HTTP/1.1 %d %s\r\nContent-Type: application/json; charset=utf-8\r\n"
            b"Content-Length: %d\r\nConnection: close\r\nX-Content-Type-Options: nosniff\r\n\r\n%s"
            % (status, _REASONS[status], len(body), body)
        )
        self.loseConnection()

    def rawDataReceived(self, data):
        if not self._refused:
            super().rawDataReceived(data)

    def lineReceived(self, line):
        if not self._refused:
            super().lineReceived(line)

    def allContentReceived(self):
        if not self._refused:
            super().allContentReceived()


class LimitedRequest(Request):
    """
    A request that counts its body against its route's limit and parses a
    form body itself, after counting its fields.
    """

    #: Until the channel has looked up the route's.
    limit = Limit(DEFAULT_MAX_BODY, DEFAULT_MAX_FIELDS)
    #: The fields of a urlencoded body alone (C{args} also holds the query
    #: string's): see L{body_fields}.
    body_fields: Optional[dict] = None

    def __init__(self, channel, *args, **kwargs) -> None:
        kwargs["parsePOSTFormSubmission"] = False
        super().__init__(channel, *args, **kwargs)
        self._received = 0

    def handleContentChunk(self, data):
        self._received += len(data)
        if self._received > self.limit.body:
            self.channel.refuse(413, f"the body may be at most {self.limit.body} bytes on this route")
            return
        super().handleContentChunk(data)

    def process(self):
        problem = self._parse_form()
        if problem is None:
            return super().process()
        status, message = problem
        self.site = self.channel.site
        self.prepath, self.postpath = [], []
        self.setResponseCode(status)
        self.setHeader(b"content-type", b"application/json; charset=utf-8")
        self.setHeader(b"x-content-type-options", b"nosniff")
        self.setHeader(b"connection", b"close")
        self.channel.persistent = False
        body = _refusal(message)
        self.setHeader(b"content-length", b"%d" % len(body))
        self.write(body)
        self.finish()

    def _parse_form(self):
        """
        Put the fields of a urlencoded body in C{args}, as twisted.web
        would, if there are not too many; or say why not.
        """
        ctype = (self.requestHeaders.getRawHeaders(b"content-type") or [b""])[0]
        kind = ctype.split(b";", 1)[0].strip().lower()
        if self.method != b"POST" or self.content is None:
            return None
        if kind == _MULTIPART:
            return 415, "forms are sent as application/x-www-form-urlencoded"
        if kind != _FORM:
            return None
        body = self.content.read()
        self.content.seek(0)
        fields = body.count(b"&") + body.count(b";") + 1
        if fields > self.limit.fields:
            return 413, f"a form may have at most {self.limit.fields} fields on this route"
        self.body_fields = parse_qs(body, 1)
        self.args.update(self.body_fields)
        return None


def body_fields(request) -> dict:
    """
    The fields of a request's urlencoded body, without the query string's
    (C{request.args} mixes both): where a CSRF token is taken from.  A
    L{LimitedRequest} has them parsed already; another request (a test's,
    or twisted.web's own) has its body, within its site's limits, parsed
    here.
    """
    fields = getattr(request, "body_fields", None)
    if fields is not None:
        return fields
    ctype = (request.requestHeaders.getRawHeaders(b"content-type") or [b""])[0]
    if request.method != b"POST" or request.content is None or ctype.split(b";", 1)[0].strip().lower() != _FORM:
        return {}
    request.content.seek(0)
    body = request.content.read()
    request.content.seek(0)
    return parse_qs(body, 1)


class LimitedSite(Site):
    """
    A C{Site} whose requests keep to a L{BodyPolicy}.
    """

    protocol = LimitedChannel
    requestFactory = LimitedRequest

    def __init__(self, resource, policy: BodyPolicy, **kwargs) -> None:
        super().__init__(resource, **kwargs)
        self.policy = policy
