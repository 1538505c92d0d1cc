"""
Rollups: what the statistics need of the stored posts, summed per minute,
hour and day, so that C{IStore.stats}, the dashboard and trending terms read
a few thousand summed rows instead of scanning post texts.

This module is the provider-neutral part: which rows a post adds to
(L{Delta}), how a time range splits into whole days, hours and minutes plus
the partial minutes at its edges (L{cover}), and how the posts of those
edges are counted (L{Tally}).  Each store provider keeps the SQL: tables,
upserts and the queries that sum the rows (for SQLite,
L{monitor.store.sqlite_rollups}).

Every rollup row is keyed by a scope (a topic name, or L{EVERY} for all
posts), a span (60, 3600 or 86400 seconds) and the start of its bucket
(floored to the span, also before the epoch).  A post adds to one bucket of
each span for each of its scopes.  Larger buckets are sums of smaller ones
kept at the same time, not recomputed.

Answers are exact: whole minutes (or hours, days) of a range come from the
rollups; a range edge inside a minute is counted from the posts of that
partial minute, which are at most two minutes of posts per range.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import Iterable, Optional

from monitor.analysis.trending import candidates
from monitor.store.text import hashtags, terms

__all__ = ["EVERY", "SPANS", "Delta", "Facts", "Tally", "cover", "floor", "volume_spans"]

#: Bucket widths kept, in seconds, smallest first: minute, hour, day.
SPANS = (60, 3600, 86400)
#: The scope of every post (topics have non-empty names).
EVERY = ""


def floor(t: float, span: int) -> int:
    """The start of the bucket of width C{span} that holds time C{t}."""
    return math.floor(t / span) * span


@dataclass(slots=True)
class Facts:
    """
    What the rollups need of one stored post.
    """

    created_at: float
    topics: tuple
    source: str
    sentiment: Optional[str]
    compound: Optional[float]
    likes: int
    reposts: int
    replies: int
    labels: tuple
    author: str
    followers: Optional[int]
    text: str
    lang: Optional[str]

    @property
    def scopes(self) -> tuple:
        return (EVERY, *self.topics)


def post_words(text: str, lang: Optional[str]):
    """
    (hashtags, terms, trending candidates) of a text: what the term and tag
    rollups count, once per post.
    """
    return hashtags(text), terms(text), candidates(text, lang)


class Delta:
    """
    Changes to the minute rows of the rollups, summed by key before they
    reach the database: a batch of posts in the same minute is one row per
    key.  The provider adds each minute row's change to the hour and day
    rows that hold it too.

    @ivar volume: (scope, span, start, source, sentiment or "") to
        [posts, scored, compound sum, likes, reposts, replies].
    @ivar labels: (scope, span, start, label) to posts.
    @ivar authors: (scope, span, start, author) to
        [posts, scored, compound sum, most followers or None].
    @ivar tags: (scope, span, start, tag) to posts.
    @ivar terms: (scope, span, start, term) to [posts that use it among
        their L{monitor.store.text.terms} (the stats' C{top_terms}), posts
        that use it among their L{monitor.analysis.trending.candidates}
        (trending terms: words and two-word phrases)]; one row serves both,
        since most words are both.
    @ivar shown: a trending term's folded form to the form shown.
    @ivar shrunk: author minute rows a post left that had a follower count:
        their maximum (and their hour's and day's) may have fallen and is
        recomputed by the provider.
    """

    def __init__(self) -> None:
        self.volume: dict[tuple, list] = {}
        self.labels: Counter = Counter()
        self.authors: dict[tuple, list] = {}
        self.tags: Counter = Counter()
        self.terms: dict[tuple, list] = {}
        self.shown: dict[str, str] = {}
        self.shrunk: set[tuple] = set()
        #: Whether some row lost posts (and may now be empty).
        self.removed = False

    def __bool__(self) -> bool:
        return bool(self.volume)

    def add(self, facts: Facts, sign: int = 1, words: bool = True) -> None:
        """
        Count C{facts} in (C{sign} 1) or out of (C{sign} -1) every rollup;
        with C{words} false, leave the text-derived rows (tags and terms)
        alone, for changes that keep the text.
        """
        if sign < 0:
            self.removed = True
        scored = 0 if facts.compound is None else sign
        compound = sign * (facts.compound or 0.0)
        likes, reposts, replies = sign * facts.likes, sign * facts.reposts, sign * facts.replies
        sentiment = facts.sentiment or ""
        followers = facts.followers
        if words:
            tags, words_, cands = post_words(facts.text, facts.lang)
            for folded, form in cands.items():
                self.shown.setdefault(folded, form)
        volume, authors, labels, tags_, terms_ = self.volume, self.authors, self.labels, self.tags, self.terms
        # Minute rows only: the provider sums them into hours and days (a
        # bucket of each span in SPANS holding the minute), once per row of
        # the batch rather than once per post.
        span = SPANS[0]
        start = floor(facts.created_at, span)
        for scope in facts.scopes:
            key = (scope, span, start, facts.source, sentiment)
            row = volume.get(key)
            if row is None:
                row = volume[key] = [0, 0, 0.0, 0, 0, 0]
            row[0] += sign
            row[1] += scored
            row[2] += compound
            row[3] += likes
            row[4] += reposts
            row[5] += replies
            for label in facts.labels:
                labels[(scope, span, start, label)] += sign
            key = (scope, span, start, facts.author)
            row = authors.get(key)
            if row is None:
                row = authors[key] = [0, 0, 0.0, None]
            row[0] += sign
            row[1] += scored
            row[2] += compound
            if sign > 0 and followers is not None and (row[3] is None or followers > row[3]):
                row[3] = followers
            elif sign < 0 and followers is not None:
                self.shrunk.add(key)
            if words:
                for tag in tags:
                    tags_[(scope, span, start, tag)] += sign
                for term in words_:
                    row = terms_.get((scope, span, start, term))
                    if row is None:
                        row = terms_[(scope, span, start, term)] = [0, 0]
                    row[0] += sign
                for term in cands:
                    row = terms_.get((scope, span, start, term))
                    if row is None:
                        row = terms_[(scope, span, start, term)] = [0, 0]
                    row[1] += sign


def cover(since: Optional[float], until: Optional[float], spans: Iterable[int] = SPANS):
    """
    Split C{[since, until)} (either end open when C{None}) into rollup
    buckets and partial minutes.

    @return: C{(pieces, edges)}: pieces are C{(span, lo, hi)}, the buckets
        of width C{span} whose start is in C{[lo, hi)} (C{None} for an open
        end), as few and as wide as C{spans} allow; edges are the C{(lo,
        hi)} time ranges, inside one minute each, left for the posts.
    """
    spans = sorted(spans, reverse=True)
    minute = SPANS[0]
    a = None if since is None else math.ceil(since / minute) * minute
    b = None if until is None else math.floor(until / minute) * minute
    if a is not None and b is not None and a >= b:
        return [], ([(since, until)] if since < until else [])
    edges = []
    if since is not None and since < a:
        edges.append((since, a))
    if until is not None and b < until:
        edges.append((b, until))
    pieces: list[tuple] = []

    def split(lo, hi, spans):
        span, rest = spans[0], spans[1:]
        if not rest:
            pieces.append((span, lo, hi))
            return
        whole_lo = None if lo is None else math.ceil(lo / span) * span
        whole_hi = None if hi is None else math.floor(hi / span) * span
        if whole_lo is not None and whole_hi is not None and whole_lo >= whole_hi:
            split(lo, hi, rest)
            return
        pieces.append((span, whole_lo, whole_hi))
        if lo is not None and lo < whole_lo:
            split(lo, whole_lo, rest)
        if hi is not None and whole_hi < hi:
            split(whole_hi, hi, rest)

    split(a, b, spans)
    return pieces, edges


def volume_spans(bucket: int) -> tuple:
    """
    The rollup spans a volume bucket of C{bucket} seconds is a sum of;
    empty when it is not a whole number of minutes (the provider counts such
    buckets from the posts).
    """
    return tuple(span for span in SPANS if bucket % span == 0)


class Tally:
    """
    The posts of a range's partial minutes, counted as the rollups count
    them, for the provider to add to what its rollup rows sum to.
    """

    def __init__(self, bucket: Optional[int] = None) -> None:
        self.bucket = bucket
        self.count = 0
        self.sentiments: Counter = Counter()
        self.scored = 0
        self.compound = 0.0
        self.likes = self.reposts = self.replies = 0
        self.labels: Counter = Counter()
        self.volume: dict[int, Counter] = {}
        self.authors: dict[str, list] = {}
        self.tags: Counter = Counter()
        self.terms: Counter = Counter()
        self.candidates: Counter = Counter()
        self.shown: dict[str, str] = {}

    def add(self, facts: Facts, words: bool = True) -> None:
        self.count += 1
        self.sentiments[facts.sentiment or ""] += 1
        if facts.compound is not None:
            self.scored += 1
            self.compound += facts.compound
        self.likes += facts.likes
        self.reposts += facts.reposts
        self.replies += facts.replies
        self.labels.update(facts.labels)
        if self.bucket is not None:
            self.volume.setdefault(floor(facts.created_at, self.bucket), Counter())[facts.sentiment or ""] += 1
        row = self.authors.setdefault(facts.author, [0, 0, 0.0, None])
        row[0] += 1
        if facts.compound is not None:
            row[1] += 1
            row[2] += facts.compound
        if facts.followers is not None and (row[3] is None or facts.followers > row[3]):
            row[3] = facts.followers
        if words:
            tags, words_, cands = post_words(facts.text, facts.lang)
            self.tags.update(tags)
            self.terms.update(words_)
            self.candidates.update(cands.keys())
            for folded, form in cands.items():
                self.shown.setdefault(folded, form)
