"""
The source kinds: for each C{kind} of a C{[[sources]]} table, its own keys
(with their types, defaults and checks), an optional check of the whole
table, and the dotted path of the collector class that serves it.

This is the one place a source kind is declared.  The configuration reads
it without importing any collector (L{monitor.config} never imports one);
L{monitor.collect.make_source} imports a kind's class by its path only when
a source of that kind is built.  A new kind is a new entry here and a
collector class with the same keyword arguments.
"""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass
from typing import Any, Callable, Optional

from monitor.fields import STRINGS, Field, at_least, http_url, non_empty, one_of, url_check

#: The keys every source has, whatever its kind.
SOURCE_COMMON = {
    "kind": Field(str),
    "name": Field(str, check=non_empty),
}


@dataclass(frozen=True)
class SourceKind:
    """
    One kind of source: its keys besides L{SOURCE_COMMON}, an optional
    check of the whole checked table giving (key, problem) pairs (keys that
    depend on each other), and the collector class as C{"module:Class"}.
    """

    fields: dict[str, Field]
    factory: str
    check: Optional[Callable[[dict], list[tuple[str, str]]]] = None
    #: A key whose value picks another class than C{factory}, and those
    #: classes by value: C{("mode", {"stream": "module:Class"})}.
    variants: Optional[tuple[str, dict[str, str]]] = None

    def load(self, table: Optional[dict] = None) -> type:
        """
        The collector class for C{table} (a checked C{[[sources]]} entry;
        without it, the kind's first class), imported now.
        """
        path = self.factory
        if self.variants is not None and table is not None:
            key, classes = self.variants
            path = classes.get(table.get(key, self.fields[key].default), path)
        return load_class(path)

    def defaults(self) -> dict[str, Any]:
        """
        The default of each key that has one, for the collector's keyword
        arguments, so that a collector built by hand behaves as one built
        from a file, and no default is written twice.  A list default is
        given as a tuple: no two calls share a mutable default.
        """
        return {
            k: tuple(f.default) if isinstance(f.default, list) else f.default
            for k, f in self.fields.items()
            if not f.required
        }


def load_class(path: str) -> type:
    """
    The class named C{"module:Class"}, imported now.
    """
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


def _between(low: int, high: int) -> Callable[[Any], Optional[str]]:
    def check(value: Any) -> Optional[str]:
        return None if low <= value <= high else f"must be from {low} to {high}"

    return check


#: A Mastodon timeline as C{timelines} names it; the collector reads it too.
MASTODON_TIMELINE = re.compile(r"^(?:#(?P<tag>[^\s#:/?&%]+)(?P<tag_scope>:local)?|public(?P<scope>:local|:remote)?)$")


def _check_timelines(value: Any) -> Optional[str]:
    if not value:
        return 'must name at least one timeline ("#tag", "#tag:local", "public", "public:local", "public:remote")'
    for t in value:
        if not MASTODON_TIMELINE.match(t):
            return f'{t!r} is not a timeline: use "#tag", "#tag:local", "public", "public:local" or "public:remote"'
    return None


def _check_rss(table: dict) -> list[tuple[str, str]]:
    if not table.get("feeds") and not table.get("url"):
        return [("feeds", "give the feeds to poll: feeds = [URLs] or url = URL")]
    return []


#: Bluesky's defaults, which the collector uses too.
BLUESKY_URL = "wss://jetstream2.us-east.bsky.network/subscribe"
BLUESKY_APPVIEW = "https://public.api.bsky.app"

#: Every source kind, by the name C{kind} gives it.
SOURCE_KINDS: dict[str, SourceKind] = {
    "bluesky": SourceKind(
        {
            "url": Field(str, BLUESKY_URL, url_check("wss", "ws"), doc="The Jetstream subscribe URL."),
            "appview_url": Field(
                str, BLUESKY_APPVIEW, url_check("https", "http", empty=True), doc="Profiles; empty: none."
            ),
            "stall_timeout": Field(float, 30.0, at_least(1), doc="Seconds without a byte before reconnecting."),
            "rewind": Field(float, 5.0, at_least(0), doc="Seconds replayed before the last event on resume."),
            "profile_wait": Field(
                float, 0.0, at_least(0), doc="Most seconds a post waits for its profile; 0: none (it follows)."
            ),
            "profile_ttl": Field(float, 3600.0, at_least(0), doc="Seconds a profile is cached."),
            "max_message": Field(int, 1 << 20, at_least(4096), doc="Largest frame accepted, in bytes."),
        },
        "monitor.collect.bluesky.jetstream:BlueskySource",
    ),
    "demo": SourceKind(
        {
            "rate": Field(float, 2.0, at_least(0.01), doc="Posts per second outside bursts."),
            "burst_every": Field(float, 900.0, at_least(1), doc="Mean seconds between bursts."),
            "seed": Field(int, None, doc="Fix the random sequence."),
            "brands": Field(STRINGS, None, doc="Names to talk about; defaults to the topic names."),
        },
        "monitor.collect.demo:DemoSource",
    ),
    "mastodon": SourceKind(
        {
            "instance": Field(str, check=url_check("https", "http"), doc="The instance's base URL."),
            "timelines": Field(STRINGS, check=_check_timelines, doc="Timelines to follow."),
            "token": Field(str, "", doc="A user access token (read:statuses): streaming."),
            "streaming": Field(bool, True, doc="With a token, stream instead of polling."),
            "streaming_url": Field(str, "", url_check("https", "http", empty=True), doc="Default: asked."),
            "poll_interval": Field(float, 30.0, at_least(1), doc="Seconds between polls once caught up."),
            "limit": Field(int, 40, _between(1, 40), doc="Statuses per page (Mastodon allows 40)."),
            "stall_timeout": Field(float, 45.0, at_least(1), doc="Seconds of stream silence before reconnecting."),
        },
        "monitor.collect.mastodon:MastodonSource",
    ),
    "replay": SourceKind(
        {
            "path": Field(str, check=non_empty, doc="The JSON Lines file."),
            "speed": Field(float, 0.0, at_least(0), doc="0: flat out; 1: real time; N: N times faster."),
            "network": Field(str, None, doc="The uid namespace; defaults to the source name."),
            "follow": Field(bool, False, doc="At the end, wait for lines appended later."),
        },
        "monitor.collect.replay:ReplaySource",
    ),
    "rss": SourceKind(
        {
            "feeds": Field(STRINGS, [], http_url, "The feed URLs."),
            "url": Field(str, None, http_url, "One feed URL (instead of, or as well as, feeds)."),
            "poll_interval": Field(float, 300.0, at_least(1), "Seconds between two requests for one feed."),
            "request_timeout": Field(float, 30.0, at_least(1), "Seconds a response may take."),
            "max_bytes": Field(int, 10 << 20, at_least(1024), "The largest feed document read."),
        },
        "monitor.collect.rss:RSSSource",
        _check_rss,
    ),
    "x": SourceKind(
        {
            "bearer_token": Field(str, check=non_empty, doc='The app-only token; write "${X_BEARER_TOKEN}".'),
            "base_url": Field(str, "https://api.x.com", http_url, "Another host: a proxy or a test server."),
            "mode": Field(str, "search", one_of("search", "stream"), "Poll recent search or read the filtered stream."),
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
        "monitor.collect.x.search:XSearch",
        variants=("mode", {"stream": "monitor.collect.x.stream:XStream"}),
    ),
}
