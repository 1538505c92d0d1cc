"""
The post: the one record that flows from a collector to every sink.

A L{Post} is created by a collector, gets its topics from the matcher and its
L{Analysis} from an analyzer, and is then stored, pushed and counted.  It
serialises to a plain dict (C{to_dict}/C{from_dict}) so that it can cross a
process boundary: a Redis queue, an AMP link, the JSON API.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import datetime, timezone
from typing import Any, Optional

POSITIVE = "positive"
NEGATIVE = "negative"
NEUTRAL = "neutral"
SENTIMENTS = (POSITIVE, NEUTRAL, NEGATIVE)

#: The classifier labels the analysis stage can give a post.
LABELS = ("complaint", "purchase_intent", "question", "crisis")


@dataclass(slots=True)
class Analysis:
    """
    What analysis says about one post: VADER's four scores, the sentiment
    label derived from the compound score, and the rule-based labels.
    """

    compound: float
    pos: float
    neu: float
    neg: float
    sentiment: Optional[str]
    labels: tuple[str, ...] = ()
    #: Whose answer C{sentiment} is: C{"vader"}, C{"model:VERSION"}, or
    #: C{"unscored"} (a language no active model knows; C{sentiment} None).
    by: str = "vader"
    #: The post's story features (L{monitor.stories.features}) when the
    #: analysis stage worked them out, so the reactor need not; never
    #: stored or sent (not in L{to_dict}), not part of equality.
    features: Optional[tuple] = field(default=None, compare=False, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "compound": self.compound,
            "pos": self.pos,
            "neu": self.neu,
            "neg": self.neg,
            "label": self.sentiment,
            "by": self.by,
            "labels": list(self.labels),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Analysis":
        return cls(
            compound=float(d["compound"]),
            pos=float(d["pos"]),
            neu=float(d["neu"]),
            neg=float(d["neg"]),
            sentiment=None if d["label"] is None else str(d["label"]),
            labels=tuple(d.get("labels", ())),
            by=str(d.get("by") or "vader"),
        )


@dataclass(slots=True)
class Rejected:
    """
    A payload a collector could not read, carried through the queue like a
    post: the pipeline dead-letters it in the same transaction, and in the
    same order, as the collector's position moving past it.  So it is
    judged once: a restart neither loses the posts before it nor reads it
    again.
    """

    source: str
    raw: bytes
    error: str
    context: str
    cursor: Optional[str] = None
    received_at: float = 0.0


#: A key a collector sets in L{Post.extra} of a post it sends on before its
#: author's profile is known; an L{Enriched} follows.  The pipeline takes it
#: out before the post is stored.
PROFILE_PENDING = "profile_pending"


@dataclass(slots=True)
class Enriched:
    """
    An author's profile that arrived after some of their posts were sent
    on without it, carried through the queue like a post so that the
    store updates those posts in order with every other write (after the
    posts themselves, never lost with a restart of the queue).

    @ivar uids: the posts (L{Post.uid}) that went out without it.
    @ivar author: the handle to show, or C{None} to keep the stored one.
    """

    source: str
    uids: list[str]
    author: Optional[str]
    author_followers: Optional[int]
    author_verified: bool = False
    cursor: Optional[str] = None
    received_at: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(slots=True)
class Post:
    """
    One post from one source.

    @ivar source: the configured name of the source that collected it.
    @ivar network: the namespace of C{native_id}; two sources that can see
        the same post (two Mastodon instances) share a network, so the post
        gets one C{uid}.
    @ivar native_id: the id the network gives the post, as an opaque string.
    @ivar created_at: when the post was written, in unix seconds (UTC).
    @ivar received_at: when the hub received it, in unix seconds; used for
        the ingest-to-stored latency.
    @ivar cursor: the collector's resume position after this post, committed
        by the pipeline only once this post (and all before it) is stored.
    @ivar story: the id of the story (L{monitor.stories}) the pipeline put
        this matched post in before storing it; C{None} when stories are
        off, the post had no words to go by, or clustering failed.
    """

    source: str
    network: str
    native_id: str
    text: str
    author: str
    created_at: float
    url: Optional[str] = None
    lang: Optional[str] = None
    likes: int = 0
    reposts: int = 0
    replies: int = 0
    author_followers: Optional[int] = None
    author_verified: bool = False
    lat: Optional[float] = None
    lon: Optional[float] = None
    received_at: float = 0.0
    cursor: Optional[str] = None
    topics: tuple[str, ...] = ()
    analysis: Optional[Analysis] = None
    extra: dict[str, Any] = field(default_factory=dict)
    story: Optional[str] = None

    @property
    def uid(self) -> str:
        """
        The key the store is idempotent on: network plus native id.
        """
        return f"{self.network}:{self.native_id}"

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["topics"] = list(self.topics)
        d["analysis"] = self.analysis.to_dict() if self.analysis else None
        return d

    def to_api(self) -> dict[str, Any]:
        """This post as the API, the exports and the live channel show it (L{api_post})."""
        a = self.analysis
        return api_post(
            self.uid, self.source, self.network, self.native_id, self.author, self.text, self.created_at, self.url,
            self.lang, sorted(set(self.topics)), list(a.labels) if a else [],
            a.compound if a else None, a.pos if a else None, a.neu if a else None, a.neg if a else None,
            a.sentiment if a else None, a.by if a else None, self.likes, self.reposts, self.replies,
            self.author_followers, self.author_verified, self.lat, self.lon, self.story,
        )  # fmt: skip

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Post":
        kw = dict(d)
        kw["topics"] = tuple(kw.get("topics") or ())
        a = kw.get("analysis")
        kw["analysis"] = Analysis.from_dict(a) if a else None
        return cls(**kw)


def iso8601(ts: float) -> str:
    """
    Format unix seconds as the ISO 8601 UTC form the API uses.
    """
    return datetime.fromtimestamp(ts, tz=timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def api_post(uid, source, network, native_id, author, text, created_at, url, lang, topics, labels, compound, pos,
             neu, neg, sentiment, by, likes, reposts, replies, followers, verified, lat, lon, story) -> dict[str, Any]:  # fmt: skip
    """
    The one shape of a post in the API (README.rst, "Post format"), whether
    it comes from a L{Post} in memory (L{Post.to_api}) or a stored row.
    C{topics} sorted, C{labels} a list; C{by} who set the sentiment
    (C{vader}, C{model:...}), C{None} when unscored.
    """
    return {
        "id": uid,
        "source": source,
        "network": network,
        "native_id": native_id,
        "author": author,
        "text": text,
        "created_at": iso8601(created_at),
        "url": url,
        "lang": lang,
        "topics": topics,
        "labels": labels,
        "sentiment": {"compound": compound, "pos": pos, "neu": neu, "neg": neg, "label": sentiment, "by": by},
        "likes": likes,
        "reposts": reposts,
        "replies": replies,
        "author_followers": followers,
        "author_verified": bool(verified),
        "lat": lat,
        "lon": lon,
        "story": story,
    }


def parse_time(value: str) -> float:
    """
    Parse an ISO 8601 timestamp into unix seconds.  A value without a zone
    is taken as UTC.  Raises C{ValueError} on anything else.
    """
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"not a timestamp: {value!r}")
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    dt = datetime.fromisoformat(text)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.timestamp()


@dataclass(slots=True)
class Topic:
    """
    A tracked topic: what to listen for and what to ignore.

    @ivar terms: words, C{"quoted phrases"}, C{#hashtags} and C{@handles}.
    @ivar variants: known misspellings, matched like terms.
    @ivar fuzzy: also match words one edit away from terms of 5+ letters.
    @ivar exclude: phrases that veto a match anywhere in the post.
    @ivar languages: if not empty, only posts in these languages match.
    @ivar sources: if not empty, only posts from these sources match.
    @ivar group: topics in one group are compared for share of voice.
    @ivar query: a Boolean query (L{monitor.query}) a post must satisfy too;
        empty for none.
    """

    name: str
    terms: tuple[str, ...] = ()
    variants: tuple[str, ...] = ()
    fuzzy: bool = False
    exclude: tuple[str, ...] = ()
    languages: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()
    group: Optional[str] = None
    query: str = ""

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        for k in ("terms", "variants", "exclude", "languages", "sources"):
            d[k] = list(d[k])
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Topic":
        kw = dict(d)
        for k in ("terms", "variants", "exclude", "languages", "sources"):
            kw[k] = tuple(kw.get(k) or ())
        return cls(**kw)
