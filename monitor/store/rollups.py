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

Every rollup is keyed by a scope (a topic name, or L{EVERY} for all
posts), a span (60, 3600 or 86400 seconds) and the start of its bucket
(floored to the span, also before the epoch).  A post adds to one minute
(L{Minute}) for each of its scopes; hours and days are sums of minutes,
which a provider may keep in the same transaction or sum once the hour has
closed (then L{cover} is told up to where hours and days are complete).

Answers are exact: whole minutes (or hours, days) of a range come from the
rollups; a range edge inside a minute is counted from the posts of that
partial minute, which are at most two minutes of posts per range.
"""

from __future__ import annotations

import math
from collections import Counter, _count_elements
from dataclasses import dataclass
from typing import Iterable, Optional

from monitor.analysis.trending import _BREAK, _CORE, candidates, stop_words
from monitor.analysis.trending import _WORD as _TRENDING_WORD
from monitor.store.text import _STOPWORDS, _URL, hashtags, terms

__all__ = ["EVERY", "SPANS", "Delta", "Facts", "Minute", "Tally", "cover", "floor", "post_words", "volume_spans"]

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
    #: L{post_words} of the text when already split (by the writer, which
    #: needs the hashtags too).
    words: Optional[tuple] = None

    @property
    def scopes(self) -> tuple:
        return (EVERY, *self.topics)


def post_words(text: str, lang: Optional[str]):
    """
    (hashtags, terms, trending candidates) of a text: what the term and tag
    rollups count, once per post.  The same sets as
    L{monitor.store.text.hashtags}, L{monitor.store.text.terms} and
    L{monitor.analysis.trending.candidates}; for most texts (ASCII without
    links) in one pass over the words, since the writer splits every post.
    """
    text = text or ""
    if not text.isascii():
        return hashtags(text), terms(text), candidates(text, lang)
    if "://" in text or "www." in text.lower():
        if "@" in text or "#" in text:
            # A link and a handle may overlap, which the three functions
            # settle each in its own way.
            return hashtags(text), terms(text), candidates(text, lang)
        # Without handles, a link splits the text where both remove it.
        text = _URL.sub("\n", text)
    # In ASCII the terms' words are the candidates' words: lower case is the
    # folded form, and handles, tags and links split both.
    stops = stop_words(lang)
    found_terms: set = set()
    found: dict = {}
    for chunk in _BREAK.split(text):
        words = []
        for word in _TRENDING_WORD.findall(chunk):
            word = word.lower()
            if word.endswith("'s"):
                word = word[:-2]
            short = len(word) < 3
            if not short and word not in _STOPWORDS:
                found_terms.add(word)
            stop = short or word in stops
            if not stop:
                found.setdefault(word, word)
            words.append((word, stop))
        for (w1, stop1), (w2, stop2) in zip(words, words[1:]):
            if stop1 and stop2 or w1 == w2 or w1 in _CORE or w2 in _CORE or len(w1) < 3 or len(w2) < 3:
                continue
            phrase = f"{w1} {w2}"
            found.setdefault(phrase, phrase)
    return (hashtags(text) if "#" in text else set()), found_terms, found


class Minute:
    """
    What the posts of one scope and minute add to the rollups, summed.

    @ivar volume: (source, sentiment or "") to [posts, scored, compound
        sum, likes, reposts, replies].
    @ivar labels: label to posts.
    @ivar authors: author to [posts, scored, compound sum, most followers
        or None].
    @ivar tags: hashtag to posts.
    @ivar terms: term to posts that use it among their
        L{monitor.store.text.terms} (the stats' C{top_terms}).
    @ivar trending: term to posts that use it among their
        L{monitor.analysis.trending.candidates} (trending terms: words and
        two-word phrases).
    @ivar shown: a trending term's first form shown, where it is not the
        term itself.
    """

    __slots__ = ("volume", "labels", "authors", "tags", "terms", "trending", "shown")

    def __init__(self) -> None:
        self.volume: dict[tuple, list] = {}
        self.labels: Counter = Counter()
        self.authors: dict[str, list] = {}
        self.tags: Counter = Counter()
        self.terms: Counter = Counter()
        self.trending: Counter = Counter()
        self.shown: dict[str, str] = {}

    def merge(self, other: "Minute") -> None:
        """Add C{other}'s counts to these (a larger bucket holding both)."""
        for key, row in other.volume.items():
            mine = self.volume.get(key)
            if mine is None:
                self.volume[key] = list(row)
            else:
                for i, v in enumerate(row):
                    mine[i] += v
        for author, row in other.authors.items():
            mine = self.authors.get(author)
            if mine is None:
                self.authors[author] = list(row)
            else:
                mine[0] += row[0]
                mine[1] += row[1]
                mine[2] += row[2]
                if row[3] is not None and (mine[3] is None or row[3] > mine[3]):
                    mine[3] = row[3]
        self.labels.update(other.labels)
        self.tags.update(other.tags)
        self.terms.update(other.terms)
        self.trending.update(other.trending)
        for term, form in other.shown.items():
            self.shown.setdefault(term, form)


class Delta:
    """
    Changes to the rollups, summed by scope and minute before they reach
    the database: a batch of posts in the same minute is one L{Minute} per
    scope.  The provider adds each minute to the hour and day that hold it,
    in the batch or once the hour closes.

    @ivar minutes: (scope, minute start) to L{Minute}.
    @ivar shrunk: (scope, minute start, author) that a post with a follower
        count left: their maximum may have fallen and is recomputed by the
        provider.
    """

    def __init__(self) -> None:
        self.minutes: dict[tuple, Minute] = {}
        self.shrunk: set[tuple] = set()
        #: Whether some row lost posts (and may now be empty).
        self.removed = False

    def __bool__(self) -> bool:
        return bool(self.minutes)

    def add(self, facts: Facts, sign: int = 1, words: bool = True) -> None:
        """
        Count C{facts} in (C{sign} 1) or out of (C{sign} -1) every rollup;
        with C{words} false, leave the text-derived counts (tags and terms)
        alone, for changes that keep the text.
        """
        if sign < 0:
            self.removed = True
        scored = 0 if facts.compound is None else sign
        compound = sign * (facts.compound or 0.0)
        likes, reposts, replies = sign * facts.likes, sign * facts.reposts, sign * facts.replies
        key = (facts.source, facts.sentiment or "")
        followers = facts.followers
        if words:
            tags, words_, cands = facts.words or post_words(facts.text, facts.lang)
        minutes = self.minutes
        start = floor(facts.created_at, SPANS[0])
        for scope in facts.scopes:
            minute = minutes.get((scope, start))
            if minute is None:
                minute = minutes[(scope, start)] = Minute()
            row = minute.volume.get(key)
            if row is None:
                minute.volume[key] = [sign, scored, compound, likes, reposts, replies]
            else:
                row[0] += sign
                row[1] += scored
                row[2] += compound
                row[3] += likes
                row[4] += reposts
                row[5] += replies
            if facts.labels:
                if sign > 0:
                    _count_elements(minute.labels, facts.labels)
                else:
                    minute.labels.subtract(facts.labels)
            row = minute.authors.get(facts.author)
            if row is None:
                row = minute.authors[facts.author] = [0, 0, 0.0, None]
            row[0] += sign
            row[1] += scored
            row[2] += compound
            if sign > 0 and followers is not None and (row[3] is None or followers > row[3]):
                row[3] = followers
            elif sign < 0 and followers is not None:
                self.shrunk.add((scope, start, facts.author))
            if words:
                if sign > 0:
                    # Counter.update's own loop, without its checks: this
                    # runs for every post and scope.
                    if tags:
                        _count_elements(minute.tags, tags)
                    _count_elements(minute.terms, words_)
                    _count_elements(minute.trending, cands)
                else:
                    minute.tags.subtract(tags)
                    minute.terms.subtract(words_)
                    minute.trending.subtract(cands.keys())
                shown = minute.shown
                for folded, form in cands.items():
                    if form != folded and folded not in shown:
                        shown[folded] = form

    def spans(self, span: int) -> dict:
        """
        The minutes summed into buckets of C{span} seconds: (scope, bucket
        start) to L{Minute}.
        """
        out: dict[tuple, Minute] = {}
        for (scope, start), minute in self.minutes.items():
            key = (scope, floor(start, span))
            bucket = out.get(key)
            if bucket is None:
                bucket = out[key] = Minute()
            bucket.merge(minute)
        return out


def cover(since: Optional[float], until: Optional[float], spans: Iterable[int] = SPANS, folded: Optional[dict] = None):
    """
    Split C{[since, until)} (either end open when C{None}) into rollup
    buckets and partial minutes.

    @param folded: span to the time before which that span's buckets are
        complete (C{None}: none are), for a provider that sums hours and
        days once they close; without it, every bucket of C{spans} is.
        Minutes always are.
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
        top = hi
        if folded is not None:
            limit = folded.get(span)
            if limit is None or (lo is not None and lo >= limit):
                split(lo, hi, rest)
                return
            top = limit if hi is None else min(hi, limit)
        whole_lo = None if lo is None else math.ceil(lo / span) * span
        whole_hi = None if top is None else math.floor(top / span) * span
        if whole_lo is not None and whole_hi is not None and whole_lo >= whole_hi:
            split(lo, hi, rest)
            return
        pieces.append((span, whole_lo, whole_hi))
        if lo is not None and lo < whole_lo:
            split(lo, whole_lo, rest)
        if whole_hi is not None and (hi is None or whole_hi < hi):
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
