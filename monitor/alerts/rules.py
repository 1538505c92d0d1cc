"""
Alert rules: what each type looks at, in a form the detector can apply
to a post in a few microseconds.

The keys of each type, with their defaults, are L{RULE_COMMON} and
L{RULE_FIELDS} (the configuration and the API check rules against them).
A rule is built from a validated spec (L{monitor.alerts.config}); the spec
is kept as given (durations as written, C{"5m"}) so that the API and the
store show the user's words, and the rule holds the parsed values.

Rule types, and the one number ("signal") each reports and escalates on:

  - C{keyword}: a post containing one of C{phrases}, or carrying one of
    C{labels} (such as C{crisis}), or satisfying C{query} alone; signal:
    matching posts in the incident.
  - C{influencer}: a post of the given sentiment (negative by default) by
    an author with C{min_followers} or more, or verified; signal: posts.
  - C{engagement}: likes, reposts or replies at or above a threshold, or
    engagement per hour (C{velocity}) at or above one; signal: posts.
  - C{purchase_intent}: a post labelled C{purchase_intent}; signal: posts.
  - C{volume_spike}: posts in the window against the topic's own baseline;
    signal: posts in the window.
  - C{sentiment_shift}: the negative share in the window against its
    baseline; signal: the negative share.
  - C{source_health}: a collector failing or silent for too long; signal:
    minutes.
  - C{story}: one story (L{monitor.stories}) growing fast: at least C{rate}
    posts per minute over the C{window}, once it has C{min_size} posts;
    signal: posts per minute.  One incident per story.

A post rule (the first four) may have a C{query} in the topic query
language (L{monitor.query}): a post is then a hit only if it satisfies the
query too, so C{influencer} with C{query = "acme (refund* OR outage)"}
fires on what matters only.
"""

from __future__ import annotations

import re
from typing import Any, Optional

from monitor.analysis.classify import compile_words, normalize
from monitor.analysis.text import plain_text
from monitor.fields import (
    DURATION,
    STRINGS,
    Field,
    at_least,
    check_name,
    duration,
    duration_or_zero,
    fraction,
    one_of,
    parse_duration,
    positive,
)
from monitor.model import LABELS, SENTIMENTS
from monitor.query import QueryError, matches as query_matches, parse as parse_query

__all__ = [
    "POST_TYPES",
    "RULE_COMMON",
    "RULE_FIELDS",
    "RULE_TYPES",
    "SEVERITIES",
    "STORY_TYPES",
    "WINDOW_TYPES",
    "Rule",
    "engagement",
    "severity_rank",
]

SEVERITIES = ("info", "warning", "critical")

POST_TYPES = ("keyword", "influencer", "engagement", "purchase_intent")
WINDOW_TYPES = ("volume_spike", "sentiment_shift")
HEALTH_TYPES = ("source_health",)
STORY_TYPES = ("story",)
RULE_TYPES = POST_TYPES + WINDOW_TYPES + HEALTH_TYPES + STORY_TYPES

#: The width of a window bucket: windows and baselines are whole minutes.
BUCKET = 60

# Links say little about what a post means, and their slugs are full of
# words ("/outage-report"): blank them like the classifier does.
_URL = re.compile(r"(?:https?://|www\.)\S+")


def severity_rank(severity: str) -> int:
    return SEVERITIES.index(severity)


def engagement(post) -> int:
    """
    Likes, reposts and replies of a post, together.
    """
    return int(post.likes or 0) + int(post.reposts or 0) + int(post.replies or 0)


class _Phrases:
    """
    Phrases matched like the analysis word lists: whole words, case and
    accent insensitive, a space for any whitespace, C{*} for one word, and
    C{#x} for any hashtag ending in x.
    """

    def __init__(self, phrases) -> None:
        self.pattern = compile_words(phrases)

    def search(self, text: str) -> bool:
        if self.pattern is None:
            return False
        text = normalize(plain_text(text))
        if "http" in text or "www." in text:
            text = _URL.sub(" ", text)
        return self.pattern.search(text) is not None


def check_query(query: str) -> Optional[str]:
    """
    Why a rule's query cannot be used (its position and what was expected
    there), or C{None}.
    """
    try:
        parse_query(query)
    except QueryError as e:
        return f"does not parse: {e}"
    return None


def check_phrases(phrases) -> Optional[str]:
    """
    A problem with a phrase list, or C{None}.
    """
    try:
        _Phrases(phrases)
    except (ValueError, TypeError, re.error) as e:
        return f"a phrase cannot be used: {e}"
    return None


def _labels(values: list) -> Optional[str]:
    unknown = [v for v in values if v not in LABELS]
    if unknown:
        return f"unknown label {unknown[0]!r} (labels: {', '.join(LABELS)})"
    return None


# --- the keys of each rule type: their one place (the configuration and the
# API check rules against them; L{Rule} takes their defaults) ---------------

RULE_COMMON = {
    "name": Field(str, check=check_name, doc="Unique; names the rule in the API and in incidents."),
    "type": Field(str, check=one_of(*RULE_TYPES)),
    "topics": Field(STRINGS, [], doc="Topics it watches; empty for every topic."),
    "enabled": Field(bool, True),
    "severity": Field(str, "warning", one_of(*SEVERITIES)),
    "escalate_at": Field(float, None, positive, doc="Signal level at which the incident becomes critical."),
    "channels": Field(STRINGS, [], doc="Channels to notify; empty for every channel."),
}

_SPIKE_AND_SHIFT = {
    "baseline": Field(DURATION, "24h", duration),
    "min_count": Field(int, 20, at_least(1)),
    "warmup": Field(DURATION, "1h", duration_or_zero),
    "cooldown": Field(DURATION, "15m", duration),
}

#: The C{query} key of the post rules.
_QUERY = Field(str, None, check_query, doc="A topic query a post must satisfy too (see Topic queries).")

#: The keys of each rule type besides L{RULE_COMMON}.
RULE_FIELDS: dict[str, dict[str, Field]] = {
    "keyword": {
        "phrases": Field(STRINGS, []),
        "labels": Field(STRINGS, [], _labels),
        "sentiment": Field(str, None, one_of(*SENTIMENTS)),
        "query": _QUERY,
        "cooldown": Field(DURATION, "30m", duration),
    },
    "influencer": {
        "min_followers": Field(int, 10000, at_least(0)),
        "verified": Field(bool, True),
        "sentiment": Field(str, "negative", one_of(*SENTIMENTS, "any")),
        "query": _QUERY,
        "cooldown": Field(DURATION, "30m", duration),
    },
    "engagement": {
        "likes": Field(int, None, at_least(1)),
        "reposts": Field(int, None, at_least(1)),
        "replies": Field(int, None, at_least(1)),
        "velocity": Field(float, None, positive),
        "query": _QUERY,
        "cooldown": Field(DURATION, "30m", duration),
    },
    "purchase_intent": {
        "min_followers": Field(int, 0, at_least(0)),
        "query": _QUERY,
        "cooldown": Field(DURATION, "30m", duration),
    },
    "volume_spike": {
        "window": Field(DURATION, "5m", duration),
        "factor": Field(float, 3.0, at_least(1)),
        "drops": Field(bool, False),
        **_SPIKE_AND_SHIFT,
    },
    "sentiment_shift": {
        "window": Field(DURATION, "15m", duration),
        "threshold": Field(float, 0.4, fraction),
        "margin": Field(float, 0.15, fraction),
        **_SPIKE_AND_SHIFT,
    },
    "source_health": {
        "sources": Field(STRINGS, [], doc="Sources it watches; empty for every source."),
        "after": Field(DURATION, "10m", duration),
        "silent": Field(bool, True),
        "cooldown": Field(DURATION, "5m", duration),
    },
    "story": {
        "window": Field(DURATION, "10m", duration, doc="The span the story's growth is measured over."),
        "rate": Field(float, 2.0, positive, doc="Posts per minute over the window at which it fires."),
        "min_size": Field(int, 20, at_least(1), doc="Posts the story must have (all told) before it can fire."),
        "cooldown": Field(DURATION, "30m", duration),
    },
}


def rule_defaults(rule_type: str) -> dict[str, Any]:
    """
    Each key of a rule of C{rule_type} that has a default, at it (for a
    type of the hub's own, such as C{channel_health}, the common keys').
    """
    fields = dict(RULE_COMMON, **RULE_FIELDS.get(rule_type, {}))
    return {k: f.default for k, f in fields.items() if not f.required}


class Rule:
    """
    One alert rule.  Immutable once built: changing a rule builds a new
    one, so a backtest in a thread can share rules with the live engine.

    @ivar spec: the validated spec, as the user wrote it.
    @ivar origin: C{file} (from the configuration) or C{web} (edited at
        run time; the file no longer overrides it).
    @ivar topics: the topics it watches; empty for every topic.
    @ivar cooldown: seconds of quiet after which an incident resolves.
    """

    def __init__(self, spec: dict[str, Any], origin: str = "file") -> None:
        self.spec = dict(spec)
        self.origin = origin
        # What the spec leaves out is at its default (L{RULE_FIELDS}), so a
        # rule built by hand is the rule a file leaving the key out gives.
        values = {**rule_defaults(spec["type"]), **spec}
        get = values.get
        self.name: str = values["name"]
        self.type: str = values["type"]
        self.topics = frozenset(values["topics"] or ())
        self.enabled: bool = bool(values["enabled"])
        self.severity: str = values["severity"]
        self.channels = tuple(values["channels"] or ())
        self.escalate_at: Optional[float] = values["escalate_at"]
        self.cooldown = parse_duration(values["cooldown"])
        # What a type has no key for is off (None, empty, 0, False).
        # keyword, influencer, engagement, purchase_intent
        self.phrases = _Phrases(get("phrases")) if get("phrases") else None
        self.labels = frozenset(get("labels") or ())
        self.sentiment: Optional[str] = get("sentiment")
        self.min_followers: Optional[int] = get("min_followers")
        self.verified: bool = bool(get("verified"))
        self.likes, self.reposts, self.replies = get("likes"), get("reposts"), get("replies")
        self.velocity: Optional[float] = get("velocity")
        self.query = parse_query(get("query")) if get("query") else None
        # volume_spike, sentiment_shift
        self.window = int(parse_duration(get("window"))) if get("window") else 0
        self.baseline = int(parse_duration(get("baseline"))) if get("baseline") else 0
        self.warmup = int(parse_duration(get("warmup"))) if get("warmup") else 0
        self.factor: float = get("factor") or 0.0
        self.min_count: int = get("min_count") or 0
        self.drops: bool = bool(get("drops"))
        self.threshold: float = get("threshold") or 0.0
        self.margin: float = get("margin") or 0.0
        # source_health
        self.sources = frozenset(get("sources") or ())
        self.after = parse_duration(get("after")) if get("after") else 0.0
        self.silent: bool = bool(get("silent"))
        # story
        self.rate: float = get("rate") or 0.0
        self.min_size: int = get("min_size") or 0

    def __repr__(self) -> str:
        return f"<Rule {self.name} ({self.type})>"

    def to_dict(self) -> dict[str, Any]:
        return {**self.spec, "origin": self.origin}

    @property
    def is_post_rule(self) -> bool:
        return self.type in POST_TYPES

    @property
    def is_window_rule(self) -> bool:
        return self.type in WINDOW_TYPES

    @property
    def is_story_rule(self) -> bool:
        return self.type in STORY_TYPES

    @property
    def needs_followers(self) -> bool:
        """
        Whether the author's profile (followers, verified) decides a hit:
        such a rule looks again at a post whose profile came late.
        """
        return self.type == "influencer" or (self.type == "purchase_intent" and bool(self.min_followers))

    def applies_to(self, topic: str) -> bool:
        return not self.topics or topic in self.topics

    def matches(self, post, velocity: Optional[float] = None) -> bool:
        """
        Whether one post is a hit of this (post) rule.  C{velocity} is its
        engagement per hour, when known.
        """
        if not self._matches(post, velocity):
            return False
        return self.query is None or query_matches(self.query, post)

    def _matches(self, post, velocity: Optional[float]) -> bool:
        analysis = post.analysis
        sentiment = analysis.sentiment if analysis is not None else None
        labels = analysis.labels if analysis is not None else ()
        if self.type == "keyword":
            if self.sentiment is not None and sentiment != self.sentiment:
                return False
            if self.labels and not self.labels.isdisjoint(labels):
                return True
            if self.phrases is None and not self.labels:
                return self.query is not None  # a rule of only a query
            return self.phrases is not None and self.phrases.search(post.text)
        if self.type == "influencer":
            if self.sentiment not in (None, "any") and sentiment != self.sentiment:
                return False
            followers = post.author_followers or 0
            return (self.min_followers is not None and followers >= self.min_followers) or (
                self.verified and bool(post.author_verified)
            )
        if self.type == "engagement":
            return (
                (self.likes is not None and (post.likes or 0) >= self.likes)
                or (self.reposts is not None and (post.reposts or 0) >= self.reposts)
                or (self.replies is not None and (post.replies or 0) >= self.replies)
                or (self.velocity is not None and velocity is not None and velocity >= self.velocity)
            )
        if self.type == "purchase_intent":
            return "purchase_intent" in labels and (post.author_followers or 0) >= (self.min_followers or 0)
        return False
