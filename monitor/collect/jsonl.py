"""
The replay post format: one JSON object per line, UTF-8.

This is a public contract.  Replay files are written by users and by
C{bench/}, and a replay source reads them with L{parse_post}, so every
problem a line can have becomes one L{MalformedPayload} that names the field
at fault: the collector dead-letters the line and goes on, it never crashes.

Rules that are easy to miss:

  - an optional field that is C{null} is the same as a missing one;
  - unknown fields are ignored, so newer writers work with older readers;
  - a UTF-8 byte order mark and a trailing C{\\r\\n} or C{\\n} are tolerated;
  - C{NaN} and C{Infinity} are not JSON and are refused;
  - strings must be valid Unicode (no lone surrogates from C{\\ud800}
    escapes) and may not contain NUL, which no store can keep.

Lines are decoded with C{orjson} (several times faster than C{json}); a line
it refuses, or one whose values it would read differently (an integer too
big for 64 bits, which it turns into a float), is decoded again by C{json},
so a bad line gets exactly the reason it always got.
"""

from __future__ import annotations

import json
import math
from datetime import datetime, timedelta, timezone
from typing import Any, Optional
from urllib.parse import urlsplit

import orjson

from monitor.model import Post, parse_time

__all__ = ["MAX_LINE", "MalformedPayload", "parse_post", "format_post"]

#: The longest line accepted, in bytes, without its line ending.  A bigger
#: one is a broken file (or an attack), not a post.
MAX_LINE = 1 << 20

#: Counters above this do not fit a 64-bit SQL integer.
MAX_COUNT = (1 << 63) - 1

_BOM = b"\xef\xbb\xbf"
_COUNTERS = ("likes", "reposts", "replies")
#: The counts L{_parse_plain} reads, in its order.
_PLAIN_COUNTS = (*_COUNTERS, "author_followers")


class MalformedPayload(ValueError):
    """
    A line that is not a valid replay post.

    @ivar reason: what is wrong, naming the field, e.g.
        C{"likes: must be a non-negative integer"}.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _show(value: Any, limit: int = 60) -> str:
    """
    A repr short enough for a log line, since values come from strangers.
    """
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _refuse_constant(name: str) -> Any:
    raise MalformedPayload(f"invalid JSON: {name} is not allowed")


def _string(d: dict, key: str, *, required: bool, nonempty: bool) -> Optional[str]:
    value = d.get(key)
    if value is None:
        if required:
            raise MalformedPayload(f"{key}: required")
        return None
    if not isinstance(value, str):
        raise MalformedPayload(f"{key}: must be a string, not {type(value).__name__}")
    if nonempty and not value.strip():
        raise MalformedPayload(f"{key}: must not be empty")
    _check_text(key, value)
    return value


def _check_text(key: str, value: str) -> None:
    """
    Refuse strings that would break a store or an encoder later, far from
    the line that caused it.
    """
    if "\x00" in value:
        raise MalformedPayload(f"{key}: contains a NUL character")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise MalformedPayload(f"{key}: contains an unpaired surrogate") from None


def _native_id(d: dict) -> str:
    value = d.get("id")
    if value is None:
        raise MalformedPayload("id: required")
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str) or not value.strip():
        raise MalformedPayload("id: must be a non-empty string or an integer")
    _check_text("id", value)
    return value


def _created_at(d: dict) -> float:
    value = d.get("created_at")
    if value is None:
        raise MalformedPayload("created_at: required")
    if isinstance(value, bool):
        raise MalformedPayload("created_at: must be an ISO 8601 string or unix seconds")
    if isinstance(value, (int, float)):
        try:
            ts = float(value)
        except OverflowError:
            raise MalformedPayload("created_at: out of range") from None
    elif isinstance(value, str):
        try:
            ts = parse_time(value)
        except (ValueError, OverflowError):
            raise MalformedPayload(f"created_at: not an ISO 8601 timestamp: {_show(value)}") from None
    else:
        raise MalformedPayload("created_at: must be an ISO 8601 string or unix seconds")
    # Everything downstream formats it as a date again; make sure it can.
    try:
        if not math.isfinite(ts):
            raise ValueError(ts)
        datetime.fromtimestamp(ts, tz=timezone.utc)
    except (ValueError, OverflowError, OSError):
        raise MalformedPayload("created_at: out of range") from None
    return ts


def _url(d: dict) -> Optional[str]:
    value = _string(d, "url", required=False, nonempty=False)
    if value is None:
        return None
    problem = "url: must be an absolute http or https URL"
    if any(c.isspace() or ord(c) < 0x20 or c == "\x7f" for c in value):
        raise MalformedPayload(problem)
    try:
        parts = urlsplit(value)
    except ValueError:
        raise MalformedPayload(problem) from None
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        raise MalformedPayload(problem)
    return value


def _count(d: dict, key: str) -> Optional[int]:
    value = d.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise MalformedPayload(f"{key}: must be a non-negative integer")
    if value > MAX_COUNT:
        raise MalformedPayload(f"{key}: too large")
    return value


def _coordinate(d: dict, key: str, bound: float) -> Optional[float]:
    value = d.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise MalformedPayload(f"{key}: must be a number")
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not -bound <= number <= bound:
        raise MalformedPayload(f"{key}: must be between {-bound:g} and {bound:g}")
    return number


#: A float this big in orjson's result may have been an integer literal
#: (orjson makes floats of integers beyond 64 bits; C{json} keeps them).
_BIG = float(1 << 63)


def _decode(line: bytes) -> dict:
    """
    Bytes to a JSON object, with the line-level checks.
    """
    if not isinstance(line, (bytes, bytearray, memoryview)):
        raise TypeError(f"line must be bytes, not {type(line).__name__}")
    line = bytes(line)
    if line.startswith(_BOM):
        line = line[len(_BOM) :]
    if line.endswith(b"\n"):
        line = line[:-1]
    if line.endswith(b"\r"):
        line = line[:-1]
    if len(line) > MAX_LINE:
        raise MalformedPayload(f"line too long ({len(line)} bytes > {MAX_LINE})")
    return _load(line)


def _load(line: bytes) -> dict:
    """
    A line without its ending to a JSON object, with C{orjson} when it reads
    the line as C{json} would.
    """
    try:
        value = orjson.loads(line)
    except orjson.JSONDecodeError:
        pass  # json says why, in the words it always used
    else:
        if type(value) is dict and not any(type(v) is float and not -_BIG < v < _BIG for v in value.values()):
            return value
    return _load_slowly(line)


def _load_slowly(line: bytes) -> dict:
    """
    L{_load} with C{json}: the reference, and the reasons for bad lines.
    """
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedPayload("invalid UTF-8") from None
    if not text.strip():
        raise MalformedPayload("invalid JSON: empty line")
    try:
        value = json.loads(text, parse_constant=_refuse_constant)
    except json.JSONDecodeError as e:
        raise MalformedPayload(f"invalid JSON: {e}") from None
    except RecursionError:
        raise MalformedPayload("invalid JSON: nested too deeply") from None
    except ValueError as e:
        # MalformedPayload from _refuse_constant, or an integer too long
        # for int(): both are the line's fault.
        if isinstance(e, MalformedPayload):
            raise
        raise MalformedPayload(f"invalid JSON: {e}") from None
    if not isinstance(value, dict):
        raise MalformedPayload("not a JSON object")
    return value


def parse_post(line: bytes, source: str, network: str, received_at: float) -> Post:
    """
    Parse one line of a replay file into a L{Post}.

    @param line: one line, with or without its line ending.
    @param source: the configured name of the source reading the file.
    @param network: the namespace of the posts' C{id}.
    @param received_at: when the line was read, in unix seconds.
    @raise MalformedPayload: the line is not a valid post; C{reason} says
        why, naming the field.
    """
    d = _decode(line)
    post = _parse_plain(d, source, network, received_at)
    if post is not None:
        return post
    return _parse_checked(d, source, network, received_at)


def _parse_plain(d: dict, source: str, network: str, received_at: float) -> Optional[Post]:
    """
    The usual line (every field of the plain type, no place) in a few
    checks: the same L{Post} as L{_parse_checked}, or C{None} for anything
    else, which then goes through the field-by-field checks and their
    reasons.  It raises only from a check L{_parse_checked} makes at the
    same point (the fields before it are already known good), so a bad
    line gets the same reason either way.
    """
    get = d.get
    native_id, text, author, lang = get("id"), get("text"), get("author"), get("lang")
    if type(text) is not str or type(author) is not str or not author.strip():
        return None
    kind = type(native_id)
    if kind is int:
        native_id = str(native_id)
        strings = text + author
    elif kind is str and native_id.strip():
        strings = native_id + text + author
    else:
        return None
    if lang is not None:
        if type(lang) is not str:
            return None
        strings += lang
    if "\x00" in strings:
        return None
    try:
        strings.encode("utf-8")
    except UnicodeEncodeError:
        return None
    if get("lat") is not None or get("lon") is not None:
        return None
    counts = []
    for key in _PLAIN_COUNTS:
        value = get(key)
        if value is not None and (type(value) is not int or not 0 <= value <= MAX_COUNT):
            return None
        counts.append(value)
    verified = get("author_verified")
    if verified is None:
        verified = False
    elif type(verified) is not bool:
        return None
    created_at = _created_at(d)
    url = _url(d) if get("url") is not None else None
    likes, reposts, replies, followers = counts
    return Post(
        source=source,
        network=network,
        native_id=native_id,
        text=text,
        author=author,
        created_at=created_at,
        url=url,
        lang=lang,
        author_followers=followers,
        author_verified=verified,
        lat=None,
        lon=None,
        received_at=received_at,
        likes=likes or 0,
        reposts=reposts or 0,
        replies=replies or 0,
    )


def _parse_checked(d: dict, source: str, network: str, received_at: float) -> Post:
    """
    Every field checked in turn, the first at fault named: the reference
    for L{_parse_plain}.
    """
    native_id = _native_id(d)
    text = _string(d, "text", required=True, nonempty=False)
    author = _string(d, "author", required=True, nonempty=True)
    created_at = _created_at(d)
    lang = _string(d, "lang", required=False, nonempty=False)
    url = _url(d)
    counts = {key: _count(d, key) or 0 for key in _COUNTERS}
    followers = _count(d, "author_followers")
    verified = d.get("author_verified")
    if verified is None:
        verified = False
    elif not isinstance(verified, bool):
        raise MalformedPayload("author_verified: must be true or false")
    lat = _coordinate(d, "lat", 90.0)
    lon = _coordinate(d, "lon", 180.0)
    if (lat is None) != (lon is None):
        given, missing = ("lat", "lon") if lon is None else ("lon", "lat")
        raise MalformedPayload(f"{given}: given without {missing}")
    return Post(
        source=source,
        network=network,
        native_id=native_id,
        text=text,
        author=author,
        created_at=created_at,
        url=url,
        lang=lang,
        author_followers=followers,
        author_verified=verified,
        lat=lat,
        lon=lon,
        received_at=received_at,
        **counts,
    )


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def _iso_millis(ts: float) -> str:
    """
    ISO 8601 rounded to the nearest millisecond in integer arithmetic, so
    that the float read back is the float of that millisecond.
    """
    dt = _EPOCH + timedelta(milliseconds=round(ts * 1000))
    return dt.isoformat(timespec="milliseconds").replace("+00:00", "Z")


# Line breaks that str.splitlines() honours and JSON leaves unescaped; a
# reader splitting on them would cut a post in two.
_LINE_BREAKS = {"\x85": "\\u0085", "\u2028": "\\u2028", "\u2029": "\\u2029"}


def format_post(post: Post) -> bytes:
    """
    Write a post as one replay line, ending in C{\\n}: the inverse of
    L{parse_post}, for the bench and tests.  C{created_at} is written as ISO
    8601 to the millisecond, the precision the API shows; C{None} fields are
    left out.  Source, network, analysis and other hub state are not part of
    the format.
    """
    d: dict[str, Any] = {
        "id": post.native_id,
        "text": post.text,
        "author": post.author,
        "created_at": _iso_millis(post.created_at),
        "lang": post.lang,
        "url": post.url,
        "likes": post.likes,
        "reposts": post.reposts,
        "replies": post.replies,
        "author_followers": post.author_followers,
        "author_verified": post.author_verified,
        "lat": post.lat,
        "lon": post.lon,
    }
    text = json.dumps(
        {k: v for k, v in d.items() if v is not None},
        ensure_ascii=False,
        allow_nan=False,
        separators=(",", ":"),
    )
    for char, escape in _LINE_BREAKS.items():
        text = text.replace(char, escape)
    return text.encode("utf-8") + b"\n"
