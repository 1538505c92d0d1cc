"""
The one place where request parameters are read, for the API and the pages.

Every value a client sends is checked here and a bad one becomes a
L{BadParameter} that names it, so that an input error is a 400 saying which
parameter is wrong, never a 500 from deeper down.  The API raises at the
first problem; a page reads with C{collect=True} and shows every problem
next to its field.
"""

from __future__ import annotations

import json
import math
import re
from datetime import datetime, timezone
from typing import Any, Optional

from monitor.model import LABELS, SENTIMENTS, parse_time
from monitor.query import QueryError, parse as parse_query
from monitor.store import PostQuery, check_story

__all__ = ["MAX_DEPTH", "BadParameter", "Params", "json_body", "post_query", "row_id", "store_problem"]

#: How deep a JSON body may nest: a rule is three levels deep, and a body
#: nested 100,000 levels must be refused, not recursed into.
MAX_DEPTH = 32

_TIME_MESSAGE = "must be an ISO 8601 time (2026-01-31T12:00:00Z) or unix seconds"


class BadParameter(ValueError):
    """
    A request parameter is wrong; the answer is a 400 naming it.
    """

    def __init__(self, name: str, message: str) -> None:
        self.name = name
        self.message = message
        super().__init__(f"{name}: {message}")


def check_time(ts: float) -> float:
    """
    C{ts} if it is a time every part of the hub can show (a finite number
    of seconds between the years 1 and 9999); else C{ValueError}.
    """
    if isinstance(ts, bool) or not isinstance(ts, (int, float)) or not math.isfinite(ts):
        raise ValueError(ts)
    try:
        datetime.fromtimestamp(ts, tz=timezone.utc)
    except (OverflowError, OSError) as e:
        raise ValueError(ts) from e
    return float(ts)


def parse_any_time(value: Any) -> float:
    """
    ISO 8601 text or unix seconds (a number, or text of digits) as unix
    seconds; C{ValueError} for anything else.
    """
    if isinstance(value, str):
        text = value.strip()
        if re.fullmatch(r"\d{1,12}(\.\d{1,9})?", text):
            return check_time(float(text))
        try:
            return check_time(parse_time(text))
        except OverflowError as e:
            raise ValueError(value) from e
    return check_time(value)


def row_id(text: str) -> Optional[int]:
    """
    A row id typed into a form or a path (ASCII digits, a positive 64-bit
    SQLite integer), or C{None}: C{str.isdigit} takes "²" and any length,
    which C{int} or SQLite then refuse with an exception.
    """
    if not isinstance(text, str) or not re.fullmatch(r"[0-9]{1,19}", text):
        return None
    value = int(text)
    return value if 0 < value < 1 << 63 else None


class Params:
    """
    Typed access to a request's query string (and form fields: twisted.web
    puts both in C{request.args}).  Reading a parameter marks it known;
    L{finish} rejects any the route did not read.

    @ivar errors: with C{collect=True}, the problems found so far by
        parameter name (a bad value reads as not given).
    """

    def __init__(self, request, collect: bool = False) -> None:
        self._collect = collect
        self.errors: dict[str, str] = {}
        self._args: dict[str, list[str]] = {}
        for k, vs in request.args.items():
            try:
                name = k.decode("utf-8")
            except UnicodeDecodeError:
                self._bad(repr(k)[2:-1], "is not UTF-8", None)
                continue
            try:
                self._args[name] = [v.decode("utf-8") for v in vs]
            except UnicodeDecodeError:
                self._bad(name, "is not UTF-8", None)
        self._seen: set[str] = set()

    def _bad(self, name: str, message: str, fallback: Any) -> Any:
        if not self._collect:
            raise BadParameter(name, message)
        self.errors.setdefault(name, message)
        return fallback

    def text(self, name: str) -> Optional[str]:
        self._seen.add(name)
        values = self._args.get(name)
        if not values or values[-1] == "":
            return None
        if len(values) > 1 and not self._collect:
            raise BadParameter(name, "given more than once")
        if "\x00" in values[-1]:
            return self._bad(name, "must not contain a NUL character", None)
        return values[-1]

    def choice(self, name: str, choices) -> Optional[str]:
        v = self.text(name)
        if v is not None and v not in choices:
            return self._bad(name, "must be one of " + ", ".join(choices), None)
        return v

    def integer(self, name: str, default: int, low: int, high: int) -> int:
        v = self.text(name)
        if v is None:
            return default
        if not re.fullmatch(r"\d{1,9}", v) or not low <= int(v) <= high:
            return self._bad(name, f"must be a whole number from {low} to {high}", default)
        return int(v)

    def time(self, name: str) -> Optional[float]:
        v = self.text(name)
        if v is None:
            return None
        try:
            return parse_any_time(v)
        except ValueError:
            return self._bad(name, _TIME_MESSAGE, None)

    def duration(self, name: str, default: int) -> int:
        v = self.text(name)
        if v is None:
            return default
        m = re.fullmatch(r"(\d{1,7})([smhd]?)", v)
        if not m or int(m.group(1)) == 0:
            return self._bad(name, "must be a duration such as 300, 5m, 1h or 1d", default)
        return int(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]

    def topic_query(self, name: str) -> Optional[str]:
        """
        A topic query (L{monitor.query}) as given, once it parses; the
        problem names the position and what was expected there.
        """
        v = self.text(name)
        if v is None or not v.strip():
            return None
        try:
            parse_query(v)
        except QueryError as e:
            return self._bad(name, f"does not parse: {e}", None)
        return v

    def story(self, name: str) -> Optional[str]:
        """
        A story id (L{monitor.stories}) as given, if it can be one.
        """
        v = self.text(name)
        if v is None:
            return None
        try:
            return check_story(v)
        except ValueError as e:
            return self._bad(name, str(e).partition(": ")[2], None)

    def finish(self) -> None:
        unknown = sorted(set(self._args) - self._seen)
        if unknown:
            self._bad(unknown[0], "unknown parameter", None)


def post_query(params: Params, limit: int, highest: int) -> PostQuery:
    """
    The post search of C{GET /api/v1/posts} and the posts page, from its
    parameters: C{topic}, C{source}, C{sentiment}, C{label}, C{q},
    C{query} (a topic query, L{monitor.query}), C{story}, C{since},
    C{until}, C{limit} and C{cursor}.
    """
    query = PostQuery(
        topic=params.text("topic"),
        source=params.text("source"),
        sentiment=params.choice("sentiment", SENTIMENTS),
        label=params.choice("label", LABELS),
        q=params.text("q"),
        since=params.time("since"),
        until=params.time("until"),
        limit=params.integer("limit", limit, 1, highest),
        cursor=params.text("cursor"),
        query=params.topic_query("query"),
        story=params.story("story"),
    )
    if query.since is not None and query.until is not None and query.until <= query.since:
        params._bad("until", "must be after since", None)
    return query


def store_problem(error: ValueError, default: str) -> BadParameter:
    """
    A store's C{ValueError("name: message")} about a query as the bad
    parameter it names (C{default} if it names none).
    """
    name, sep, message = str(error).partition(": ")
    if not sep or not re.fullmatch(r"[a-z_]+", name):
        return BadParameter(default, str(error))
    return BadParameter(name, message)


def json_body(request, required: bool = True) -> Any:
    """
    The request's body as JSON (UTF-8, nested at most L{MAX_DEPTH} deep).
    A missing or malformed body is a bad parameter named C{body}.
    """
    raw = request.content.read() if request.content is not None else b""
    if not raw.strip():
        if required:
            raise BadParameter("body", "a JSON body is required")
        return {}
    # Look before parsing: the parser recurses once per level.
    if raw.count(b"[") + raw.count(b"{") > MAX_DEPTH and _too_deep(raw):
        raise BadParameter("body", f"nests deeper than {MAX_DEPTH} levels")
    try:
        value = json.loads(raw.decode("utf-8"), parse_constant=_no_constant)
    except (UnicodeDecodeError, ValueError) as e:
        raise BadParameter("body", f"is not valid JSON ({e})")
    return value


def _no_constant(name: str):
    raise ValueError(f"{name} is not JSON")


_BRACKETS = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{}]')


def _too_deep(raw: bytes) -> bool:
    """
    Whether the brackets of a JSON text (strings skipped) nest deeper than
    L{MAX_DEPTH}: one linear scan, stopping as soon as they do.
    """
    level = 0
    for m in _BRACKETS.finditer(raw):
        token = m.group()
        if token in (b"[", b"{"):
            level += 1
            if level > MAX_DEPTH:
                return True
        elif token in (b"]", b"}"):
            level -= 1
    return False
