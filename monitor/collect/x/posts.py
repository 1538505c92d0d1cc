"""
X API v2 post objects (of search pages and stream lines) as L{Post}s.  The
API is mid-rename from Tweets to Posts; both spellings of the renamed fields
are read (C{retweet_count}/C{repost_count}, C{includes.tweets}/C{includes.posts}, ...).
"""

from __future__ import annotations

import html
from collections import OrderedDict
from typing import Any, Optional
from urllib.parse import quote

from monitor.model import Post, parse_time

#: Snowflake ids carry their time: milliseconds since this epoch, << 22.
_SNOWFLAKE_EPOCH_MS = 1288834974657
_VERIFIED_TYPES = ("blue", "business", "government")


class Malformed(ValueError):
    """
    A post object that cannot become a L{Post}; the message says why.
    """


def newer(a: Optional[str], b: Optional[str]) -> Optional[str]:
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
    if (
        isinstance(bbox, list)
        and len(bbox) == 4
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in bbox)
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
        if (
            isinstance(coords, list)
            and len(coords) == 2
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in coords)
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


class RecentIds:
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


__all__ = ["Malformed", "RecentIds", "includes_index", "newer", "parse_tweet"]
